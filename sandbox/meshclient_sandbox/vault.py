"""A Vault-PKI-compatible signing endpoint for the sandbox and tests.

Why a server and not a mock: :class:`~meshclient.credentials.issuers.VaultPKIIssuer` must be
tested against the wire protocol it meets in production — HashiCorp Vault's JWT auth login
(``POST /v1/auth/<mount>/login``) and the PKI engine's sign endpoint
(``POST /v1/<mount>/sign/<role>``), with Vault's request and response shapes and its
``{"errors": [...]}`` answers. Test hooks (an outage switch, counters, a configurable TTL,
switching the signing CA) provoke what a rotation meets: outages, short lifetimes, issuer
rotation.

It validates the JWT against the sandbox :class:`~meshclient_sandbox.oidc.OIDCIssuer` with
:class:`~meshclient_sandbox.oidc.TokenValidator` (issuer, signature, expiry, then the role's
bound audiences and subjects), keeps Vault tokens as hashes only, and signs with Linkerd's
leaf profile from the sandbox issuer CA: CN = identity (when it fits in 64 characters), one
DNS SAN, KU digitalSignature, EKU serverAuth + clientAuth, SKI/AKI, a short TTL. A role maps
to the identities it may sign, with Linkerd's wildcard rule (``*.ml-team.serviceaccount...``).

It serves plain HTTP on loopback (real Vault serves HTTPS; pass ``ssl_context`` to test
that path). Never use it for anything real: keys live in memory and roles are set by code.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from meshclient import pki as mesh_pki
from meshclient.errors import IdentityError
from meshclient.identity import Identity, IdentityPattern
from meshclient.jose import JWTError

from .httpserver import ApiRequest, HTTPError, Response, SandboxHTTPServer
from .oidc import IssuerUnavailableError, OIDCIssuer, TokenValidator
from .pki import CertificateAuthority, SandboxPKI

__all__ = ["SandboxVault", "VaultRole", "parse_duration", "sign_linkerd_leaf"]

logger = logging.getLogger("meshclient_sandbox.vault")

_NOT_BEFORE_SKEW = _dt.timedelta(seconds=30)  # Vault's not_before_duration default
_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)(d|h|m|s|ms))+$")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(d|h|ms|m|s)")
_UNITS = {"d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(value: object) -> float:
    """Seconds from a Vault duration: a number of seconds, ``"90"``, ``"30s"``, ``"5m"``, ``"1h30m"``."""
    if isinstance(value, bool):
        raise ValueError("a duration cannot be a boolean")
    if isinstance(value, (int, float)):
        return float(value)
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"invalid duration {value!r}")
    text = value.strip()
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return float(text)
    if not _DURATION.match(text):
        raise ValueError(f"invalid duration {value!r}")
    return sum(float(n) * _UNITS[u] for n, u in _DURATION_PART.findall(text))


@dataclass(frozen=True)
class VaultRole:
    """One name for both a JWT auth role and the PKI role its tokens may sign with.

    ``allowed_identities`` are Linkerd identity patterns (exact, ``*.suffix`` or ``*``);
    ``bound_audiences`` must contain the token's ``aud`` (one of them); ``bound_subjects``,
    when set, must contain its ``sub``; ``sign_roles`` are the PKI roles the login's token
    may use (default: this role). ``ttl``/``max_ttl`` override the server's.
    """

    name: str
    allowed_identities: tuple[IdentityPattern, ...]
    bound_audiences: tuple[str, ...]
    bound_subjects: tuple[str, ...] | None = None
    sign_roles: tuple[str, ...] = ()
    ttl: float | None = None
    max_ttl: float | None = None

    def allows(self, identity: Identity) -> bool:
        return any(p.matches(identity) for p in self.allowed_identities)


@dataclass(frozen=True)
class _Lease:
    role: str
    subject: str
    expires: float  # clock seconds
    accessor: str


def _vault_serial(serial: int) -> str:
    raw = serial.to_bytes((serial.bit_length() + 7) // 8 or 1, "big")
    return ":".join(f"{b:02x}" for b in raw)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _vault_response(*, data: Any = None, auth: Any = None, warnings: list[str] | None = None) -> Response:
    return Response.json({
        "request_id": str(uuid.uuid4()),
        "lease_id": "",
        "renewable": False,
        "lease_duration": 0,
        "data": data,
        "wrap_info": None,
        "warnings": warnings or None,
        "auth": auth,
    })


class SandboxVault(SandboxHTTPServer):
    """Vault's JWT login and PKI sign endpoints on loopback, signing from the sandbox issuer CA.

    Args:
        pki: the sandbox PKI; its ``issuer`` signs (see :meth:`set_issuer` to rotate).
        oidc: the sandbox :class:`OIDCIssuer` (or its URL) whose tokens the JWT login accepts.
        audience: the default bound audience of roles.
        pki_mount, auth_mount: where the two engines are "mounted" (``pki``, ``jwt``).
        ttl: default certificate lifetime in seconds (test hook: change :attr:`ttl` any time).
        max_ttl: cap on requested lifetimes (``None``: no cap beyond the CA's own expiry).
        token_ttl: lifetime of the Vault tokens handed out by the login.
        clock: epoch seconds for token decisions (certificates always use the real time).
        ssl_context: a server context to serve HTTPS like real Vault (default: plain HTTP on loopback).

    Test hooks: :attr:`sign_requests` (every sign call, outage or not),
    :attr:`certificates_issued`, :attr:`login_requests`, :attr:`issued` (the certificates),
    :meth:`set_outage`, :attr:`ttl`, :meth:`set_issuer`, :meth:`revoke_tokens`.
    """

    name = "sandbox-vault"

    def __init__(
        self,
        pki: SandboxPKI,
        oidc: OIDCIssuer | str,
        *,
        audience: str = "vault",
        pki_mount: str = "pki",
        auth_mount: str = "jwt",
        ttl: float = 300.0,
        max_ttl: float | None = None,
        token_ttl: float = 3600.0,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(host=host, port=port, ssl_context=ssl_context)
        self.pki = pki
        self.audience = audience
        self.pki_mount = pki_mount.strip("/")
        self.auth_mount = auth_mount.strip("/")
        self.ttl = float(ttl)
        self.max_ttl = max_ttl
        self.token_ttl = float(token_ttl)
        self.clock = clock
        self._validator = TokenValidator(oidc, None, clock=clock)
        self._lock = threading.Lock()
        self._roles: dict[str, VaultRole] = {}
        self._leases: dict[str, _Lease] = {}
        self._issuer: CertificateAuthority = pki.issuer
        self._ca_chain: tuple[x509.Certificate, ...] = (pki.issuer.cert, pki.root.cert)
        self._outage: tuple[int, int | None] | None = None  # status, times left
        self.sign_requests = 0
        self.certificates_issued = 0
        self.login_requests = 0
        self.issued: list[x509.Certificate] = []
        self.add_route("POST", f"/v1/auth/{self.auth_mount}/login", self._login)
        self.add_route("POST", f"/v1/{self.pki_mount}/sign/", self._sign, prefix=True)

    # -- configuration ---------------------------------------------------------------------
    @property
    def address(self) -> str:
        """What ``VAULT_ADDR`` would hold (the base URL)."""
        return self.url

    def add_role(
        self,
        name: str,
        *,
        allowed_identities: Iterable[str | IdentityPattern],
        bound_audiences: Sequence[str] | None = None,
        bound_subjects: Sequence[str] | None = None,
        sign_roles: Sequence[str] | None = None,
        ttl: float | None = None,
        max_ttl: float | None = None,
    ) -> VaultRole:
        """Create (or replace) a role: who may log in with it and which identities it signs."""
        role = VaultRole(
            name=name,
            allowed_identities=tuple(IdentityPattern.parse(p) for p in allowed_identities),
            bound_audiences=tuple(bound_audiences) if bound_audiences is not None else (self.audience,),
            bound_subjects=tuple(bound_subjects) if bound_subjects is not None else None,
            sign_roles=tuple(sign_roles) if sign_roles is not None else (name,),
            ttl=ttl,
            max_ttl=max_ttl,
        )
        with self._lock:
            self._roles[name] = role
        return role

    def set_issuer(self, issuer: CertificateAuthority, chain: Sequence[x509.Certificate] = ()) -> None:
        """Sign with another CA from now on (Vault's default-issuer change during a rotation).

        ``chain`` holds the certificates above ``issuer`` (its root), returned in ``ca_chain``.
        """
        with self._lock:
            self._issuer = issuer
            self._ca_chain = (issuer.cert, *chain)

    def set_outage(self, enabled: bool = True, *, status: int = 503, times: int | None = None) -> None:
        """Answer every request with ``status`` (503 "Vault is sealed") — for the next ``times``
        requests, or until switched off."""
        with self._lock:
            self._outage = (status, times) if enabled else None

    def revoke_tokens(self) -> None:
        """Forget every Vault token handed out (clients must log in again)."""
        with self._lock:
            self._leases.clear()

    def reset_counters(self) -> None:
        with self._lock:
            self.sign_requests = self.certificates_issued = self.login_requests = 0
            self.issued.clear()

    def stop(self) -> None:
        super().stop()
        self._validator.close()

    # -- plumbing ----------------------------------------------------------------------------
    def error_response(self, status: int, message: str, *, code: str | None = None) -> Response:
        return Response.json({"errors": [message] if message else []}, status)

    def handle(self, request: ApiRequest) -> Response:
        is_sign = request.path.startswith(f"/v1/{self.pki_mount}/sign/")
        with self._lock:
            if is_sign:
                self.sign_requests += 1
            elif request.path == f"/v1/auth/{self.auth_mount}/login":
                self.login_requests += 1
            outage = self._outage
            if outage is not None:
                status, times = outage
                if times is not None:
                    self._outage = (status, times - 1) if times > 1 else None
        if outage is not None:
            return Response.json({"errors": ["Vault is sealed"]}, outage[0])
        return super().handle(request)

    # -- JWT auth ----------------------------------------------------------------------------
    def _login(self, request: ApiRequest) -> Response:
        body = request.json_object()
        jwt = body.get("jwt")
        role_name = body.get("role")
        if not isinstance(jwt, str) or not jwt:
            raise HTTPError(400, "missing token")
        if not isinstance(role_name, str) or not role_name:
            raise HTTPError(400, "missing role")
        with self._lock:
            role = self._roles.get(role_name)
        if role is None:
            raise HTTPError(400, f'role "{role_name}" could not be found')
        try:
            claims = self._validator.validate(jwt)
        except JWTError as err:
            raise HTTPError(400, f"error validating token: {err.message}") from None
        except IssuerUnavailableError as err:
            raise HTTPError(500, f"error fetching the OIDC issuer's keys: {err.message}") from None
        aud = claims.get("aud")
        auds = [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)] if isinstance(aud, list) else []
        if not any(a in role.bound_audiences for a in auds):
            raise HTTPError(400, "error validating token: invalid audience (aud) claim: audience claim does not "
                                 "match any expected audience")
        sub = claims.get("sub")
        if role.bound_subjects is not None and sub not in role.bound_subjects:
            raise HTTPError(400, "error validating token: sub claim does not match bound subject")
        token = "hvs." + secrets.token_urlsafe(24)
        accessor = secrets.token_hex(12)
        with self._lock:
            now = self.clock()
            for k in [k for k, v in self._leases.items() if v.expires <= now]:
                del self._leases[k]
            self._leases[_hash(token)] = _Lease(role.name, str(sub), now + self.token_ttl, accessor)
        logger.debug("%s: JWT login for role %s, subject %s (accessor %s)", self.name, role.name, sub, accessor)
        policies = ["default", *(f"pki-sign-{r}" for r in role.sign_roles)]
        return _vault_response(auth={
            "client_token": token,
            "accessor": accessor,
            "policies": policies,
            "token_policies": policies,
            "metadata": {"role": role.name},
            "lease_duration": int(self.token_ttl),
            "renewable": True,
            "entity_id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{role.name}/{sub}")),
            "token_type": "service",
            "orphan": True,
        })

    def _lease_for(self, request: ApiRequest) -> _Lease:
        token = request.header("X-Vault-Token")
        if not token:
            raise HTTPError(403, "permission denied")
        with self._lock:
            lease = self._leases.get(_hash(token.strip()))
            if lease is not None and lease.expires <= self.clock():
                del self._leases[_hash(token.strip())]
                lease = None
        if lease is None:
            raise HTTPError(403, "permission denied")
        return lease

    # -- PKI sign ----------------------------------------------------------------------------
    def _sign(self, request: ApiRequest) -> Response:
        pki_role = request.path[len(f"/v1/{self.pki_mount}/sign/"):]
        lease = self._lease_for(request)
        with self._lock:
            login_role = self._roles.get(lease.role)
            role = self._roles.get(pki_role)
        if login_role is None or pki_role not in login_role.sign_roles:
            raise HTTPError(403, "permission denied")
        if role is None:
            raise HTTPError(400, f"unknown role: {pki_role}")
        body = request.json_object()
        csr_pem = body.get("csr")
        if not isinstance(csr_pem, str) or not csr_pem.strip():
            raise HTTPError(400, '"csr" is empty')
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode("ascii", "replace"))
        except ValueError:
            raise HTTPError(400, "certificate request could not be parsed") from None
        if not csr.is_signature_valid:
            raise HTTPError(400, "request signature invalid")
        public = csr.public_key()
        if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP256R1):
            raise HTTPError(400, "role requires keys of type ec with 256 bits (P-256), as Linkerd's proxies use")
        identity = self._identity_of(csr, body, role)
        warnings: list[str] = []
        ttl = self._ttl(body, role, warnings)
        cert = self._issue(csr, identity, ttl)
        with self._lock:
            self.certificates_issued += 1
            self.issued.append(cert)
            chain = self._ca_chain
        logger.debug("%s: signed %s for %s (role %s, subject %s), ttl %gs", self.name,
                     _vault_serial(cert.serial_number), identity, pki_role, lease.subject, ttl)
        return _vault_response(data={
            "certificate": mesh_pki.certs_to_pem([cert]).decode(),
            "issuing_ca": mesh_pki.certs_to_pem([chain[0]]).decode(),
            "ca_chain": [mesh_pki.certs_to_pem([c]).decode() for c in chain],
            "serial_number": _vault_serial(cert.serial_number),
            "expiration": int(mesh_pki.not_after(cert).timestamp()),
        }, warnings=warnings)

    def _identity_of(self, csr: x509.CertificateSigningRequest, body: dict[str, Any], role: VaultRole) -> Identity:
        """Every name the request carries must be the one identity, and the role must allow it."""
        names: list[str] = []
        for attr in csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME):
            names.append(str(attr.value))
        try:
            sans = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        except x509.ExtensionNotFound:
            sans = None
        if sans is not None:
            for general in sans:
                if isinstance(general, x509.DNSName):
                    names.append(general.value)
                else:
                    raise HTTPError(400, f"{type(general).__name__} subject alternative names are not allowed by "
                                         "this role (a Linkerd leaf carries one DNS identity)")
        for key in ("common_name", "alt_names"):
            value = body.get(key)
            if isinstance(value, str):
                names.extend(n.strip() for n in value.split(",") if n.strip())
        for key in ("ip_sans", "uri_sans", "other_sans"):
            if body.get(key):
                raise HTTPError(400, f"{key} are not allowed by this role (a Linkerd leaf carries one DNS identity)")
        distinct = sorted(set(names))
        if not distinct:
            raise HTTPError(400, "the common_name field is required, or must be provided in a CSR")
        if len(distinct) != 1:
            raise HTTPError(400, f"a Linkerd leaf carries exactly one identity; the request names {', '.join(distinct)}")
        try:
            identity = Identity.parse(distinct[0])
        except IdentityError as err:
            raise HTTPError(400, f"common name {distinct[0]} is not a mesh identity: {err.message}") from None
        if not identity.is_dns or not role.allows(identity):
            raise HTTPError(400, f"common name {identity} not allowed by this role")
        return identity

    def _ttl(self, body: dict[str, Any], role: VaultRole, warnings: list[str]) -> float:
        requested = body.get("ttl")
        try:
            ttl = parse_duration(requested) if requested not in (None, "") else (role.ttl or self.ttl)
        except ValueError as err:
            raise HTTPError(400, f"invalid ttl: {err}") from None
        if ttl <= 0:
            raise HTTPError(400, "ttl must be positive")
        cap = role.max_ttl if role.max_ttl is not None else self.max_ttl
        if cap is not None and ttl > cap:
            warnings.append(f"TTL of \"{ttl:g}s\" exceeded the effective max_ttl of \"{cap:g}s\"; TTL value is "
                            "capped accordingly")
            ttl = cap
        return ttl

    def _issue(self, csr: x509.CertificateSigningRequest, identity: Identity, ttl: float) -> x509.Certificate:
        with self._lock:
            ca = self._issuer
        public = csr.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        return sign_linkerd_leaf(ca, public, identity, ttl=ttl)


def sign_linkerd_leaf(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    identity: str | Identity,
    *,
    ttl: float = 300.0,
    not_before: _dt.datetime | None = None,
    not_after: _dt.datetime | None = None,
) -> x509.Certificate:
    """A leaf with Linkerd's profile for someone else's public key (what a CSR carries).

    CN = identity (when it fits in 64 characters), one DNS SAN, KU digitalSignature, EKU
    serverAuth + clientAuth, SKI/AKI; valid from 30 s ago (Vault's ``not_before_duration``)
    for ``ttl`` seconds, never past the CA's own expiry. ``not_before``/``not_after`` override
    the window (tests use them for expired or not-yet-valid leaves).
    """
    ident = Identity.parse(identity)
    now = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0)
    start = not_before or (now - _NOT_BEFORE_SKEW)
    end = min(not_after or (now + _dt.timedelta(seconds=ttl)), mesh_pki.not_after(ca.cert))
    cn = [x509.NameAttribute(NameOID.COMMON_NAME, ident.value)] if len(ident.value) <= 64 else []
    ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(ident.value)]), critical=not cn)
    )
    return builder.sign(ca.key, hashes.SHA256())
