"""Short-lived mesh certificates from a certificate issuer, renewed automatically.

Why: a Databricks job cannot run Linkerd's proxy, so nothing renews a 24 h leaf for it. Like
Linkerd's ``proxy-identity``, the client makes an ECDSA P-256 key in memory, a CSR whose CN
and one DNS SAN are its identity, and exchanges the CSR plus an OIDC token for a
certificate. The key never leaves the process and never touches disk; a new key is made for
every renewal.

Two issuer protocols, sharing the key/CSR code and the HTTP plumbing:

* :class:`VaultPKIIssuer`: HashiCorp Vault's JWT auth login (``POST /v1/auth/<mount>/login``
  with ``{"role", "jwt"}``) then the PKI secrets engine (``POST /v1/<mount>/sign/<role>``
  with the CSR). Vault's ``{"errors": [...]}`` answers become :class:`IssuanceError` naming
  the address, mount and role.
* :class:`StepCAIssuer`: smallstep step-ca's ``POST /1.0/sign`` with an OIDC (or JWK)
  provisioner token as ``ott``.

:class:`IssuerSource` is the rotating source on top: it renews at 70 % of the remaining
lifetime (Linkerd's proxy rule), keeps the current certificate through an issuer outage
and applies changed trust anchors without a new certificate when the current one still
chains to them. Trust anchors always come from configuration, never from the issuer's
answer (``issuing_ca``/``ca_chain`` are used only as intermediates to send): trusting what
the issuer says would let a wrong issuer vouch for itself.

Issuers live outside the mesh, so their HTTP calls use a plain ``requests.Session`` with
normal CA verification (``verify=`` a CA bundle path for private CAs), timeouts, no
redirects (a redirect would carry the JWT or Vault token elsewhere) and retries on 5xx,
408 and 429 with backoff. Tokens, Vault tokens and keys never appear in logs, errors or
``repr``.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import threading
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .. import pki
from ..errors import ConfigurationError, CredentialsError, IdentitySANError, MeshError
from ..identity import Identity
from ..redaction import redact_text
from ..tokens import RetryPolicy, TokenProvider
from ..tokens._http import parse_retry_after
from ..tokens._util import check_endpoint_url
from ..tokens.errors import TokenEndpointError, TokenError
from . import loaders
from .snapshot import Credentials
from .sources import MAX_REFRESH, MIN_REFRESH, IdentitySource, refresh_delay

__all__ = [
    "CertificateIssuer",
    "SignedCertificate",
    "VaultPKIIssuer",
    "StepCAIssuer",
    "IssuerSource",
    "IssuanceError",
    "new_key_and_csr",
    "DEFAULT_ISSUER_TIMEOUT",
]

log = logging.getLogger("meshclient.issuers")

#: (connect, read) seconds for issuer calls: signing is quick, a stalled issuer must not
#: hold the refresh thread for long.
DEFAULT_ISSUER_TIMEOUT: tuple[float, float] = (5.0, 30.0)
_MAX_CN = 64  # RFC 5280 ub-common-name; longer identities go in the SAN only (Linkerd allows an empty CN)


class IssuanceError(CredentialsError):
    """The certificate issuer refused the request or could not be reached.

    ``status`` is the HTTP status (``None`` for network errors); ``retryable`` says whether
    trying again later may help (network errors, 5xx, 408, 429); ``token_rejected`` says the
    issuer refused the OIDC token itself, so a fresh one is worth fetching.
    """

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None,
                 retryable: bool = False, token_rejected: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.retryable = retryable
        self.token_rejected = token_rejected


# -- key and CSR ----------------------------------------------------------------------------
def _dns_identity(identity: str | Identity) -> Identity:
    ident = Identity.parse(identity)
    if not ident.is_dns:
        raise ConfigurationError(
            f"Certificates from an issuer carry a DNS identity like Linkerd's; '{ident}' is a SPIFFE ID.",
            hint="Use the workload's Linkerd identity, e.g. "
            "'notebook.ml-team.serviceaccount.identity.linkerd.cluster.local'.",
        )
    return ident


def new_key_and_csr(identity: str | Identity) -> tuple[ec.EllipticCurvePrivateKey, x509.CertificateSigningRequest]:
    """A fresh ECDSA P-256 key and a CSR shaped like Linkerd's ``proxy-identity`` makes.

    Subject ``CN=<identity>`` (left empty when the name exceeds X.509's 64 characters, which
    Linkerd accepts) and exactly one DNS SAN, the identity; signed with ECDSA-SHA256.
    """
    ident = _dns_identity(identity)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, ident.value)] if len(ident.value) <= _MAX_CN else []
    )
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(subject)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(ident.value)]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, csr


def _csr_pem(csr: x509.CertificateSigningRequest) -> str:
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


# -- what an issuer returns -----------------------------------------------------------------
@dataclass(frozen=True)
class SignedCertificate:
    """An issued leaf and the intermediates to send after it (self-signed roots removed)."""

    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    issuer: str  # the issuer's description, for logs
    serial: str = ""
    expiration: _dt.datetime | None = None

    @property
    def not_after(self) -> _dt.datetime:
        return pki.not_after(self.leaf)


def _certs(pems: Iterable[object], *, where: str, what: str) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for pem in pems:
        if isinstance(pem, str) and pem.strip():
            out.extend(pki.load_certificates(pem, where=where, what=what))
    return out


def _signed(leaf_pems: Sequence[object], chain_pems: Sequence[object], *, issuer: str, serial: object = "",
            expiration: object = None) -> SignedCertificate:
    """Parse an issuer's PEM answer: first certificate = leaf, then intermediates, no roots."""
    where = f"the answer of {issuer}"
    leafs = _certs(leaf_pems, where=where, what="issued certificate")
    if not leafs:
        raise IssuanceError(f"{issuer} answered without a certificate.",
                            hint="Check the issuer's logs; this is not a valid signing answer.")
    leaf = leafs[0]
    chain: list[x509.Certificate] = []
    for cert in [*leafs[1:], *_certs(chain_pems, where=where, what="CA chain")]:
        if cert == leaf or cert in chain or pki.is_self_signed(cert):
            continue  # roots are trust anchors: they come from configuration, never from the issuer
        chain.append(cert)
    exp: _dt.datetime | None = None
    if isinstance(expiration, (int, float)) and not isinstance(expiration, bool) and expiration > 0:
        exp = _dt.datetime.fromtimestamp(float(expiration), _dt.timezone.utc)
    return SignedCertificate(leaf, tuple(chain), issuer, str(serial or ""), exp)


