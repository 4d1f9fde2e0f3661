"""Fixtures for the rotation tests: nginx and sandbox-proxy peers, the OIDC issuer, the sandbox Vault.

Every server is on loopback and stopped on teardown, pass or fail. Client material lives in
``tmp_path`` (test material: the library itself never writes a key).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from rotation_helpers import ML_TEAM, OIDC_CLIENT, OIDC_SECRET, VAULT_AUDIENCE

from meshclient import Credentials
from meshclient.tokens import ClientCredentials
from meshclient.worker_cache import clear_cache
from meshclient_sandbox.apps import EchoApp
from meshclient_sandbox.nginx import NginxPeer, find_nginx
from meshclient_sandbox.oidc import OIDCIssuer
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI
from meshclient_sandbox.policy import ServerPolicy
from meshclient_sandbox.proxy import InboundProxy
from meshclient_sandbox.vault import SandboxVault


@pytest.fixture
def nginx(pki: SandboxPKI, server_leaf: IssuedLeaf) -> Iterator[NginxPeer]:
    """nginx terminating mTLS for SERVER_ID, verifying clients against the sandbox anchor."""
    if find_nginx() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    with NginxPeer.for_leaf(server_leaf) as peer:
        yield peer


@pytest.fixture
def echo_proxy(pki: SandboxPKI, server_leaf: IssuedLeaf) -> Iterator[InboundProxy]:
    """The sandbox inbound proxy for SERVER_ID in front of the echo app, allowing ml-team."""
    app = EchoApp().start()
    creds = Credentials.from_pem(server_leaf.chain_pem, server_leaf.key_pem, server_leaf.trust_anchors_pem)
    proxy = InboundProxy(creds, app.port, policy=ServerPolicy("deny", allow=[ML_TEAM])).start()
    try:
        yield proxy
    finally:
        proxy.stop()
        app.stop()


@pytest.fixture
def oidc() -> Iterator[OIDCIssuer]:
    with OIDCIssuer(audience=VAULT_AUDIENCE, token_lifetime=600) as issuer:
        issuer.register_client(OIDC_CLIENT, secret=OIDC_SECRET, audience=[VAULT_AUDIENCE, "other-audience"])
        yield issuer


@pytest.fixture
def jwt_provider(oidc: OIDCIssuer) -> Iterator[ClientCredentials]:
    provider = ClientCredentials(token_url=oidc.token_url, client_id=OIDC_CLIENT, client_secret=OIDC_SECRET)
    yield provider
    provider.close()


@pytest.fixture
def vault(pki: SandboxPKI, oidc: OIDCIssuer) -> Iterator[SandboxVault]:
    """The sandbox Vault: role ``ml-team`` signs ``*.ml-team...`` identities for audience ``vault``."""
    with SandboxVault(pki, oidc, audience=VAULT_AUDIENCE, ttl=300) as v:
        v.add_role("ml-team", allowed_identities=[ML_TEAM])
        yield v


@pytest.fixture(autouse=True)
def _fresh_client_cache() -> Iterator[None]:
    yield
    clear_cache()
