"""Bearer-token providers for mesh requests, behind one small protocol and one lifecycle.

``MeshClient`` makes two calls of a provider (:class:`TokenProvider`): ``token()`` before a
request to a mesh destination (a :class:`Token`: value + expiry; its ``repr`` never shows the
value) and ``on_unauthorized(header)`` after a 401. Every provider here shares one lifecycle
(:class:`BaseTokenProvider`): refresh ahead of expiry, exactly one refresh in flight, keep a
valid token through an issuer outage, pickle for Spark executors without locks, sessions,
threads or cached tokens. Constructors take what identifies the source, plus ``refresh=``
(:class:`RefreshSettings`) and, for providers that call an issuer, ``outbound=``
(:class:`OutboundSettings`, with ``retries=`` an :class:`OutboundRetryPolicy`).

Providers that need optional packages import them lazily: :class:`DatabricksOAuth`
(``meshclient[databricks]``) and :class:`AwsWebIdentityToken` (``meshclient[aws]``).
"""

from __future__ import annotations

from ..outbound import OutboundRetryPolicy, OutboundSettings
from .aws import AwsWebIdentityToken
from .base import BaseTokenProvider
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
from .settings import DEFAULT_REFRESH_FRACTION, DEFAULT_REFRESH_MARGIN, RefreshSettings
from .static import StaticToken
from .token import Token, TokenProvider, TokenState

__all__ = [
    "Token",
    "TokenState",
    "TokenProvider",
    "BaseTokenProvider",
    "RefreshSettings",
    "OutboundSettings",
    "OutboundRetryPolicy",
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
