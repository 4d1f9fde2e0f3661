"""``IssuerSource``: a rotating identity whose certificates come from an issuer.

Why: a Databricks job cannot run Linkerd's proxy, so nothing renews a 24 h leaf for it. Like
Linkerd's ``proxy-identity``, this source makes an ECDSA P-256 key in memory, a CSR whose CN
and one DNS SAN are its identity, and exchanges the CSR plus an OIDC token for a certificate
(:mod:`.vault`, :mod:`.stepca`). It renews at 70 % of the remaining lifetime (Linkerd's proxy
rule), keeps the current certificate through an issuer outage and applies changed trust
anchors without a new certificate when the current one still chains to them. Trust anchors
always come from configuration, never from the issuer's answer (``issuing_ca``/``ca_chain``
are used only as intermediates to send): trusting what the issuer says would let a wrong
issuer vouch for itself.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from ... import pki
from ...errors import ConfigurationError, CredentialsError, IdentitySANError, MeshError
from ...identity import Identity
from ...tokens import Token, TokenEndpointError, TokenError, TokenProvider
from .. import loaders
from ..snapshot import Credentials
from ..sources import MAX_REFRESH, MIN_REFRESH, IdentitySource, refresh_delay
from .base import CertificateIssuer, IssuanceError
from .csr import dns_identity, new_key_and_csr

__all__ = ["IssuerSource"]

log = logging.getLogger("meshclient.issuers")


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
        self.identity = dns_identity(identity)
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

    def _token_refused(self, tok: Token) -> None:
        """Tell the provider the issuer refused its token, so the next attempt gets a fresh one."""
        try:
            self.token.on_unauthorized(tok.authorization)
        except TokenError as exc:  # no new token yet: the next attempt reports it properly
            log.debug("%s: no fresh token after the issuer refused one: %s", self.description, type(exc).__name__)

    def _issue(self, anchors: list[x509.Certificate]) -> tuple[Credentials, ec.EllipticCurvePrivateKey]:
        key, csr = new_key_and_csr(self.identity)
        tok = self.token.token()
        try:
            signed = self.issuer.sign(csr, self.identity, tok.value, cancel=self._closed)
        except IssuanceError as exc:
            if exc.token_rejected:
                self._token_refused(tok)
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
