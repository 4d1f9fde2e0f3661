"""The issuer protocols: Vault's JWT login + PKI sign (against the sandbox Vault), step-ca's
``/1.0/sign`` (against a small fake), their errors, retries, TLS verification, pickling and
secret hygiene. Everything runs on loopback."""

from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import pickle
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from rotation_helpers import (
    CLIENT_ID,
    ML_TEAM,
    OIDC_CLIENT,
    OIDC_SECRET,
    VAULT_AUDIENCE,
    MemoryIssuer,
    wait_until,
    write_atomic,
)

from meshclient import ConfigurationError, Identity, IdentitySANError
from meshclient.credentials.issuers import (
    CertificateIssuer,
    IssuanceError,
    IssuerSource,
    SignedCertificate,
    StepCAIssuer,
    VaultPKIIssuer,
    new_key_and_csr,
)
from meshclient.pki import certs_to_pem, key_to_pem
from meshclient.tokens import ClientCredentials, OutboundRetryPolicy, StaticToken
from meshclient_sandbox.httpserver import ApiRequest, Response, SandboxHTTPServer
from meshclient_sandbox.oidc import OIDCIssuer, TokenValidator
from meshclient_sandbox.pki import SandboxPKI
from meshclient_sandbox.vault import SandboxVault, parse_duration, sign_linkerd_leaf

FAST = OutboundRetryPolicy(attempts=3, initial_backoff=0.01, max_backoff=0.02)
LONG_ID = "a-service-account-with-a-long-name.ml-team.serviceaccount.identity.linkerd.cluster.local"


# -- key and CSR -----------------------------------------------------------------------------
def test_csr_is_shaped_like_linkerd_proxy_identity() -> None:
    key, csr = new_key_and_csr(CLIENT_ID)
    assert isinstance(key.curve, ec.SECP256R1)
    assert csr.is_signature_valid
    assert csr.public_key() == key.public_key()
    assert csr.signature_hash_algorithm is not None and csr.signature_hash_algorithm.name == "sha256"
    assert [a.value for a in csr.subject] == [CLIENT_ID]
    sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert list(sans) == [x509.DNSName(CLIENT_ID)]
    _, long_csr = new_key_and_csr(LONG_ID)  # > 64 characters: SAN only, like Linkerd allows
    assert list(long_csr.subject) == []
    assert new_key_and_csr(CLIENT_ID)[0].private_numbers() != key.private_numbers()  # a new key every time


def test_spiffe_identities_are_refused() -> None:
    with pytest.raises(ConfigurationError, match="DNS identity"):
        new_key_and_csr("spiffe://cluster.local/ns/ml-team/sa/notebook")


def test_plain_http_only_on_loopback() -> None:
    with pytest.raises(ConfigurationError, match="plain http"):
        VaultPKIIssuer("http://vault.example.com:8200", role="ml-team")
    with pytest.raises(ConfigurationError, match="path segment"):
        VaultPKIIssuer("https://vault.example.com:8200", role="../sys")
    assert VaultPKIIssuer("https://vault.example.com:8200/", role="ml-team").address == "https://vault.example.com:8200"


def test_parse_duration() -> None:
    assert parse_duration(90) == 90.0
    assert parse_duration("90") == 90.0
    assert parse_duration("1h30m") == 5400.0
    assert parse_duration("24h") == 86400.0
    with pytest.raises(ValueError):
        parse_duration("soon")


