"""What every certificate issuer shares: the error, the signed answer, and the HTTP side.

An issuer lives outside the mesh, so its calls go through :mod:`meshclient.outbound`: public
CA trust or the ``verify=`` bundle of a private issuer (never the mesh anchors), timeouts, no
redirects (a redirect would carry the JWT or Vault token elsewhere), retries on connection
errors, 5xx, 408 and 429 with backoff and ``Retry-After``, stopped early when the owning
source closes. Each protocol maps the answer's error document to :class:`IssuanceError`.
"""

from __future__ import annotations

import datetime as _dt
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import requests
from cryptography import x509

from ... import pki
from ...errors import ConfigurationError, CredentialsError
from ...identity import Identity
from ...outbound import (
    DEFAULT_TIMEOUT,
    Cancelled,
    OutboundClient,
    OutboundRetryPolicy,
    OutboundSettings,
    Timeout,
    Unreachable,
    Verify,
    check_ca_bundle,
    check_endpoint_url,
    sleep_unless,
)
from ...redaction import redact_url

__all__ = [
    "CertificateIssuer",
    "SignedCertificate",
    "IssuanceError",
    "DEFAULT_ISSUER_TIMEOUT",
    "signed_certificate",
    "ttl_text",
]

#: (connect, read) seconds for issuer calls: signing is quick, a stalled issuer must not
#: hold the refresh thread for long.
DEFAULT_ISSUER_TIMEOUT: tuple[float, float] = DEFAULT_TIMEOUT


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


def signed_certificate(leaf_pems: Sequence[object], chain_pems: Sequence[object], *, issuer: str, serial: object = "",
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


def ttl_text(ttl: float | str | None) -> str | None:
    """A requested lifetime as the issuer wants it: Vault/step-ca durations, or whole seconds."""
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

    Subclasses implement :meth:`sign` and :attr:`description`, with :meth:`_post` for the
    HTTP calls. ``verify``, ``timeout`` and ``retries`` (an
    :class:`~meshclient.outbound.OutboundRetryPolicy`) are the outbound settings. Picklable:
    sessions and what :attr:`_transient` names (cached issuer tokens) stay behind.
    """

    kind: ClassVar[str] = "certificate issuer"
    _transient: ClassVar[tuple[str, ...]] = ()

    def __init__(self, url: str, *, verify: Verify = True, timeout: Timeout = DEFAULT_ISSUER_TIMEOUT,
                 retries: OutboundRetryPolicy | None = None) -> None:
        if not isinstance(url, str):
            raise ConfigurationError(f"The {self.kind} address must be a URL string, got {type(url).__name__}.")
        self.url = check_endpoint_url(url.rstrip("/"), f"The {self.kind} address")
        settings = OutboundSettings(timeout=timeout, verify=verify, retries=retries or OutboundRetryPolicy())
        check_ca_bundle(settings.verify, self.kind)
        self._http = OutboundClient(settings)
        self._init_runtime()

    def _init_runtime(self) -> None:  # noqa: B027 - optional hook
        """Set up what :attr:`_transient` names (after construction and after unpickling)."""

    @property
    def outbound(self) -> OutboundSettings:
        """The HTTP settings (timeout, verify, retries) of this issuer's calls."""
        return self._http.settings

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
        self._http.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description})"

    def __getstate__(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in self._transient}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()

    # -- HTTP ---------------------------------------------------------------------------------
    def _post(self, path: str, body: Mapping[str, Any], *, action: str, headers: Mapping[str, str] | None = None,
              secrets: Sequence[str | None] = (), cancel: threading.Event | None = None) -> requests.Response:
        """POST JSON with the outbound retry loop; returns the last answer (the caller maps error
        statuses) or raises :class:`IssuanceError` when the issuer could not be reached at all."""
        url = self.url + path
        try:
            reply = self._http.call("POST", url, what=action, sleep=sleep_unless(cancel), secrets=lambda: secrets,
                                    json=dict(body), headers=dict(headers or {}))
        except Unreachable as exc:
            raise IssuanceError(
                f"{action}: could not reach {self.description} at {redact_url(url)}: {exc.detail}",
                hint=("The issuer's HTTPS certificate did not verify: pass verify='/path/to/ca-bundle.pem' for "
                      "an issuer with a private CA." if exc.verification else
                      "Check the address, the network path from this cluster and that the issuer is up; "
                      "the current certificate stays in use meanwhile."),
                retryable=not exc.verification,
            ) from None
        except Cancelled:
            raise IssuanceError(f"{action}: stopped because the identity source was closed.", retryable=True) from None
        return reply.response

    @staticmethod
    def _json(resp: requests.Response) -> Any:
        try:
            return resp.json()
        except ValueError:
            return None