# -- the HTTP side shared by issuers ------------------------------------------------------------
def _check_segment(value: str, what: str) -> str:
    """A mount or role name, pasted into a URL path: refuse what would change the path."""
    text = value.strip("/") if isinstance(value, str) else ""
    parts = text.split("/")
    if not text or any(p in ("", ".", "..") or any(c.isspace() or c in "?#%" for c in p) for p in parts):
        raise ConfigurationError(f"{what} {value!r} is not a valid Vault path segment.",
                                 hint="Use the name as Vault shows it, e.g. 'pki' or 'pki_int'.")
    return text


def _timeout_pair(timeout: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(timeout, tuple):
        return float(timeout[0]), float(timeout[1])
    return float(timeout), float(timeout)


def _ttl_text(ttl: float | str | None) -> str | None:
    if ttl is None:
        return None
    if isinstance(ttl, str):
        if not ttl.strip():
            raise ConfigurationError("ttl must be a number of seconds or a duration like '24h'.")
        return ttl.strip()
    if ttl < 1:
        raise ConfigurationError(f"ttl must be at least 1 second, got {ttl!r}.")
    return f"{int(round(ttl))}s"


class CertificateIssuer(ABC):
    """An issuer protocol: turns a CSR and an OIDC token into a :class:`SignedCertificate`.

    Subclasses implement :meth:`sign` and :attr:`description` with :meth:`_post` for the
    HTTP calls. Picklable: sessions, locks and cached issuer tokens are dropped and rebuilt.
    """

    kind: ClassVar[str] = "certificate issuer"
    _transient: ClassVar[tuple[str, ...]] = ("_session", "_lock")

    def __init__(self, url: str, *, verify: bool | str = True,
                 timeout: float | tuple[float, float] = DEFAULT_ISSUER_TIMEOUT,
                 retry: RetryPolicy | None = None) -> None:
        if not isinstance(url, str):
            raise ConfigurationError(f"The {self.kind} address must be a URL string, got {type(url).__name__}.")
        self.url = check_endpoint_url(url.rstrip("/"), f"The {self.kind} address")
        if not isinstance(verify, (bool, str)):
            raise ConfigurationError("verify must be True, False or the path of a CA bundle.")
        if isinstance(verify, str) and not os.path.exists(verify):
            raise ConfigurationError(f"The CA bundle verify={verify!r} for the {self.kind} does not exist.",
                                     hint="Pass the path of a PEM file holding the issuer's CA certificate(s).")
        self.verify = verify
        self.timeout = _timeout_pair(timeout)
        self.retry = retry or RetryPolicy()
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._session: requests.Session | None = None
        self._lock = threading.Lock()

    # -- public -------------------------------------------------------------------------------
    @property
    @abstractmethod
    def description(self) -> str:
        """Which issuer this is (address, mount, role): for logs and errors, never secrets."""

    @abstractmethod
    def sign(self, csr: x509.CertificateSigningRequest, identity: Identity, jwt: str, *,
             cancel: threading.Event | None = None) -> SignedCertificate:
        """Have ``csr`` for ``identity`` signed, authenticating with the OIDC token ``jwt``.

        ``cancel`` (set by a closing source) stops retries early. Raises
        :class:`IssuanceError` (or :class:`~meshclient.MaterialFormatError` for an answer
        that is not a certificate).
        """

    def close(self) -> None:
        """Release pooled connections (the issuer stays usable; a session is rebuilt on demand)."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._transient}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in self._transient:
            self.__dict__.pop(name, None)
        self._init_runtime()

    # -- HTTP ---------------------------------------------------------------------------------
    def _get_session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                from .._version import __version__

                s = requests.Session()
                s.headers["User-Agent"] = f"meshclient/{__version__} python-requests/{requests.__version__}"
                s.headers["Accept"] = "application/json"
                self._session = s
            return self._session

    def _post(self, path: str, body: Mapping[str, Any], *, action: str, headers: Mapping[str, str] | None = None,
              secrets: Sequence[str | None] = (), cancel: threading.Event | None = None) -> requests.Response:
        """POST JSON, retrying connection errors and 5xx/408/429 with backoff (``Retry-After`` honoured).

        Returns the last response (the caller maps error statuses); raises
        :class:`IssuanceError` when the issuer could not be reached at all.
        """
        url = self.url + path
        policy = self.retry
        attempts = policy.attempts
        for attempt in range(attempts):
            last = attempt == attempts - 1
            delay = policy.backoff(attempt)
            try:
                resp = self._get_session().post(url, json=dict(body), headers=dict(headers or {}),
                                                timeout=self.timeout, verify=self.verify, allow_redirects=False)
            except (requests.RequestException, OSError) as exc:  # OSError: an unreadable CA bundle
                detail = redact_text(str(exc), secrets).replace("\n", " ")[:300] or type(exc).__name__
                # TLS verification (or CA bundle) problems will not fix themselves: no retry.
                tls_problem = isinstance(exc, requests.exceptions.SSLError) or not isinstance(
                    exc, requests.RequestException)
                err = IssuanceError(
                    f"{action}: could not reach {self.description} at {url}: {type(exc).__name__}: {detail}",
                    hint=("The issuer's HTTPS certificate did not verify: pass verify='/path/to/ca-bundle.pem' for "
                          "an issuer with a private CA." if tls_problem else
                          "Check the address, the network path from this cluster and that the issuer is up; "
                          "the current certificate stays in use meanwhile."),
                    retryable=not tls_problem,
                )
                if tls_problem or last:
                    raise err from None
                log.debug("%s: %s failed (%s), retrying in %.2f s", self.description, action, type(exc).__name__,
                          delay)
            else:
                if resp.status_code not in policy.statuses or last:
                    return resp
                hinted = parse_retry_after(resp.headers.get("Retry-After"), time.time())
                if hinted is not None:
                    if hinted > policy.max_retry_after:
                        return resp
                    delay = hinted
                log.debug("%s: %s answered %d, retrying in %.2f s", self.description, action, resp.status_code,
                          delay)
                resp.close()
            if cancel is not None:
                if cancel.wait(delay):
                    raise IssuanceError(f"{action}: stopped because the identity source was closed.",
                                        retryable=True)
            else:
                time.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            return None


# -- Vault ----------------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class _VaultToken:
    """A Vault client token and when to stop using it (monotonic); ``repr`` hides the value."""

    value: str = field(repr=False)
    use_until: float | None

    @property
    def accessor_hint(self) -> str:
        return hashlib.sha256(self.value.encode()).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"_VaultToken(fingerprint={self.accessor_hint!r})"


def _vault_errors(doc: Any) -> list[str]:
    if isinstance(doc, dict) and isinstance(doc.get("errors"), list):
        return [str(e) for e in doc["errors"] if str(e).strip()]
    return []


class VaultPKIIssuer(CertificateIssuer):
    """HashiCorp Vault's PKI secrets engine, authenticated by Vault's JWT auth method.

    Args:
        address: Vault's address, e.g. ``https://vault.example.com:8200`` (plain ``http`` only
            on loopback).
        role: the PKI role to sign with (``/v1/<pki_mount>/sign/<role>``).
        pki_mount: where the PKI secrets engine is mounted (default ``pki``).
        auth_mount: where the JWT auth method is mounted (default ``jwt``).
        auth_role: the JWT auth role to log in with (default: the same name as ``role``).
        ttl: requested lifetime, seconds or a Vault duration (``"24h"``); default: the role's.
        namespace: Vault Enterprise namespace (``X-Vault-Namespace``).
        verify: ``True`` (system/certifi CAs), ``False``, or a CA bundle path.
        timeout: ``(connect, read)`` seconds per HTTP call.
        retry: how connection errors and 5xx/408/429 answers are retried.

    The Vault token from the login is cached in memory until 80 % of its lease (never
    pickled, logged or shown); a ``403`` on signing with a cached token logs in once more.
    """

    kind = "Vault"
    _transient = ("_session", "_lock", "_vault_token")

    def __init__(self, address: str, *, role: str, pki_mount: str = "pki", auth_mount: str = "jwt",
                 auth_role: str | None = None, ttl: float | str | None = None, namespace: str | None = None,
                 verify: bool | str = True, timeout: float | tuple[float, float] = DEFAULT_ISSUER_TIMEOUT,
                 retry: RetryPolicy | None = None) -> None:
        self.role = _check_segment(role, "The PKI role")
        self.pki_mount = _check_segment(pki_mount, "The PKI mount")
        self.auth_mount = _check_segment(auth_mount, "The JWT auth mount")
        self.auth_role = _check_segment(auth_role, "The JWT auth role") if auth_role is not None else self.role
        self.ttl = _ttl_text(ttl)
        self.namespace = namespace
        super().__init__(address, verify=verify, timeout=timeout, retry=retry)

    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._vault_token: _VaultToken | None = None

    @property
    def address(self) -> str:
        return self.url

    @property
    def description(self) -> str:
        return f"Vault at {self.url} (PKI mount '{self.pki_mount}', role '{self.role}')"

    def __repr__(self) -> str:
        ns = f", namespace={self.namespace!r}" if self.namespace else ""
        return (f"VaultPKIIssuer(address={self.url!r}, pki_mount={self.pki_mount!r}, role={self.role!r}, "
                f"auth_mount={self.auth_mount!r}, auth_role={self.auth_role!r}{ns})")

    def _headers(self, token: str | None = None) -> dict[str, str]:
        headers: dict[str, str] = {}
        if token is not None:
            headers["X-Vault-Token"] = token
        if self.namespace:
            headers["X-Vault-Namespace"] = self.namespace
        return headers

    def forget_token(self) -> None:
        """Drop the cached Vault token (the next :meth:`sign` logs in again)."""
        self._vault_token = None

    def _login(self, jwt: str, *, identity: Identity | None = None,
               cancel: threading.Event | None = None) -> _VaultToken:
        """``POST /v1/auth/<auth_mount>/login`` with ``{"role", "jwt"}``: a Vault token."""
        who = f" for '{identity}'" if identity is not None else ""
        action = f"JWT login to Vault at {self.url} (auth mount '{self.auth_mount}', role '{self.auth_role}'){who}"
        resp = self._post(f"/v1/auth/{self.auth_mount}/login", {"role": self.auth_role, "jwt": jwt},
                          action=action, headers=self._headers(), secrets=(jwt,), cancel=cancel)
        with resp:
            doc = self._json(resp)
            if resp.status_code != 200:
                raise self._error(resp.status_code, doc, action=action, stage="login", secrets=(jwt,))
        auth = doc.get("auth") if isinstance(doc, dict) else None
        token = auth.get("client_token") if isinstance(auth, dict) else None
        if not isinstance(token, str) or not token:
            raise IssuanceError(f"{action}: Vault answered 200 without auth.client_token.",
                                hint=f"Check that auth mount '{self.auth_mount}' is a JWT/OIDC auth method.")
        lease = auth.get("lease_duration") if isinstance(auth, dict) else None
        use_until = (time.monotonic() + 0.8 * float(lease)
                     if isinstance(lease, (int, float)) and not isinstance(lease, bool) and lease > 0 else None)
        vt = _VaultToken(token, use_until)
        log.debug("%s: logged in (auth role '%s', token %s, lease %s s)", self.description, self.auth_role,
                  vt.accessor_hint, lease)
        return vt

    def _cached_token(self) -> _VaultToken | None:
        vt = self._vault_token
        if vt is None:
            return None
        if vt.use_until is None or time.monotonic() >= vt.use_until:
            self._vault_token = None
            return None
        return vt

    def sign(self, csr: x509.CertificateSigningRequest, identity: Identity, jwt: str, *,
             cancel: threading.Event | None = None) -> SignedCertificate:
        """Log in with ``jwt`` (or reuse the cached Vault token), then ``POST /v1/<mount>/sign/<role>``."""
        ident = _dns_identity(identity)
        body: dict[str, Any] = {"csr": _csr_pem(csr), "common_name": ident.value, "alt_names": ident.value,
                                "format": "pem"}
        if self.ttl is not None:
            body["ttl"] = self.ttl
        action = f"Signing a certificate for '{ident}' at {self.description}"
        path = f"/v1/{self.pki_mount}/sign/{urllib.parse.quote(self.role, safe='/')}"
        for fresh_login in (False, True):
            vt = None if fresh_login else self._cached_token()
            cached = vt is not None
            if vt is None:
                vt = self._login(jwt, identity=ident, cancel=cancel)
                self._vault_token = vt if vt.use_until is not None else None
            secrets = (jwt, vt.value)
            resp = self._post(path, body, action=action, headers=self._headers(vt.value), secrets=secrets,
                              cancel=cancel)
            with resp:
                doc = self._json(resp)
                if resp.status_code == 403 and cached:
                    log.info("%s: the cached Vault token was refused; logging in again", self.description)
                    self._vault_token = None
                    continue
                if resp.status_code != 200:
                    raise self._error(resp.status_code, doc, action=action, stage="sign", secrets=secrets)
            data = doc.get("data") if isinstance(doc, dict) else None
            if not isinstance(data, dict):
                raise IssuanceError(f"{action}: Vault answered 200 without a data object.")
            chain = data.get("ca_chain")
            chain_pems: list[object] = list(chain) if isinstance(chain, list) else [data.get("issuing_ca")]
            signed = _signed([data.get("certificate")], chain_pems, issuer=self.description,
                             serial=data.get("serial_number"), expiration=data.get("expiration"))
            log.debug("%s: signed serial %s for '%s', valid until %s", self.description, signed.serial, ident,
                      f"{signed.not_after:%Y-%m-%d %H:%M:%S} UTC")
            return signed
        raise AssertionError("unreachable")  # pragma: no cover

    def _error(self, status: int, doc: Any, *, action: str, stage: str, secrets: Sequence[str | None]) -> IssuanceError:
        errors = _vault_errors(doc)
        detail = redact_text("; ".join(errors), secrets) if errors else "no Vault error document in the answer"
        retryable = status >= 500 or status in (408, 429)
        if stage == "login":
            hints = {
                400: (f"Vault refused the token: check JWT auth role '{self.auth_role}' (bound_audiences, "
                      "bound_subject, bound_claims, user_claim) and that the token comes from the issuer configured "
                      f"in auth/{self.auth_mount}/config (oidc_discovery_url or jwks_url)."),
                403: f"Vault denied the login: check that auth mount '{self.auth_mount}' exists and allows role "
                     f"'{self.auth_role}'.",
                404: f"No JWT auth method is mounted at 'auth/{self.auth_mount}': set auth_mount=.",
            }
        else:
            hints = {
                400: (f"Check that PKI role '{self.role}' allows this identity (allowed_domains with "
                      "allow_subdomains or allow_glob_domains), EC P-256 keys, and a ttl within its max_ttl."),
                403: (f"The Vault token from JWT role '{self.auth_role}' may not use '{self.pki_mount}/sign/{self.role}': "
                      "grant the 'update' capability on that path in the role's token_policies."),
                404: f"No PKI mount '{self.pki_mount}' or role '{self.role}' at this Vault: check pki_mount= and role=.",
            }
        hint = hints.get(status) or (
            "Vault is sealed, in maintenance or overloaded; meshclient keeps the current certificate and retries."
            if retryable else "See Vault's error text above.")
        return IssuanceError(f"{action} failed: HTTP {status}: {detail}.", hint=hint, status=status,
                             retryable=retryable, token_rejected=stage == "login" and status in (400, 401, 403))


# -- step-ca ----------------------------------------------------------------------------------------
class StepCAIssuer(CertificateIssuer):
    """smallstep step-ca: ``POST /1.0/sign`` with ``{"csr", "ott"}`` (an OIDC or JWK provisioner token).

    ``verify`` is usually the CA's root bundle path (step-ca serves HTTPS from its own PKI).
    ``ttl`` becomes ``notAfter`` (a duration); the provisioner's limits apply.
    """

    kind = "step-ca"

    def __init__(self, url: str, *, ttl: float | str | None = None, verify: bool | str = True,
                 timeout: float | tuple[float, float] = DEFAULT_ISSUER_TIMEOUT,
                 retry: RetryPolicy | None = None) -> None:
        self.ttl = _ttl_text(ttl)
        super().__init__(url, verify=verify, timeout=timeout, retry=retry)

    @property
    def description(self) -> str:
        return f"step-ca at {self.url}"

    def sign(self, csr: x509.CertificateSigningRequest, identity: Identity, jwt: str, *,
             cancel: threading.Event | None = None) -> SignedCertificate:
        ident = _dns_identity(identity)
        body: dict[str, Any] = {"csr": _csr_pem(csr), "ott": jwt}
        if self.ttl is not None:
            body["notAfter"] = self.ttl
        action = f"Signing a certificate for '{ident}' at {self.description}"
        resp = self._post("/1.0/sign", body, action=action, secrets=(jwt,), cancel=cancel)
        with resp:
            doc = self._json(resp)
            status = resp.status_code
        if status not in (200, 201):
            message = doc.get("message") if isinstance(doc, dict) else None
            detail = redact_text(str(message), (jwt,)) if message else "no error message in the answer"
            retryable = status >= 500 or status in (408, 429)
            hint = {
                400: "step-ca could not read the request; check the CA version and the provisioner type.",
                401: ("step-ca refused the token: check the provisioner (OIDC client ID/audience, allowed domains) "
                      "and that the token is fresh."),
                403: "step-ca refused to sign for this identity: check the provisioner's policy and claims.",
            }.get(status, "step-ca is down or overloaded; the current certificate stays in use meanwhile."
                  if retryable else "See step-ca's message above.")
            raise IssuanceError(f"{action} failed: HTTP {status}: {detail}.", hint=hint, status=status,
                                retryable=retryable, token_rejected=status == 401)
        if not isinstance(doc, dict):
            raise IssuanceError(f"{action}: step-ca answered {status} without a JSON object.")
        chain = doc.get("certChain")
        chain_pems: list[object] = list(chain) if isinstance(chain, list) else [doc.get("ca")]
        # certChain is leaf first; _signed drops the leaf if it appears again.
        return _signed([doc.get("crt")], chain_pems, issuer=self.description)


# -- the rotating source ------------------------------------------------------------------------------
@dataclass(frozen=True, repr=False)
class _Issued:
    leaf: x509.Certificate
    chain: tuple[x509.Certificate, ...]
    key: ec.EllipticCurvePrivateKey
    anchors_pem: bytes
    renew_at: float  # monotonic


def _anchor_setting(anchors: bytes | str | os.PathLike[str]) -> tuple[bytes | None, Path | None]:
    if isinstance(anchors, bytes):
        return anchors, None
    if isinstance(anchors, str) and "-----BEGIN" in anchors:
        return anchors.encode("ascii", "replace"), None
    if isinstance(anchors, (str, os.PathLike)):
        return None, Path(os.fspath(anchors))
    raise ConfigurationError(
        f"trust_anchors must be PEM bytes, PEM text or a file path, got {type(anchors).__name__}.",
        hint="Pass the mesh trust anchors (Linkerd's ca-bundle.crt), e.g. trust_anchors='ca.crt'.",
    )


class IssuerSource(IdentitySource):
    """A rotating identity whose certificates come from an issuer (Vault PKI, step-ca).

    Each fetch makes a new P-256 key and CSR in memory, gets a JWT from ``token`` (any
    :mod:`meshclient.tokens` provider), has the CSR signed and validates the result with
    the configured ``trust_anchors`` (PEM bytes/text or a file path, watched every
    ``poll_interval`` seconds). Renewal happens at 70 % of the remaining lifetime (clamped
    to [``min_refresh``, ``max_refresh``]); an unreachable issuer keeps the current
    certificate until it expires, then :meth:`current` raises
    :class:`~meshclient.CertificateValidityError` until the issuer answers again.

    Changed anchors are applied with the current certificate when it still chains to them
    (no issuer call); otherwise a new certificate is requested. The source owns nothing of
    the issuer but its HTTP session, which :meth:`close` releases.

    Pickling ships the issuer settings, the token provider settings and the anchors setting;
    the copy in a Spark worker gets its own key and certificate on first use.
    """

    def __init__(self, issuer: CertificateIssuer, identity: str | Identity, *, token: TokenProvider,
                 trust_anchors: bytes | str | os.PathLike[str], poll_interval: float = 5.0,
                 timeout: float = 30.0, min_refresh: float = MIN_REFRESH, max_refresh: float = MAX_REFRESH,
                 start: bool = True) -> None:
        if not isinstance(issuer, CertificateIssuer):
            raise ConfigurationError("issuer must be a VaultPKIIssuer, StepCAIssuer or another CertificateIssuer.")
        if not callable(getattr(token, "token", None)):
            raise ConfigurationError("token must be a provider from meshclient.tokens (it supplies the OIDC JWT).",
                                     hint="e.g. token=meshclient.tokens.ClientCredentials(token_url=..., ...).")
        self.issuer = issuer
        self.identity = _dns_identity(identity)
        self.token = token
        self._anchors_pem, self._anchors_path = _anchor_setting(trust_anchors)
        # Polled even for in-memory anchors (a no-op then), so a later set_trust_anchors(path) is watched.
        super().__init__(poll_interval=poll_interval, timeout=timeout, min_refresh=min_refresh,
                         max_refresh=max_refresh, start=start)

    # -- runtime state -----------------------------------------------------------------------
    def _init_runtime(self) -> None:
        super()._init_runtime()
        self._fetch_lock = threading.Lock()
        self._issued: _Issued | None = None
        self._anchors_stamp: tuple[int, int, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        for name in ("_fetch_lock", "_issued", "_anchors_stamp"):  # the key stays in this process
            state.pop(name, None)
        return state

    # -- public ------------------------------------------------------------------------------
    @property
    def description(self) -> str:
        return f"{self.issuer.description} for '{self.identity}'"

    @property
    def trust_anchors_setting(self) -> str:
        """Where the anchors come from (a path, or 'PEM in memory'); safe to log."""
        return f"file '{self._anchors_path}'" if self._anchors_path is not None else "PEM in memory"

    def set_trust_anchors(self, trust_anchors: bytes | str | os.PathLike[str]) -> Credentials:
        """Replace the trust anchors now (e.g. drop an old anchor after a rotation's overlap).

        Installs a snapshot trusting exactly the new anchors before returning it: the current
        certificate when it chains to them, else a new one from the issuer. Raises if neither
        works; the new setting is kept, so renewals keep trying, and the old snapshot (with the
        old anchors) stays in use until one succeeds.
        """
        self._anchors_pem, self._anchors_path = _anchor_setting(trust_anchors)
        try:
            snapshot = self._fetch()
        except MeshError as exc:
            self._record_failure(exc)
            raise
        self._install(snapshot)
        return snapshot

    def close(self) -> None:
        super().close()
        self.issuer.close()

    # -- IdentitySource hooks ----------------------------------------------------------------
    def _anchors_stat(self) -> tuple[int, int, int] | None:
        if self._anchors_path is None:
            return None
        st = os.stat(self._anchors_path)
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def _changed(self) -> bool:
        """The anchors file changed *in content* (a touch or a same-content swap is no reason
        to ask the issuer for anything)."""
        if self._anchors_path is None:
            return False
        stamp = self._anchors_stat()
        if stamp == self._anchors_stamp:
            return False
        issued = self._issued
        if issued is None:
            return True
        try:
            pem, _, _ = self._read_anchors()
        except MeshError:
            return True  # _fetch reports it properly
        if pem != issued.anchors_pem:
            return True
        self._anchors_stamp = stamp
        return False

    def _read_anchors(self) -> tuple[bytes, list[x509.Certificate], tuple[int, int, int] | None]:
        if self._anchors_path is not None:
            stamp = self._anchors_stat()
            raw = loaders.read_file(self._anchors_path, "trust anchors")
            where = f"file '{self._anchors_path}'"
        else:
            stamp = None
            raw = self._anchors_pem or b""
            where = f"the trust anchors given to {self.description}"
        certs = pki.load_certificates(raw, where=where, what="trust anchor bundle")
        return pki.certs_to_pem(certs), certs, stamp

    def _retry_first_fetch(self, exc: MeshError) -> bool:
        if isinstance(exc, IssuanceError):
            return exc.retryable
        if isinstance(exc, TokenEndpointError):
            return False  # wrong client settings: retrying will not help
        return isinstance(exc, TokenError)

    def _fetch(self) -> Credentials:
        with self._fetch_lock:
            anchors_pem, anchors, stamp = self._read_anchors()
            issued = self._issued
            if issued is not None and issued.anchors_pem != anchors_pem and time.monotonic() < issued.renew_at:
                try:  # new anchors, same certificate: no issuer call needed
                    creds = Credentials.from_objects(issued.leaf, issued.chain, anchors, issued.key,
                                                     source=self.description)
                except CredentialsError as exc:
                    log.info("%s: the current certificate does not chain to the new trust anchors (%s); "
                             "requesting a new one", self.description, type(exc).__name__)
                else:
                    self._issued = _Issued(issued.leaf, issued.chain, issued.key, anchors_pem, issued.renew_at)
                    self._anchors_stamp = stamp
                    log.info("%s: trust anchors changed (%d anchor(s)); certificate kept", self.description,
                             len(anchors))
                    return creds
            creds, fresh = self._issue(anchors)
            self._issued = _Issued(creds.leaf, creds.intermediates, fresh, anchors_pem,
                                   time.monotonic() + refresh_delay(creds.remaining().total_seconds(),
                                                                    min_refresh=self.min_refresh,
                                                                    max_refresh=self.max_refresh))
            self._anchors_stamp = stamp
            return creds

    def _issue(self, anchors: list[x509.Certificate]) -> tuple[Credentials, ec.EllipticCurvePrivateKey]:
        key, csr = new_key_and_csr(self.identity)
        tok = self.token.token()
        try:
            signed = self.issuer.sign(csr, self.identity, tok.value, cancel=self._closed)
        except IssuanceError as exc:
            if exc.token_rejected:
                self.token.invalidate(tok)  # the next attempt gets a fresh token
            raise
        creds = Credentials.from_objects(signed.leaf, signed.chain, anchors, key, source=self.description)
        if creds.identity != self.identity:
            raise IdentitySANError(
                f"{self.issuer.description} issued a certificate for '{creds.identity}' when asked for "
                f"'{self.identity}'; it is not used.",
                hint="Check the issuer role's settings: it must keep the CSR's identity (CN and DNS SAN).",
            )
        log.debug("%s: new certificate, serial %x, valid until %s", self.description, creds.serial,
                 f"{creds.not_after:%Y-%m-%d %H:%M:%S} UTC")
        return creds, key