# -- Vault's wire shapes ----------------------------------------------------------------------
def test_sandbox_vault_speaks_vaults_documented_shapes(pki: SandboxPKI, vault: SandboxVault,
                                                      oidc: OIDCIssuer) -> None:
    jwt = oidc.issue_token(OIDC_CLIENT, audience=VAULT_AUDIENCE)
    login = requests.post(f"{vault.url}/v1/auth/jwt/login", json={"role": "ml-team", "jwt": jwt}, timeout=5)
    assert login.status_code == 200
    auth = login.json()["auth"]
    assert auth["client_token"].startswith("hvs.") and auth["lease_duration"] > 0 and auth["renewable"] is True
    assert "pki-sign-ml-team" in auth["policies"]
    key, csr = new_key_and_csr(CLIENT_ID)
    body = {"csr": csr.public_bytes(serialization.Encoding.PEM).decode(), "common_name": CLIENT_ID,
            "alt_names": CLIENT_ID, "ttl": "90s"}
    signed = requests.post(f"{vault.url}/v1/pki/sign/ml-team", json=body,
                           headers={"X-Vault-Token": auth["client_token"]}, timeout=5)
    assert signed.status_code == 200
    data = signed.json()["data"]
    assert set(data) >= {"certificate", "issuing_ca", "ca_chain", "serial_number", "expiration"}
    leaf = x509.load_pem_x509_certificate(data["certificate"].encode())
    assert x509.load_pem_x509_certificate(data["issuing_ca"].encode()) == pki.issuer.cert
    assert [x509.load_pem_x509_certificate(c.encode()) for c in data["ca_chain"]] == [pki.issuer.cert, pki.root.cert]
    assert int(data["serial_number"].replace(":", ""), 16) == leaf.serial_number  # "39:dd:2e:..."
    assert data["expiration"] == int(leaf.not_valid_after_utc.timestamp())
    # Linkerd's leaf profile, for the CSR's key
    assert leaf.public_key() == key.public_key()
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == CLIENT_ID
    assert list(leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value) == [x509.DNSName(CLIENT_ID)]
    ku = leaf.extensions.get_extension_for_class(x509.KeyUsage)
    assert ku.critical and ku.value.digital_signature and not ku.value.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    assert leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier)
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == _dt.timedelta(seconds=120)  # 90 s + 30 s backdate
    # Vault's error document
    denied = requests.post(f"{vault.url}/v1/pki/sign/ml-team", json=body, timeout=5)
    assert denied.status_code == 403 and denied.json() == {"errors": ["permission denied"]}
    other = new_key_and_csr("etl.finance.serviceaccount.identity.linkerd.cluster.local")[1]
    refused = requests.post(f"{vault.url}/v1/pki/sign/ml-team", headers={"X-Vault-Token": auth["client_token"]},
                            json={**body, "csr": other.public_bytes(serialization.Encoding.PEM).decode(),
                                  "common_name": "etl.finance.serviceaccount.identity.linkerd.cluster.local",
                                  "alt_names": ""}, timeout=5)
    assert refused.status_code == 400
    assert refused.json() == {"errors": ["common name etl.finance.serviceaccount.identity.linkerd.cluster.local "
                                         "not allowed by this role"]}


