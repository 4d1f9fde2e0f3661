"""The sandbox PKI issues Linkerd-profile chains that pass strict X.509 checks.

Python 3.13 sets ``VERIFY_X509_STRICT`` in ``ssl.create_default_context()``; the tests set the
flag by hand so the same checks run on 3.11. ``openssl verify -x509_strict`` checks the chain
with the CLI too, and a deliberately non-compliant leaf proves the strict checks have teeth.
"""

from __future__ import annotations

import datetime as dt
import shutil
import socket
import ssl
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshclient import Credentials, Identity
from meshclient.pki import certs_to_pem, is_self_signed, not_after, not_before
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI

NOW = dt.datetime(2026, 1, 15, 12, 0, 0, tzinfo=dt.timezone.utc)
SERVER = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
CLIENT = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
SPIFFE_CLIENT = "spiffe://cluster.local/ns/ml-team/sa/notebook"


def ext(cert: x509.Certificate, cls: type[Any]) -> x509.Extension[Any]:
    return cert.extensions.get_extension_for_class(cls)


@pytest.fixture(scope="module")
def ca() -> SandboxPKI:
    return SandboxPKI.create(now=NOW)


# -- the profile ---------------------------------------------------------------------------------
def test_anchor_and_issuer_profile(ca: SandboxPKI) -> None:
    root, issuer = ca.root.cert, ca.issuer.cert
    assert root.subject.rfc4514_string() == "CN=root.linkerd.cluster.local" and is_self_signed(root)
    assert issuer.subject.rfc4514_string() == "CN=identity.linkerd.cluster.local"
    assert issuer.issuer == root.subject and not is_self_signed(issuer)
    for cert, pathlen in ((root, 1), (issuer, 0)):
        bc = ext(cert, x509.BasicConstraints)
        assert bc.critical and bc.value.ca and bc.value.path_length == pathlen
        ku = ext(cert, x509.KeyUsage)
        assert ku.critical and ku.value.key_cert_sign and ku.value.crl_sign and not ku.value.digital_signature
        assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    ski_root = ext(root, x509.SubjectKeyIdentifier).value.digest
    assert ext(issuer, x509.AuthorityKeyIdentifier).value.key_identifier == ski_root
    assert not_before(root) == NOW - dt.timedelta(hours=1)
    assert not_after(issuer) == NOW + dt.timedelta(days=365)


def test_leaf_profile_matches_linkerds(ca: SandboxPKI) -> None:
    leaf = ca.issue(CLIENT, not_before=NOW)
    cert = leaf.cert
    pub = cert.public_key()
    assert isinstance(pub, ec.EllipticCurvePublicKey) and isinstance(pub.curve, ec.SECP256R1)
    assert cert.subject.rfc4514_string() == f"CN={CLIENT}"
    san = ext(cert, x509.SubjectAlternativeName)
    assert list(san.value) == [x509.DNSName(CLIENT)] and not san.critical
    ku = ext(cert, x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    assert list(ext(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH,
                                                             ExtendedKeyUsageOID.CLIENT_AUTH]
    assert ext(cert, x509.BasicConstraints).value.ca is False
    assert ext(cert, x509.AuthorityKeyIdentifier).value.key_identifier == \
        ext(ca.issuer.cert, x509.SubjectKeyIdentifier).value.digest
    assert ext(cert, x509.SubjectKeyIdentifier).value == x509.SubjectKeyIdentifier.from_public_key(pub)
    assert not_after(cert) - not_before(cert) == dt.timedelta(hours=24, seconds=40)  # 24 h + 2 × skew
    assert leaf.chain == (ca.issuer.cert,) and leaf.trust_anchors == (ca.root.cert,)
    assert leaf.chain_pem == certs_to_pem([cert, ca.issuer.cert])
    creds = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem, now=NOW)
    assert creds.warnings == ()  # nothing differs from a Linkerd-issued leaf


def test_long_identity_has_no_cn_and_a_critical_san(ca: SandboxPKI) -> None:
    long_id = Identity.linkerd("a-rather-long-service-account-name", "ml-team")
    assert len(str(long_id)) > 64
    cert = ca.issue(long_id, not_before=NOW).cert
    assert len(cert.subject) == 0
    san = ext(cert, x509.SubjectAlternativeName)
    assert san.critical and list(san.value) == [x509.DNSName(str(long_id))]


def test_exactly_64_characters_still_gets_a_cn(ca: SandboxPKI) -> None:
    ident = "x" * (64 - len(".ml-team.serviceaccount.identity.linkerd.cluster.local")) \
        + ".ml-team.serviceaccount.identity.linkerd.cluster.local"
    assert len(ident) == 64
    assert ca.issue(ident, not_before=NOW).cert.subject.rfc4514_string() == f"CN={ident}"


def test_spiffe_leaf(ca: SandboxPKI) -> None:
    leaf = ca.issue(SPIFFE_CLIENT, not_before=NOW)
    san = ext(leaf.cert, x509.SubjectAlternativeName)
    assert list(san.value) == [x509.UniformResourceIdentifier(SPIFFE_CLIENT)] and san.critical
    assert len(leaf.cert.subject) == 0
    assert Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem, now=NOW).identity.is_spiffe


