"""``StaticToken``: one token given by the caller (a PAT, a token read from a secret scope)."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable

from .base import BaseTokenProvider, RefreshSettings, Token

__all__ = ["StaticToken"]


class StaticToken(BaseTokenProvider):
    """A fixed bearer token. It is picklable with its value, so it reaches Spark executors.

    If the value is a JWT its ``exp`` claim is honoured (a clear error instead of a 401 once it
    has passed) unless ``expires_at`` is given. ``on_unauthorized`` returns ``False``: the same
    token would be rejected again.
    """

    def __init__(
        self,
        value: str,
        *,
        expires_at: _dt.datetime | None = None,
        subject: str | None = None,
        audience: str | None = None,
        refresh: RefreshSettings | None = None,
    ) -> None:
        super().__init__(refresh=refresh)
        self._value = Token.from_value(value, expires_at=expires_at, subject=subject, audience=audience)

    def _fetch(self) -> Token:
        return self._value

    def _secrets(self) -> Iterable[str | None]:
        return (self._value.value,)

    def _describe(self) -> str:
        t = self._value
        parts = [f"fingerprint={t.fingerprint!r}"]
        if t.subject:
            parts.append(f"subject={t.subject!r}")
        return f"StaticToken({', '.join(parts)})"

    def _expired_hint(self) -> str | None:
        return "Pass a new token: a static token cannot be refreshed."