class RecordingVault(SandboxVault):
    """Keeps what each request carried (paths, JSON keys, whether a Vault token came): no values."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.seen: list[tuple[str, list[str], bool, dict[str, Any]]] = []

    def handle(self, request: ApiRequest) -> Response:
        body = request.json_object() if request.body else {}
        shown = {k: v for k, v in body.items() if k in ("role", "common_name", "alt_names", "ttl", "format")}
        self.seen.append((request.path, sorted(body), bool(request.header("X-Vault-Token")), shown))
        return super().handle(request)


@pytest.fixture
def recording_vault(pki: SandboxPKI, oidc: OIDCIssuer) -> Iterator[RecordingVault]:
    with RecordingVault(pki, oidc, audience=VAULT_AUDIENCE) as v:
        v.add_role("ml-team", allowed_identities=[ML_TEAM])
        yield v


def test_vault_issuer_sends_vaults_requests(pki: SandboxPKI, recording_vault: RecordingVault,
                                            jwt_provider: ClientCredentials) -> None:
    issuer = VaultPKIIssuer(recording_vault.url, role="ml-team", ttl=600)
    source = IssuerSource(issuer, CLIENT_ID, token=jwt_provider, trust_anchors=pki.trust_anchors_pem)
    try:
        assert source.current().identity == Identity.parse(CLIENT_ID)
        assert source.refresh_now()
    finally:
        source.close()
    assert recording_vault.seen == [
        ("/v1/auth/jwt/login", ["jwt", "role"], False, {"role": "ml-team"}),
        ("/v1/pki/sign/ml-team", ["alt_names", "common_name", "csr", "format", "ttl"], True,
         {"common_name": CLIENT_ID, "alt_names": CLIENT_ID, "ttl": "600s", "format": "pem"}),
        # the Vault token is reused until 80 % of its lease
        ("/v1/pki/sign/ml-team", ["alt_names", "common_name", "csr", "format", "ttl"], True,
         {"common_name": CLIENT_ID, "alt_names": CLIENT_ID, "ttl": "600s", "format": "pem"}),
    ]


# -- Vault's errors -----------------------------------------------------------------------------
def test_role_refusing_the_identity_is_a_clear_error_at_construction(pki: SandboxPKI, vault: SandboxVault,
                                                                    jwt_provider: ClientCredentials) -> None:
    outsider = "etl.finance.serviceaccount.identity.linkerd.cluster.local"
    with pytest.raises(IssuanceError) as err:
        IssuerSource(VaultPKIIssuer(vault.url, role="ml-team"), outsider, token=jwt_provider,
                     trust_anchors=pki.trust_anchors_pem)
    e = err.value
    assert e.status == 400 and not e.retryable
    text = str(e)
    assert vault.url in text and "PKI mount 'pki'" in text and "role 'ml-team'" in text and outsider in text
    assert f"common name {outsider} not allowed by this role" in text
    assert vault.sign_requests == 1  # not retried: the answer will not change


def test_login_errors_name_the_auth_mount_and_role(pki: SandboxPKI, vault: SandboxVault, oidc: OIDCIssuer) -> None:
    _, csr = new_key_and_csr(CLIENT_ID)
    ident = Identity.parse(CLIENT_ID)
    wrong_aud = oidc.issue_token(OIDC_CLIENT, audience="other-audience")
    with pytest.raises(IssuanceError) as err:
        VaultPKIIssuer(vault.url, role="ml-team").sign(csr, ident, wrong_aud)
    assert err.value.token_rejected and err.value.status == 400
    assert "JWT login to Vault at" in str(err.value) and "auth mount 'jwt', role 'ml-team'" in str(err.value)
    assert "invalid audience" in str(err.value) and "bound_audiences" in str(err.value)
    jwt = oidc.issue_token(OIDC_CLIENT, audience=VAULT_AUDIENCE)
    with pytest.raises(IssuanceError, match='role "nope" could not be found'):
        VaultPKIIssuer(vault.url, role="ml-team", auth_role="nope").sign(csr, ident, jwt)
    with pytest.raises(IssuanceError, match="No JWT auth method is mounted at 'auth/oidc'") as err:
        VaultPKIIssuer(vault.url, role="ml-team", auth_mount="oidc").sign(csr, ident, jwt)
    assert err.value.status == 404
    vault.add_role("other", allowed_identities=[ML_TEAM])  # its tokens may only use pki/sign/other
    with pytest.raises(IssuanceError, match="grant the 'update' capability") as err:
        VaultPKIIssuer(vault.url, role="ml-team", auth_role="other").sign(csr, ident, jwt)
    assert err.value.status == 403 and "permission denied" in str(err.value)


def test_refused_cached_vault_token_means_one_new_login(pki: SandboxPKI, vault: SandboxVault, oidc: OIDCIssuer) -> None:
    issuer = VaultPKIIssuer(vault.url, role="ml-team")
    jwt = oidc.issue_token(OIDC_CLIENT, audience=VAULT_AUDIENCE)
    ident = Identity.parse(CLIENT_ID)
    issuer.sign(new_key_and_csr(ident)[1], ident, jwt)
    issuer.sign(new_key_and_csr(ident)[1], ident, jwt)
    assert vault.login_requests == 1
    vault.revoke_tokens()
    issuer.sign(new_key_and_csr(ident)[1], ident, jwt)
    assert vault.login_requests == 2 and vault.certificates_issued == 3


def test_5xx_is_retried_with_backoff(pki: SandboxPKI, vault: SandboxVault, oidc: OIDCIssuer) -> None:
    issuer = VaultPKIIssuer(vault.url, role="ml-team", retries=FAST)
    jwt = oidc.issue_token(OIDC_CLIENT, audience=VAULT_AUDIENCE)
    ident = Identity.parse(CLIENT_ID)
    issuer.sign(new_key_and_csr(ident)[1], ident, jwt)  # logs in, caches the Vault token
    vault.set_outage(times=2)
    signed = issuer.sign(new_key_and_csr(ident)[1], ident, jwt)
    assert isinstance(signed, SignedCertificate) and vault.sign_requests == 4 and vault.certificates_issued == 2
    vault.set_outage()
    with pytest.raises(IssuanceError, match="Vault is sealed") as err:
        issuer.sign(new_key_and_csr(ident)[1], ident, jwt)
    assert err.value.retryable and err.value.status == 503 and "keeps the current certificate" in str(err.value)


def test_unreachable_issuer_is_a_retryable_error_naming_the_address() -> None:
    with SandboxHTTPServer() as server:
        url = server.url  # a port nothing listens on once stopped
    issuer = VaultPKIIssuer(url, role="ml-team", retries=FAST, timeout=2.0)
    ident = Identity.parse(CLIENT_ID)
    with pytest.raises(IssuanceError) as err:
        issuer.sign(new_key_and_csr(ident)[1], ident, "header.payload.signature")
    assert err.value.retryable and url in str(err.value) and "ConnectionError" in str(err.value)


def test_redirects_are_not_followed() -> None:
    """A redirect would carry the JWT (or the Vault token) to whoever it names."""
    hits: list[str] = []

    def record(request: ApiRequest) -> Response:
        hits.append(request.path)
        return Response.json({})

    with SandboxHTTPServer() as elsewhere, SandboxHTTPServer() as redirecting:
        elsewhere.add_route("POST", "/", record, prefix=True)
        redirecting.add_route("POST", "/", lambda r: Response(307, headers={"Location": elsewhere.url + r.path}),
                              prefix=True)
        ident = Identity.parse(CLIENT_ID)
        with pytest.raises(IssuanceError, match="HTTP 307"):
            VaultPKIIssuer(redirecting.url, role="ml-team").sign(new_key_and_csr(ident)[1], ident, "a.b.c")
    assert hits == []


# -- HTTPS with a private CA ----------------------------------------------------------------------
def _https_material(tmp_path: Path) -> tuple[ssl.SSLContext, Path]:
    """A CA and a server certificate for 127.0.0.1; returns the server context and the CA file."""
    now = _dt.datetime.now(_dt.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rotation-test issuer CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(hours=1))
          .not_valid_after(now + _dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(x509.Name([])).issuer_name(ca_name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - _dt.timedelta(hours=1))
            .not_valid_after(now + _dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (tmp_path / "server.pem").write_bytes(certs_to_pem([cert]) + key_to_pem(key))
    (tmp_path / "ca.pem").write_bytes(certs_to_pem([ca]))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(tmp_path / "server.pem")
    return ctx, tmp_path / "ca.pem"


def test_https_issuer_verified_with_a_ca_bundle_path(pki: SandboxPKI, oidc: OIDCIssuer,
                                                     jwt_provider: ClientCredentials, tmp_path: Path) -> None:
    ctx, ca_file = _https_material(tmp_path)
    with SandboxVault(pki, oidc, audience=VAULT_AUDIENCE, ssl_context=ctx) as vault:
        vault.add_role("ml-team", allowed_identities=[ML_TEAM])
        assert vault.url.startswith("https://")
        ident = Identity.parse(CLIENT_ID)
        with pytest.raises(IssuanceError, match="verify='/path/to/ca-bundle.pem'") as err:
            VaultPKIIssuer(vault.url, role="ml-team").sign(new_key_and_csr(ident)[1], ident, "a.b.c")
        assert not err.value.retryable
        source = IssuerSource(VaultPKIIssuer(vault.url, role="ml-team", verify=str(ca_file)), CLIENT_ID,
                              token=jwt_provider, trust_anchors=pki.trust_anchors_pem)
        source.close()
        assert vault.certificates_issued == 1


# -- step-ca ---------------------------------------------------------------------------------------
class FakeStepCA(SandboxHTTPServer):
    """step-ca's ``POST /1.0/sign`` (``api/sign.go``): ``{"csr", "ott"}`` → 201 ``{"crt", "ca", "certChain"}``;
    errors as ``{"status", "message"}``. The ott is validated as an OIDC token for audience ``step-ca``."""

    name = "fake-step-ca"

    def __init__(self, pki: SandboxPKI, oidc: OIDCIssuer) -> None:
        super().__init__()
        self.pki = pki
        self.validator = TokenValidator(oidc, "step-ca")
        self.bodies: list[list[str]] = []
        self.not_after: list[str] = []
        self.add_route("POST", "/1.0/sign", self._sign)

    def error_response(self, status: int, message: str, *, code: str | None = None) -> Response:
        return Response.json({"status": status, "message": message}, status)

    def _sign(self, request: ApiRequest) -> Response:
        from meshclient_sandbox.httpserver import HTTPError

        body = request.json_object()
        self.bodies.append(sorted(body))
        try:
            self.validator.validate(str(body.get("ott")))
        except Exception:
            raise HTTPError(401, "The request lacked necessary authorization to be completed.") from None
        csr = x509.load_pem_x509_csr(str(body["csr"]).encode())
        public = csr.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ttl = parse_duration(body.get("notAfter") or "300s")
        self.not_after.append(str(body.get("notAfter")))
        leaf = sign_linkerd_leaf(self.pki.issuer, public, san.get_values_for_type(x509.DNSName)[0], ttl=ttl)
        pems = [certs_to_pem([c]).decode() for c in (leaf, self.pki.issuer.cert)]
        return Response.json({"crt": pems[0], "ca": pems[1], "certChain": pems}, 201)

    def stop(self) -> None:
        super().stop()
        self.validator.close()


def test_step_ca_issuer(pki: SandboxPKI, oidc: OIDCIssuer) -> None:
    oidc.register_client("step-client", secret="step-secret-0123456789", audience="step-ca")
    tokens = ClientCredentials(token_url=oidc.token_url, client_id="step-client", client_secret="step-secret-0123456789")
    with FakeStepCA(pki, oidc) as ca:
        source = IssuerSource(StepCAIssuer(ca.url, ttl=120), CLIENT_ID, token=tokens,
                              trust_anchors=pki.trust_anchors_pem)
        try:
            creds = source.current()
            assert creds.identity == Identity.parse(CLIENT_ID) and creds.intermediates == (pki.issuer.cert,)
            assert source.refresh_now()
        finally:
            source.close()
            tokens.close()
        assert ca.bodies == [["csr", "notAfter", "ott"]] * 2 and ca.not_after == ["120s", "120s"]
        ident = Identity.parse(CLIENT_ID)
        with pytest.raises(IssuanceError, match="HTTP 401: The request lacked") as err:
            StepCAIssuer(ca.url).sign(new_key_and_csr(ident)[1], ident, oidc.issue_token("x", audience="other"))
        assert err.value.token_rejected and not err.value.retryable
        assert "step-ca at " + ca.url in str(err.value)


# -- the source's guarantees -------------------------------------------------------------------------
class WrongNameIssuer(MemoryIssuer):
    """An issuer that ignores the CSR's name (a misconfigured role)."""

    def sign(self, csr: x509.CertificateSigningRequest, identity: Identity, jwt: str, *,
             cancel: threading.Event | None = None) -> SignedCertificate:
        return super().sign(csr, Identity.parse("scorer.ml-team.serviceaccount.identity.linkerd.cluster.local"), jwt)