def test_expired_and_not_yet_valid_variants(ca: SandboxPKI) -> None:
    expired = ca.issue_expired(CLIENT, now=NOW)
    assert not_after(expired.cert) == NOW - dt.timedelta(hours=1)
    assert not_after(expired.cert) - not_before(expired.cert) == dt.timedelta(hours=24)
    early = ca.issue_not_yet_valid(CLIENT, now=NOW)
    assert not_before(early.cert) == NOW + dt.timedelta(days=1)
    live = SandboxPKI.create()
    assert not_after(live.issue_expired(CLIENT).cert) < dt.datetime.now(dt.timezone.utc)
    assert not_before(live.issue_not_yet_valid(CLIENT).cert) > dt.datetime.now(dt.timezone.utc)


def test_reproducible_with_fixed_keys_and_clock() -> None:
    k1, k2 = ec.derive_private_key(11, ec.SECP256R1()), ec.derive_private_key(12, ec.SECP256R1())
    a = SandboxPKI.create(now=NOW, root_key=k1, issuer_key=k2)
    b = SandboxPKI.create(now=NOW, root_key=k1, issuer_key=k2)
    for x, y in ((a.root.cert, b.root.cert), (a.issuer.cert, b.issuer.cert)):
        assert (x.subject, not_before(x), not_after(x)) == (y.subject, not_before(y), not_after(y))
        assert ext(x, x509.SubjectKeyIdentifier).value == ext(y, x509.SubjectKeyIdentifier).value


def test_new_issuer_rotates_under_the_same_anchor(ca: SandboxPKI) -> None:
    rotated = ca.new_issuer(not_before=NOW - dt.timedelta(hours=1))
    leaf = ca.issue(CLIENT, signer=rotated, not_before=NOW)
    assert leaf.chain == (rotated.cert,)
    creds = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, ca.trust_anchors_pem, now=NOW)
    assert creds.intermediates == (rotated.cert,)


def test_knobs_for_bad_inputs(ca: SandboxPKI) -> None:
    assert list(ext(ca.issue(CLIENT, client_auth=False).cert, x509.ExtendedKeyUsage).value) == [
        ExtendedKeyUsageOID.SERVER_AUTH]
    assert not ext(ca.issue(CLIENT, digital_signature=False).cert, x509.KeyUsage).value.digital_signature
    assert ext(ca.issue(CLIENT, is_ca=True).cert, x509.BasicConstraints).value.ca
    with pytest.raises(x509.ExtensionNotFound):
        ext(ca.issue(CLIENT, include_san=False).cert, x509.SubjectAlternativeName)
    assert ca.issue(CLIENT, serial=0x506).cert.serial_number == 0x506
    with pytest.raises(ValueError, match="unknown key kind"):
        ca.issue(CLIENT, key_kind="dsa")


# -- writing -------------------------------------------------------------------------------------
def test_write_uses_kubernetes_names_and_a_private_key_mode(tmp_path: Path, ca: SandboxPKI) -> None:
    leaf = ca.issue(CLIENT, not_before=NOW)
    paths = leaf.write(tmp_path)
    assert {p.name for p in paths.values()} == {"tls.crt", "tls.key", "ca.crt"}
    assert stat.S_IMODE(paths["key"].stat().st_mode) == 0o600
    assert paths["cert"].read_bytes() == leaf.chain_pem and paths["trust_anchors"].read_bytes() == ca.trust_anchors_pem
    assert Credentials.from_directory(tmp_path, now=NOW).identity == leaf.identity
    assert leaf.write(tmp_path, prefix="client-")["key"].name == "client-tls.key"
    files = ca.write(tmp_path / "ca")
    assert stat.S_IMODE(files["issuer_key"].stat().st_mode) == 0o600
    assert files["trust_anchors"].read_bytes() == ca.root.cert_pem
    assert files["issuer_cert"].read_bytes() == ca.issuer.cert_pem


def test_reprs_hide_keys(ca: SandboxPKI) -> None:
    leaf = ca.issue(CLIENT)
    assert "key=" not in repr(leaf) and "key=" not in repr(ca.issuer)


