"""Fixtures for tests against real TLS peers (nginx, stunnel) and Linkerd's own certificates.

Every peer fixture stops its process (and reaps nginx's workers) on teardown, pass or fail.
Tests that need a binary use ``needs_nginx`` / ``needs_stunnel``: skipped with the reason when
the Debian package is missing (CI installs both, so there they always run). Test modules load
the fixtures with ``pytest_plugins = ["peer_fixtures"]`` (no tests/core/conftest.py, so that
``from conftest import ...`` elsewhere keeps meaning tests/conftest.py).
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import urllib3.util.connection
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshclient import Credentials, MeshClient
from meshclient.pki import certs_to_pem, key_to_pem
from meshclient_sandbox.nginx import NginxPeer
from meshclient_sandbox.pki import IssuedLeaf
from meshclient_sandbox.stunnel import StunnelPeer

LINKERD_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "linkerd"
PROXY_TESTDATA = LINKERD_FIXTURES / "linkerd2-proxy" / "linkerd" / "tls" / "test-util" / "src" / "testdata"
LINKERD2_TESTDATA = LINKERD_FIXTURES / "linkerd2" / "cli" / "cmd" / "testdata"

# The identities tests/conftest.py issues (its module name "conftest" is not importable from here).
CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
FOO_NS1 = "foo.ns1.serviceaccount.identity.linkerd.cluster.local"
BAR_NS1 = "bar.ns1.serviceaccount.identity.linkerd.cluster.local"

needs_nginx = pytest.mark.nginx  # the sandbox plugin skips when nginx is missing (or hidden)
needs_stunnel = pytest.mark.stunnel


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any connection to a non-loopback address (e.g. a redirect that was followed)."""
    real = urllib3.util.connection.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        host = address[0]
        if host != "localhost":
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise AssertionError(f"test tried to connect to non-loopback {host}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded)


@pytest.fixture
def mesh_client(client_creds: Credentials) -> Iterator[MeshClient]:
    client = MeshClient(client_creds, timeout=(5.0, 10.0))
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def nginx_peer(server_leaf: IssuedLeaf, tmp_path: Path) -> Iterator[NginxPeer]:
    """nginx serving the sandbox server identity, trusting the sandbox anchors for clients."""
    assert str(server_leaf.identity) == SERVER_ID
    with NginxPeer.for_leaf(server_leaf, workdir=tmp_path / "nginx") as peer:
        yield peer


@pytest.fixture
def stunnel_peer(server_leaf: IssuedLeaf, tmp_path: Path) -> Iterator[StunnelPeer]:
    with StunnelPeer.for_leaf(server_leaf, workdir=tmp_path / "stunnel") as peer:
        yield peer


# -- Linkerd's certificates -------------------------------------------------------------------
def proxy_entity(name: str) -> tuple[bytes, bytes]:
    """(certificate PEM, key PEM) of a linkerd2-proxy test entity such as ``bar-ns1-ca1``."""
    cert = x509.load_der_x509_certificate((PROXY_TESTDATA / name / "crt.der").read_bytes())
    key = serialization.load_der_private_key((PROXY_TESTDATA / name / "key.p8").read_bytes(), password=None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    return certs_to_pem([cert]), key_to_pem(key)


def sign_with_linkerd2_issuer(identity: str) -> tuple[bytes, bytes, x509.Certificate]:
    """A fresh P-256 leaf for ``identity`` signed by linkerd2's ``valid-crt.pem`` / ``valid-key.pem``.

    Same profile as the sandbox PKI issues (one DNS SAN, CN = identity, KU digitalSignature,
    EKU serverAuth + clientAuth, SKI, AKI = the issuer's SKI). Returns (leaf + issuer PEM,
    key PEM, leaf).
    """
    issuer = x509.load_pem_x509_certificate((LINKERD2_TESTDATA / "valid-crt.pem").read_bytes())
    issuer_key = serialization.load_pem_private_key((LINKERD2_TESTDATA / "valid-key.pem").read_bytes(), password=None)
    assert isinstance(issuer_key, ec.EllipticCurvePrivateKey)
    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    issuer_ski = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity)]))
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _dt.timedelta(minutes=5))
        .not_valid_after(now + _dt.timedelta(hours=24))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False, key_encipherment=False,
                          data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                          encipher_only=False, decipher_only=False),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(issuer_ski), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(identity)]), critical=False)
        .sign(issuer_key, hashes.SHA256())
    )
    return certs_to_pem([leaf, issuer]), key_to_pem(key), leaf


def wait_quiet(peer: NginxPeer, client: MeshClient, server_identity: str) -> list[str]:
    """Send a sentinel request and return every request line nginx logged up to and including it.

    The sentinel goes out after the earlier attempt's connection was closed and nginx (one
    worker) logs a request as soon as it answers it, so a request that attempt had sent would
    be logged by then: a bounded wait for a known line instead of a sleep.
    """
    before = len(peer.access_log())
    response = client.get(f"{peer.url}/sentinel", server_identity=server_identity)
    assert response.status_code == 200
    entries = peer.wait_for_access_log(before + 1)
    assert entries[-1].uri == "/sentinel"
    return [e.request for e in entries]


def process_group(pgid: int) -> list[int]:
    """Live (non-zombie) processes in process group ``pgid``, from /proc (Linux)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, pgrp = fields[0], int(fields[2])
        if pgrp == pgid and state != "Z":
            members.append(int(stat.parent.name))
    return members