def test_certificate_for_another_identity_is_never_used(pki: SandboxPKI) -> None:
    with pytest.raises(IdentitySANError, match="when asked for"):
        IssuerSource(WrongNameIssuer(pki), CLIENT_ID, token=StaticToken("jwt-for-tests"),
                     trust_anchors=pki.trust_anchors_pem)


def test_set_trust_anchors_keeps_the_certificate_when_it_still_chains(pki: SandboxPKI) -> None:
    issuer = MemoryIssuer(pki)
    new = SandboxPKI.create()
    with IssuerSource(issuer, CLIENT_ID, token=StaticToken("jwt-for-tests"),
                      trust_anchors=pki.trust_anchors_pem + new.trust_anchors_pem) as source:
        serial = source.current().serial
        swapped = source.set_trust_anchors(pki.trust_anchors_pem)  # drop the unused anchor
        assert swapped is source.current() and swapped.serial == serial and issuer.calls == 1
        assert swapped.trust_anchors == (pki.root.cert,)
        issuer.pki = new  # the issuer moved to the new hierarchy: the old leaf cannot chain to it
        moved = source.set_trust_anchors(new.trust_anchors_pem)
        assert moved.serial != serial and moved.trust_anchors == (new.root.cert,) and issuer.calls == 2
        issuer.fail = True
        with pytest.raises(IssuanceError):
            source.set_trust_anchors(pki.trust_anchors_pem)
        assert source.current() is moved  # nothing half-applied


