"""HashiCorp Vault as a certificate issuer: JWT auth login, then the PKI secrets engine.

``POST /v1/auth/<mount>/login`` with ``{"role", "jwt"}`` gives a Vault token (cached in memory
until 80 % of its lease, never pickled, logged or shown); ``POST /v1/<mount>/sign/<role>``
with the CSR gives the certificate. Vault's ``{"errors": [...]}`` answers become
:class:`IssuanceError` naming the address, mount and role, with the setting to check.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509

from ...errors import ConfigurationError
from ...identity import Identity
from ...outbound import OutboundRetryPolicy, Timeout, Verify
from ...redaction import redact_text, redact_url
from .base import (
    DEFAULT_ISSUER_TIMEOUT,
    CertificateIssuer,
    IssuanceError,
    SignedCertificate,
    signed_certificate,
    ttl_text,
)
from .csr import csr_pem, dns_identity

__all__ = ["VaultPKIIssuer"]

log = logging.getLogger("meshclient.issuers")


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
        retries: how connection errors and 5xx/408/429 answers are retried (an
            :class:`~meshclient.outbound.OutboundRetryPolicy`).

    The Vault token from the login is cached in memory until 80 % of its lease (never
    pickled, logged or shown); a ``403`` on signing with a cached token logs in once more.
    """

    kind = "Vault"
    _transient = ("_vault_token",)

    def __init__(self, address: str, *, role: str, pki_mount: str = "pki", auth_mount: str = "jwt",
                 auth_role: str | None = None, ttl: float | str | None = None, namespace: str | None = None,
                 verify: Verify = True, timeout: Timeout = DEFAULT_ISSUER_TIMEOUT,
                 retries: OutboundRetryPolicy | None = None) -> None:
        self.role = _check_segment(role, "The PKI role")
        self.pki_mount = _check_segment(pki_mount, "The PKI mount")
        self.auth_mount = _check_segment(auth_mount, "The JWT auth mount")
        self.auth_role = _check_segment(auth_role, "The JWT auth role") if auth_role is not None else self.role
        self.ttl = ttl_text(ttl)
        self.namespace = namespace
        super().__init__(address, verify=verify, timeout=timeout, retries=retries)

    def _init_runtime(self) -> None:
        self._vault_token: _VaultToken | None = None

    @property
    def address(self) -> str:
        return self.url

    @property
    def description(self) -> str:
        return f"Vault at {redact_url(self.url)} (PKI mount '{self.pki_mount}', role '{self.role}')"

    def __repr__(self) -> str:
        ns = f", namespace={self.namespace!r}" if self.namespace else ""
        return (f"VaultPKIIssuer(address={redact_url(self.url)!r}, pki_mount={self.pki_mount!r}, role={self.role!r}, "
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
        action = f"JWT login to Vault at {redact_url(self.url)} (auth mount '{self.auth_mount}', role '{self.auth_role}'){who}"
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
        ident = dns_identity(identity)
        body: dict[str, Any] = {"csr": csr_pem(csr), "common_name": ident.value, "alt_names": ident.value,
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
            signed = signed_certificate([data.get("certificate")], chain_pems, issuer=self.description,
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


def _check_segment(value: str, what: str) -> str:
    """A mount or role name, pasted into a URL path: refuse what would change the path."""
    text = value.strip("/") if isinstance(value, str) else ""
    parts = text.split("/")
    if not text or any(p in ("", ".", "..") or any(c.isspace() or c in "?#%" for c in p) for p in parts):
        raise ConfigurationError(f"{what} {value!r} is not a valid Vault path segment.",
                                 hint="Use the name as Vault shows it, e.g. 'pki' or 'pki_int'.")
    return text
