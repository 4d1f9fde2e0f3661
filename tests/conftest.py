"""Fixtures shared by every test directory: a sandbox PKI and identities in Linkerd's shape."""

from __future__ import annotations

import pytest

from meshclient import Credentials
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI

pytest_plugins = ["leak_scan"]  # every test is also scanned for secrets in errors, logs and output

CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"


@pytest.fixture(scope="session")
def pki() -> SandboxPKI:
    return SandboxPKI.create()


@pytest.fixture(scope="session")
def client_leaf(pki: SandboxPKI) -> IssuedLeaf:
    return pki.issue(CLIENT_ID)


@pytest.fixture(scope="session")
def server_leaf(pki: SandboxPKI) -> IssuedLeaf:
    return pki.issue(SERVER_ID)


@pytest.fixture(scope="session")
def client_creds(client_leaf: IssuedLeaf) -> Credentials:
    return Credentials.from_pem(client_leaf.chain_pem, client_leaf.key_pem, client_leaf.trust_anchors_pem)


@pytest.fixture(scope="session")
def server_creds(server_leaf: IssuedLeaf) -> Credentials:
    return Credentials.from_pem(server_leaf.chain_pem, server_leaf.key_pem, server_leaf.trust_anchors_pem)

# ``mesh_sandbox`` (one running local mesh per session) and the nginx/stunnel peer fixtures come from
# the meshclient-sandbox distribution's pytest plugin (entry point pytest11).