def test_anchors_file_watched_by_content(pki: SandboxPKI, tmp_path: Path) -> None:
    """A touched or same-content anchors file costs nothing; a changed one swaps the anchors
    and keeps the certificate (no issuer call)."""
    issuer = MemoryIssuer(pki)
    other = SandboxPKI.create()
    anchors = tmp_path / "ca.crt"
    write_atomic(anchors, pki.trust_anchors_pem)
    with IssuerSource(issuer, CLIENT_ID, token=StaticToken("jwt-for-tests"), trust_anchors=anchors,
                      poll_interval=0.02) as source:
        serial = source.current().serial
        write_atomic(anchors, pki.trust_anchors_pem)  # same content, new inode
        time.sleep(0.3)
        assert issuer.calls == 1 and source.rotations == 0
        write_atomic(anchors, pki.trust_anchors_pem + other.trust_anchors_pem)
        wait_until(lambda: source.rotations == 1, what="the new anchors")
        assert source.current().serial == serial and issuer.calls == 1
        assert source.current().trust_anchors == (pki.root.cert, other.root.cert)


def test_abstract_issuer_contract() -> None:
    with pytest.raises(TypeError):
        CertificateIssuer("https://issuer.example.com")  # type: ignore[abstract]


# -- pickling and secrets ---------------------------------------------------------------------------
def test_pickled_issuer_and_source_carry_no_session_token_or_key(pki: SandboxPKI, vault: SandboxVault,
                                                                jwt_provider: ClientCredentials) -> None:
    issuer = VaultPKIIssuer(vault.url, role="ml-team")
    source = IssuerSource(issuer, CLIENT_ID, token=jwt_provider, trust_anchors=pki.trust_anchors_pem)
    try:
        creds = source.current()
        vault_token = issuer._vault_token.value  # type: ignore[union-attr]
        key_body = creds.private_key_pem().split(b"\n")[1]
        for obj in (issuer, source):
            blob = pickle.dumps(obj)
            assert vault_token.encode() not in blob and key_body not in blob
        copy = pickle.loads(pickle.dumps(source))
        try:
            assert copy.current().serial != creds.serial  # its own key and certificate
            assert copy.current().identity == creds.identity
            assert vault.certificates_issued == 2
        finally:
            copy.close()
    finally:
        source.close()


