"""``EnvironmentToken``: a bearer token from an environment variable, re-read when it changes."""

from __future__ import annotations

import os
from collections.abc import Iterable

from .base import BaseTokenProvider, RefreshSettings, Token
from .errors import TokenError

__all__ = ["EnvironmentToken", "DEFAULT_TOKEN_VARIABLE"]

DEFAULT_TOKEN_VARIABLE = "MESHCLIENT_TOKEN"


class EnvironmentToken(BaseTokenProvider):
    """The token in ``os.environ[var]``; a changed value is picked up on the next request.

    Pickling ships the variable *name*, not the value: on a Spark executor the value comes
    from the executor's own environment (``spark.executorEnv.<VAR>`` or a cluster variable
    backed by a secret reference). A JWT's ``exp`` claim is honoured.
    """

    def __init__(self, var: str = DEFAULT_TOKEN_VARIABLE, *, refresh: RefreshSettings | None = None) -> None:
        super().__init__(refresh=refresh)
        if not var:
            raise ValueError("var must name an environment variable")
        self.var = var

    def _read(self) -> str | None:
        value = os.environ.get(self.var)
        return value.strip() if value is not None else None

    def _fetch(self) -> Token:
        value = self._read()
        if not value:
            raise TokenError(
                f"Environment variable {self.var} is {'empty' if value == '' else 'not set'}: no bearer token.",
                hint=f"Set {self.var} to the token (on Databricks: a cluster environment variable "
                "referencing a secret, {{secrets/<scope>/<key>}}).",
            )
        return Token.from_value(value)

    def _outdated(self, token: Token) -> bool:
        return self._read() != token.value

    def _secrets(self) -> Iterable[str | None]:
        return (self._read(),)

    def _describe(self) -> str:
        return f"EnvironmentToken(var={self.var!r})"

    def _expired_hint(self) -> str | None:
        return f"Put a new token in {self.var}."
