"""A bearer token as a value, and the two calls ``MeshClient`` makes of whoever provides one.

Kept apart from the lifecycle machinery (:mod:`meshclient.tokens.base`) so that what a token
*is* and what a provider *promises* can be read without the locks and threads behind them.
"""

from __future__ import annotations

import datetime as _dt
import enum
import hashlib
import time
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .claims import claim_exp, claim_str, fmt_ts, peek_jwt, ts_from_dt, utc_from_ts
from .errors import TokenError

__all__ = ["Token", "TokenState", "TokenProvider"]


class TokenState(enum.Enum):
    """Where a cached token is in its life."""

    FRESH = "fresh"  #: valid and not due for refresh
    STALE = "stale"  #: still valid, a refresh is due (callers keep using it meanwhile)
    EXPIRED = "expired"  #: missing or past expiry: callers must wait for a new one


def _valid_token_text(value: object) -> bool:
    return (
        isinstance(value, str)
        and bool(value)
        and value.isascii()
        and not any(c.isspace() or ord(c) < 0x21 or ord(c) == 0x7F for c in value)
    )


@dataclass(frozen=True, repr=False)
class Token:
    """A bearer token and what is known about it; ``repr`` never shows the value.

    ``expires_at`` is an aware UTC datetime or ``None`` for "does not expire" (a naive one
    is read as UTC). ``subject``/``audience``/``scope`` are informational (from the token
    response or the unverified JWT claims) and safe to log.
    """

    value: str
    expires_at: _dt.datetime | None = None
    subject: str | None = None
    audience: str | None = None
    scope: str | None = None
    token_type: str = "Bearer"

    def __post_init__(self) -> None:
        if not _valid_token_text(self.value):
            # Never echo the value: it may be a real token with a stray newline.
            raise TokenError(
                "Token value must be a non-empty ASCII string without whitespace or control characters.",
                hint="Strip the trailing newline of a token read from a file or variable.",
            )
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            object.__setattr__(self, "expires_at", self.expires_at.replace(tzinfo=_dt.timezone.utc))

    @classmethod
    def from_value(
        cls,
        value: str,
        *,
        expires_at: _dt.datetime | None = None,
        subject: str | None = None,
        audience: str | None = None,
        scope: str | None = None,
    ) -> Token:
        """A token whose missing details are filled from its (unverified) JWT claims, if any."""
        if not _valid_token_text(value):
            return cls(value)  # raises the standard message
        claims = peek_jwt(value)
        exp = claim_exp(claims)
        return cls(
            value,
            expires_at=expires_at if expires_at is not None else (utc_from_ts(exp) if exp is not None else None),
            subject=subject if subject is not None else claim_str(claims, "sub"),
            audience=audience if audience is not None else claim_str(claims, "aud"),
            scope=scope if scope is not None else (claim_str(claims, "scope") or claim_str(claims, "scp")),
        )

    @property
    def authorization(self) -> str:
        """The ``Authorization`` header value (always the ``Bearer`` scheme, RFC 6750)."""
        return f"Bearer {self.value}"

    @property
    def fingerprint(self) -> str:
        """First 12 hex digits of SHA-256 of the value: tells tokens apart in logs, reveals nothing."""
        return hashlib.sha256(self.value.encode("ascii")).hexdigest()[:12]

    @property
    def expires_ts(self) -> float | None:
        return None if self.expires_at is None else ts_from_dt(self.expires_at)

    def expires_in(self, now: float | None = None) -> float | None:
        """Seconds left (negative once expired), ``None`` if it does not expire."""
        exp = self.expires_ts
        return None if exp is None else exp - (time.time() if now is None else now)

    def __repr__(self) -> str:
        parts = [f"fingerprint={self.fingerprint!r}"]
        if self.subject is not None:
            parts.append(f"subject={self.subject!r}")
        if self.audience is not None:
            parts.append(f"audience={self.audience!r}")
        if self.scope is not None:
            parts.append(f"scope={self.scope!r}")
        parts.append(f"expires_at={fmt_ts(self.expires_ts)!r}")
        return f"Token({', '.join(parts)})"

    __str__ = __repr__


@runtime_checkable
class TokenProvider(Protocol):
    """Exactly what ``MeshClient`` calls on a token source.

    :meth:`token` before each request to a mesh destination (the client sends
    ``token().authorization`` and records ``token().subject``); after a 401 answer,
    :meth:`on_unauthorized` with the ``Authorization`` header it sent, and when that returns
    ``True`` the client retries once with a new :meth:`token`. Every provider in
    :mod:`meshclient.tokens` implements it through :class:`~meshclient.tokens.BaseTokenProvider`,
    which adds ``invalidate``, ``state`` and ``close``.
    """

    def token(self) -> Token: ...

    def on_unauthorized(self, authorization: str | None) -> bool: ...