def test_no_secret_in_logs_errors_or_reprs(pki: SandboxPKI, vault: SandboxVault, oidc: OIDCIssuer,
                                          jwt_provider: ClientCredentials, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    issuer = VaultPKIIssuer(vault.url, role="ml-team", retries=FAST)
    source = IssuerSource(issuer, CLIENT_ID, token=jwt_provider, trust_anchors=pki.trust_anchors_pem,
                          min_refresh=0.1)
    texts: list[str] = []
    try:
        jwt = jwt_provider.token().value
        creds = source.current()
        vault_token = issuer._vault_token.value  # type: ignore[union-attr]
        source.refresh_now()
        vault.set_outage()
        assert not source.refresh_now()  # a failure goes to the log
        vault.set_outage(False)
        vault.revoke_tokens()
        source.refresh_now()
        ident = Identity.parse(CLIENT_ID)
        for bad in (oidc.issue_token(OIDC_CLIENT, audience="other-audience"), jwt):
            try:
                VaultPKIIssuer(vault.url, role="nope").sign(new_key_and_csr(ident)[1], ident, bad)
            except IssuanceError as exc:
                texts += [str(exc), repr(exc)]
        texts += [repr(issuer), repr(source), str(source), repr(creds), repr(source.current())]
    finally:
        source.close()
    texts += [r.getMessage() for r in caplog.records]
    secrets = {"jwt": jwt, "vault token": vault_token, "client secret": OIDC_SECRET,
               "key": creds.private_key_pem().decode().split("\n")[1]}
    for name, secret in secrets.items():
        leaks = [t for t in texts if secret in t]
        assert leaks == [], f"the {name} leaked: {leaks[:1]}"
