"""Fixtures for the token-provider tests: the sandbox issuer on a fake clock, secrets to hunt."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tokens_helpers import CLIENT_ID, LIFETIME, SECRET, FakeClock, GatedIssuer, RecordingSleep

from meshclient.jose import public_jwk
from meshclient_sandbox.oidc import OIDCIssuer


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def client_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _register(issuer: OIDCIssuer, client_key: ec.EllipticCurvePrivateKey) -> None:
    issuer.register_client(
        CLIENT_ID, secret=SECRET, scopes=["mesh.read", "mesh.write"], audience=["mesh-services", "scoring"]
    )
    issuer.register_client(
        "jwt-client", public_jwk=public_jwk(client_key), scopes=["mesh.read"], audience=["mesh-services", "scoring"]
    )


@pytest.fixture
def issuer(clock: FakeClock, client_key: ec.EllipticCurvePrivateKey) -> Iterator[OIDCIssuer]:
    with OIDCIssuer(clock=clock, token_lifetime=LIFETIME) as srv:
        _register(srv, client_key)
        yield srv


@pytest.fixture
def gated_issuer(clock: FakeClock, client_key: ec.EllipticCurvePrivateKey) -> Iterator[GatedIssuer]:
    srv = GatedIssuer(clock=clock, token_lifetime=LIFETIME)
    _register(srv, client_key)
    with srv:
        try:
            yield srv
        finally:
            srv.gate.set()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Keep databricks-sdk and boto3 away from the developer's config, variables and proxies."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ARM_", "AZURE_", "GOOGLE_", "AWS_")) or name.lower() in (
            "http_proxy",
            "https_proxy",
            "all_proxy",
            "no_proxy",
            "requests_ca_bundle",
            "curl_ca_bundle",
        ):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-such-databrickscfg"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return home
