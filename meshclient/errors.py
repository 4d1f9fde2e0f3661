"""The error hierarchy: every exception meshclient raises is a :class:`MeshError`.

Messages follow one rule: say what failed, for which identity / file / endpoint, and
what to do about it. They never contain key material, tokens or secret values.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MeshError",
    "ConfigurationError",
    "ArgumentTypeError",
    "IdentityError",
    "CredentialsError",
    "MaterialNotFoundError",
    "MaterialFormatError",
    "EmptyMaterialError",
    "EncryptedKeyError",
    "WrongKeyPasswordError",
    "KeyMismatchError",
    "ChainError",
    "MissingIntermediateError",
    "CertificateValidityError",
    "CertificateExpiredError",
    "CertificateNotYetValidError",
    "UnsupportedKeyError",
    "IdentitySANError",
    "KeyUsageError",
    "TransportError",
    "ConnectError",
    "TLSHandshakeError",
    "ServerIdentityError",
    "MeshTimeoutError",
    "HTTPStatusError",
    "PolicyDeniedError",
    "NoEndpointAvailableError",
    "EgressDeniedError",
    "DeadlineExceededError",
    "SecretScopeError",
    "ScoringError",
    "ResultsError",
    "DoctorFailedError",
]


class MeshError(Exception):
    """Root of every error meshclient raises.

    ``hint`` holds the plain-words fix on its own so that tools (``meshclient doctor``)
    can print it separately; ``str(err)`` always includes it.
    """

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        self.message = message
        self.hint = hint
        super().__init__(f"{message} {hint}" if hint else message)

    def __reduce__(self) -> tuple[Any, ...]:
        # Exceptions pickle as ``cls(*args)`` by default, which loses ``hint`` and breaks
        # subclasses with keyword-only fields; Spark ships executor errors to the driver pickled.
        return (_restore, (type(self), self.args, dict(self.__dict__)))


def _restore(cls: type[MeshError], args: tuple[Any, ...], state: dict[str, Any]) -> MeshError:
    err = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class ConfigurationError(MeshError, ValueError):
    """An argument or setting is wrong (bad URL, missing option, unknown mode)."""


class ArgumentTypeError(ConfigurationError, TypeError):
    """An argument has the wrong type (``retries=3`` where a ``RetryPolicy`` is expected)."""


class IdentityError(MeshError, ValueError):
    """A string is not a valid Linkerd / SPIFFE identity or identity pattern."""


class CredentialsError(MeshError):
    """The mesh material (certificate, key, trust anchors) is unusable."""


class MaterialNotFoundError(CredentialsError):
    """A certificate, key or trust-anchor file or variable is missing."""


class MaterialFormatError(CredentialsError):
    """Bytes that should be PEM/DER certificates or keys are empty, garbage or truncated."""


class EmptyMaterialError(MaterialFormatError):
    """A certificate, key or trust-anchor file or value is empty (often an unset secret)."""


class EncryptedKeyError(CredentialsError):
    """The private key is encrypted and no (or a wrong) password was given."""


class WrongKeyPasswordError(EncryptedKeyError):
    """The private key is encrypted and the password given does not decrypt it."""


class KeyMismatchError(CredentialsError):
    """The private key does not belong to the leaf certificate."""


class ChainError(CredentialsError):
    """The certificate chain does not verify to the trust anchors."""


class MissingIntermediateError(ChainError):
    """The leaf's issuer is neither in the chain nor among the trust anchors."""


class CertificateValidityError(CredentialsError):
    """A certificate is expired or not yet valid.

    ``not_before`` / ``not_after`` hold the certificate's dates (aware UTC datetimes) when known.
    """

    def __init__(self, message: str, *, hint: str | None = None, not_before: Any = None,
                 not_after: Any = None) -> None:
        super().__init__(message, hint=hint)
        self.not_before = not_before
        self.not_after = not_after


class CertificateExpiredError(CertificateValidityError):
    """A certificate's ``notAfter`` is in the past."""


class CertificateNotYetValidError(CertificateValidityError):
    """A certificate's ``notBefore`` is in the future (often a wrong clock)."""


class UnsupportedKeyError(CredentialsError):
    """The leaf key type cannot speak Linkerd's TLS 1.3 (e.g. RSA)."""


class IdentitySANError(CredentialsError):
    """The leaf has no identity SAN, or more than one."""


class KeyUsageError(CredentialsError):
    """The leaf's key usage / extended key usage forbids TLS client authentication."""


class TransportError(MeshError):
    """A request could not be carried to the server."""


class ConnectError(TransportError):
    """The TCP connection could not be opened."""


class TLSHandshakeError(TransportError):
    """The TLS handshake failed (untrusted server chain, protocol mismatch, refused)."""


class ServerIdentityError(TLSHandshakeError):
    """The server presented a valid mesh certificate for a different identity."""


class MeshTimeoutError(TransportError, TimeoutError):
    """Connecting to or reading from the server took longer than the timeout."""


class HTTPStatusError(MeshError):
    """The server answered with an error status (raised by ``raise_for_status``)."""

    def __init__(self, message: str, *, status: int, url: str, hint: str | None = None) -> None:
        self.status = status
        self.url = url
        super().__init__(message, hint=hint)


class PolicyDeniedError(HTTPStatusError):
    """A Linkerd proxy refused the request by policy (403 with ``l5d-proxy-error``)."""


class NoEndpointAvailableError(TransportError):
    """Every endpoint of a service is failing (all circuit breakers open), or none resolves."""


class EgressDeniedError(MeshError):
    """The client's egress policy forbids sending to this server identity; nothing was sent."""


class DeadlineExceededError(MeshTimeoutError):
    """A request's deadline passed across its attempts (retries included)."""


class SecretScopeError(MaterialNotFoundError):
    """A Databricks secret scope or key could not be read (missing, no permission, no workspace)."""

    def __init__(self, message: str, *, scope: str, key: str, hint: str | None = None) -> None:
        self.scope = scope
        self.key = key
        super().__init__(message, hint=hint)


class ScoringError(MeshError):
    """Scoring a table against a model server failed: a bad input or answer, or a failed batch.

    ``rows`` is the failed batch's ``(start, stop)`` row positions (``None`` when it is not about
    one batch); ``status`` the server's HTTP status when it answered.
    """

    def __init__(self, message: str, *, hint: str | None = None, rows: tuple[int, int] | None = None,
                 status: int | None = None) -> None:
        self.rows = rows
        self.status = status
        super().__init__(message, hint=hint)


class ResultsError(MeshError):
    """Pushing or reading results failed: bad data, a refused batch or commit, or a digest mismatch.

    ``status`` is the receiver's HTTP status when it answered, ``code`` its error code (e.g.
    ``job_committed``); ``batch_id`` the batch concerned.
    """

    def __init__(self, message: str, *, hint: str | None = None, status: int | None = None,
                 batch_id: str | None = None, code: str | None = None) -> None:
        self.status = status
        self.batch_id = batch_id
        self.code = code
        super().__init__(message, hint=hint)


class DoctorFailedError(MeshError):
    """:func:`meshclient.doctor` found a problem (``report.raise_for_failure()``).

    ``checks`` holds the failed checks (status, name, text, hint): each one says what is wrong and
    how to fix it.
    """

    def __init__(self, message: str, *, hint: str | None = None, checks: tuple[Any, ...] = ()) -> None:
        self.checks = checks
        super().__init__(message, hint=hint)
