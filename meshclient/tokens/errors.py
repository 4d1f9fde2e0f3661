"""Token errors: all under :class:`meshclient.MeshError`, none carrying token or secret text."""

from __future__ import annotations

from ..errors import MeshError
from ..redaction import redact_url

__all__ = ["TokenError", "TokenEndpointError", "TokenUnavailableError", "TokenExpiredError"]


class TokenError(MeshError):
    """A bearer token could not be obtained, or the one held is unusable."""


class TokenEndpointError(TokenError):
    """The issuer answered the token request with an error it will repeat (``invalid_client``...).

    ``error`` is the OAuth error code (RFC 6749 §5.2) or ``None`` when the answer was not an
    OAuth error document; ``status`` the HTTP status. Retrying will not help: fix the settings.
    """

    def __init__(
        self,
        message: str,
        *,
        token_url: str,
        client_id: str | None = None,
        error: str | None = None,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        self.token_url = redact_url(token_url)  # query values may be secrets
        self.client_id = client_id
        self.error = error
        self.status = status
        super().__init__(message, hint=hint)


class TokenUnavailableError(TokenError):
    """The token source could not be reached or kept failing (network, 5xx, 429 after retries)."""


class TokenExpiredError(TokenUnavailableError):
    """The cached token expired while its source stayed unavailable (or handed out an expired one)."""