# -- strict X.509 ----------------------------------------------------------------------------------
def _strict_context(purpose: ssl._SSLMethod, paths: dict[str, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(paths["cert"], paths["key"])
    ctx.load_verify_locations(paths["trust_anchors"])
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT  # Python 3.13's default; set by hand for 3.11
    return ctx


def _handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext, sni: str) -> dict[str, Any]:
    a, b = socket.socketpair()
    result: dict[str, Any] = {}

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(a, server_side=True) as s:
                result["client_cert"] = s.getpeercert()
        except (ssl.SSLError, OSError) as exc:
            result["server_error"] = exc

    t = threading.Thread(target=serve)
    t.start()
    try:
        with client_ctx.wrap_socket(b, server_hostname=sni) as c:
            result["server_cert"] = c.getpeercert()
            result["version"] = c.version()
    except (ssl.SSLError, OSError) as exc:
        result["client_error"] = exc
    finally:
        b.close()
        t.join(10)
    return result


@pytest.mark.parametrize("client_id", [CLIENT, SPIFFE_CLIENT])
def test_strict_mtls_handshake_between_two_sandbox_leaves(tmp_path: Path, pki: SandboxPKI, client_id: str) -> None:
    server = pki.issue(SERVER).write(tmp_path, prefix="server-")  # `pki`: the real-clock session PKI
    client = pki.issue(client_id).write(tmp_path, prefix="client-")
    server_ctx = _strict_context(ssl.PROTOCOL_TLS_SERVER, server)
    client_ctx = _strict_context(ssl.PROTOCOL_TLS_CLIENT, client)
    assert server_ctx.verify_flags & ssl.VERIFY_X509_STRICT and client_ctx.verify_flags & ssl.VERIFY_X509_STRICT
    assert client_ctx.check_hostname  # the server's DNS SAN is checked against SNI = its identity
    result = _handshake(server_ctx, client_ctx, SERVER)
    assert "client_error" not in result and "server_error" not in result, result
    assert result["version"] == "TLSv1.3"
    assert result["server_cert"]["subjectAltName"] == (("DNS", SERVER),)
    kind = "URI" if client_id.startswith("spiffe://") else "DNS"
    assert result["client_cert"]["subjectAltName"] == ((kind, client_id),)


def test_strict_handshake_fails_for_a_leaf_from_another_anchor(tmp_path: Path, pki: SandboxPKI) -> None:
    server = pki.issue(SERVER).write(tmp_path, prefix="server-")
    stranger = SandboxPKI.create().issue(CLIENT).write(tmp_path, prefix="stranger-")
    stranger["trust_anchors"].write_bytes(pki.trust_anchors_pem)  # it trusts the server, not vice versa
    result = _handshake(_strict_context(ssl.PROTOCOL_TLS_SERVER, server),
                        _strict_context(ssl.PROTOCOL_TLS_CLIENT, stranger), SERVER)
    assert "server_error" in result


openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _verify(tmp_path: Path, anchors: bytes, chain: tuple[x509.Certificate, ...], leaf: x509.Certificate,
            *flags: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "anchors.pem").write_bytes(anchors)
    (tmp_path / "untrusted.pem").write_bytes(certs_to_pem(chain) or b"")
    (tmp_path / "leaf.pem").write_bytes(certs_to_pem([leaf]))
    untrusted = ["-untrusted", str(tmp_path / "untrusted.pem")] if chain else []
    return subprocess.run(["openssl", "verify", *flags, "-CAfile", str(tmp_path / "anchors.pem"), *untrusted,
                           str(tmp_path / "leaf.pem")], capture_output=True, text=True, timeout=30)


@openssl
@pytest.mark.parametrize("identity", [CLIENT, SPIFFE_CLIENT])
@pytest.mark.parametrize("purpose", ["sslclient", "sslserver"])
def test_openssl_verify_x509_strict(tmp_path: Path, pki: SandboxPKI, identity: str, purpose: str) -> None:
    leaf = pki.issue(identity)
    done = _verify(tmp_path, pki.trust_anchors_pem, leaf.chain, leaf.cert, "-x509_strict", "-purpose", purpose)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().endswith(": OK")


@openssl
def test_openssl_verify_x509_strict_rejects_a_non_compliant_leaf(tmp_path: Path, pki: SandboxPKI) -> None:
    """Control: the same chain with a leaf lacking AKI passes plain verification, not strict."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CLIENT)]))
            .issuer_name(pki.issuer.cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(hours=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(CLIENT)]), critical=False)
            .sign(pki.issuer.key, hashes.SHA256()))
    assert _verify(tmp_path, pki.trust_anchors_pem, (pki.issuer.cert,), cert).returncode == 0
    strict = _verify(tmp_path, pki.trust_anchors_pem, (pki.issuer.cert,), cert, "-x509_strict")
    assert strict.returncode != 0 and "Authority Key Identifier" in strict.stdout + strict.stderr


def test_issued_leaf_is_the_shared_fixture_type(client_leaf: IssuedLeaf) -> None:
    assert str(client_leaf.identity) == CLIENT
