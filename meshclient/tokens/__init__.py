"""Bearer-token providers for mesh requests, behind one small protocol and one lifecycle.

Every provider gives a :class:`Token` (value + expiry; its ``repr`` never shows the value)
through ``token()``, and the two calls ``MeshClient`` uses: ``authorization_header()`` before
a request to a mesh destination and ``on_unauthorized(header)`` after a 401. They share one
lifecycle (:class:`BaseTokenProvider`): refresh ahead of expiry, exactly one refresh in flight,
keep a valid token through an issuer outage, pickle for Spark executors without locks,
sessions, threads or cached tokens.

Providers that need optional packages import them lazily: :class:`DatabricksOAuth`
(``meshclient[databricks]``) and :class:`AwsWebIdentityToken` (``meshclient[aws]``).
"""

from __future__ import annotations

from ._http import RetryPolicy
from .aws import AwsWebIdentityToken
from .base import (
    DEFAULT_REFRESH_FRACTION,
    DEFAULT_REFRESH_MARGIN,
    BaseTokenProvider,
    Token,
    TokenProvider,
    TokenState,
)
from .databricks import DatabricksOAuth
from .env import DEFAULT_TOKEN_VARIABLE, EnvironmentToken
from .errors import TokenEndpointError, TokenError, TokenExpiredError, TokenUnavailableError
from .file import FileToken
from .oauth import (
    CLIENT_ASSERTION_TYPE,
    GRANT_CLIENT_CREDENTIALS,
    GRANT_TOKEN_EXCHANGE,
    TOKEN_TYPE_ACCESS_TOKEN,
    TOKEN_TYPE_ID_TOKEN,
    TOKEN_TYPE_JWT,
    AuthMethod,
    ClientCredentials,
    TokenExchange,
    discover_token_endpoint,
)
from .static import StaticToken

__all__ = [
    "Token",
    "TokenState",
    "TokenProvider",
    "BaseTokenProvider",
    "RetryPolicy",
    "StaticToken",
    "EnvironmentToken",
    "FileToken",
    "ClientCredentials",
    "TokenExchange",
    "DatabricksOAuth",
    "AwsWebIdentityToken",
    "AuthMethod",
    "discover_token_endpoint",
    "TokenError",
    "TokenEndpointError",
    "TokenUnavailableError",
    "TokenExpiredError",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_REFRESH_FRACTION",
    "DEFAULT_TOKEN_VARIABLE",
    "CLIENT_ASSERTION_TYPE",
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_TOKEN_EXCHANGE",
    "TOKEN_TYPE_ACCESS_TOKEN",
    "TOKEN_TYPE_ID_TOKEN",
    "TOKEN_TYPE_JWT",
]
