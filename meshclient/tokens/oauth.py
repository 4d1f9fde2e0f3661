"""OAuth 2.0 client credentials (RFC 6749 §4.4) and token exchange (RFC 8693) against any issuer.

The grants live here; how the client authenticates is :mod:`.client_auth`, and the HTTP call
with its OAuth error mapping is :mod:`.endpoint` over :mod:`meshclient.outbound`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, cast

import requests

from ..errors import ConfigurationError
from ..outbound import OutboundClient, OutboundSettings, check_endpoint_url, describe_error
from ..redaction import redact_url
from .base import BaseTokenProvider
from .client_auth import CLIENT_ASSERTION_TYPE, AuthMethod, ClientAuth, PrivateKey
from .endpoint import BasicAuth, Form, request_token, token_from_response
from .errors import TokenEndpointError, TokenUnavailableError
from .settings import RefreshSettings
from .static import StaticToken
from .token import Token, TokenProvider

__all__ = [
    "AuthMethod",
    "ClientCredentials",
    "TokenExchange",
    "discover_token_endpoint",
    "CLIENT_ASSERTION_TYPE",
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_TOKEN_EXCHANGE",
    "TOKEN_TYPE_ACCESS_TOKEN",
    "TOKEN_TYPE_ID_TOKEN",
    "TOKEN_TYPE_JWT",
    "DEFAULT_LIFETIME",
]

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"

#: Assumed lifetime when the issuer gives neither ``expires_in`` nor a JWT ``exp``.
DEFAULT_LIFETIME = 3600.0


def _scope_str(scope: str | Sequence[str] | None) -> str | None:
    if scope is None:
        return None
    if isinstance(scope, str):
        return scope.strip() or None
    return " ".join(s.strip() for s in scope if s.strip()) or None


def discover_token_endpoint(issuer: str, *, outbound: OutboundSettings | None = None) -> str:
    """The ``token_endpoint`` from an issuer's discovery document (OIDC, then RFC 8414).

    One try per document (no retries: this runs once, while a person or a job is setting up,
    and should fail fast); ``outbound`` gives the timeout and trust.
    """
    base = check_endpoint_url(issuer, "issuer").rstrip("/")
    http = OutboundClient(outbound)
    try:
        last = ""
        for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            url = base + path
            try:
                resp = http.send_once("GET", url)
            except (requests.RequestException, OSError) as exc:
                last = f"{redact_url(url)}: {describe_error(exc)}"
                continue
            if resp.status_code != 200:
                last = f"{redact_url(url)}: HTTP {resp.status_code}"
                continue
            try:
                doc = resp.json()
            except ValueError:
                last = f"{redact_url(url)}: not JSON"
                continue
            endpoint = doc.get("token_endpoint") if isinstance(doc, dict) else None
            if isinstance(endpoint, str) and endpoint:
                return check_endpoint_url(endpoint, "token_endpoint")
            last = f"{redact_url(url)}: no token_endpoint"
    finally:
        http.close()
    raise TokenUnavailableError(
        f"Could not discover the token endpoint of issuer {redact_url(issuer)}: {last}.",
        hint="Pass token_url= explicitly, or check the issuer URL.",
    )


class _OAuthProvider(BaseTokenProvider):
    """Shared token-endpoint plumbing: client authentication, request parameters, the call."""

    def __init__(
        self,
        *,
        token_url: str,
        client: ClientAuth,
        scope: str | Sequence[str] | None,
        audience: str | None,
        resource: str | Sequence[str] | None,
        extra_params: Mapping[str, str] | None,
        default_lifetime: float,
        outbound: OutboundSettings | None,
        refresh: RefreshSettings | None,
    ) -> None:
        super().__init__(refresh=refresh)
        self.token_url = check_endpoint_url(token_url, "token_url")
        self._client_auth = client
        self.scope = _scope_str(scope)
        self.audience = audience
        self.resource: tuple[str, ...] = (resource,) if isinstance(resource, str) else tuple(resource or ())
        self.extra_params = dict(extra_params or {})
        self.default_lifetime = float(default_lifetime)
        self._http = OutboundClient(outbound)

    @property
    def client_id(self) -> str | None:
        return self._client_auth.client_id

    @property
    def auth_method(self) -> AuthMethod:
        return self._client_auth.method

    @property
    def outbound(self) -> OutboundSettings:
        """The HTTP settings (timeout, verify, retries) of this provider's token requests."""
        return self._http.settings

    # ---- plumbing -------------------------------------------------------------------------
    def _release(self) -> None:
        self._http.close()

    def _forked(self) -> None:
        self._http.after_fork()  # its pooled sockets belong to the parent; do not close them

    def _secrets(self) -> Iterable[str | None]:
        return (self._client_auth.secret,)

    def _describe(self) -> str:
        parts = [f"token_url={redact_url(self.token_url)!r}"]
        if self.client_id:
            parts.append(f"client_id={self.client_id!r}")
        if self.scope:
            parts.append(f"scope={self.scope!r}")
        if self.audience:
            parts.append(f"audience={self.audience!r}")
        parts.append(f"auth_method={self.auth_method!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _assertion(self) -> str:
        """A fresh client assertion (private_key_jwt), as the next request would send."""
        return self._client_auth.assertion(self.token_url, self._now())

    def _common_params(self, data: Form) -> None:
        if self.scope:
            data["scope"] = self.scope
        if self.audience:
            data["audience"] = self.audience
        data.update(self.extra_params)

    def _resource_params(self, data: Form) -> None:
        # RFC 8707: one resource parameter per resource (requests repeats a key for a list).
        if self.resource:
            data["resource"] = self.resource[0] if len(self.resource) == 1 else list(self.resource)

    def _request(self, grant: Form, extra_secrets: Iterable[str | None] = ()) -> Token:
        sent: list[str] = []

        def build() -> tuple[Form, BasicAuth]:
            data = dict(grant)
            auth = self._client_auth.apply(data, self.token_url, self._now)
            assertion = data.get("client_assertion")
            if isinstance(assertion, str):
                sent.append(assertion)
            return data, auth

        def secrets() -> list[str | None]:
            return [self._client_auth.secret, *sent, *extra_secrets]

        obtained = self._now()
        doc = request_token(self._http, token_url=self.token_url, client_id=self.client_id, build=build,
                            secrets=secrets, sleep=self._sleep, clock=self._now)
        return token_from_response(doc, obtained=obtained, default_lifetime=self.default_lifetime,
                                   token_url=self.token_url, client_id=self.client_id)


class ClientCredentials(_OAuthProvider):
    """A token from the client credentials grant, refreshed ahead of expiry.

    ``auth_method`` defaults to ``private_key_jwt`` when ``private_key`` is given and to
    ``client_secret_basic`` otherwise. ``audience`` is sent as the ``audience`` parameter
    (Okta, Auth0); ``resource`` as RFC 8707 ``resource``. ``outbound`` holds the HTTP settings
    (``OutboundSettings(verify='/path/ca.pem')`` for a private issuer, timeout, retries);
    ``refresh`` the lifecycle ones (:class:`~meshclient.tokens.RefreshSettings`). ``repr``
    shows client_id, token_url and scope, never the secret or key.

    ``client_secret_basic`` form-urlencodes client_id and secret before Basic encoding, as
    RFC 6749 §2.3.1 says; a server that does not decode them (basic-oauth2-server 0.1.6) needs
    ``client_secret_post`` when the secret holds ``+``, ``/``, ``=`` or ``%``.
    """

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str,
        client_secret: str | None = None,
        private_key: PrivateKey | None = None,
        private_key_password: str | bytes | None = None,
        key_id: str | None = None,
        scope: str | Sequence[str] | None = None,
        audience: str | None = None,
        resource: str | Sequence[str] | None = None,
        auth_method: AuthMethod | None = None,
        assertion_audience: str | None = None,
        assertion_lifetime: float = 60.0,
        extra_params: Mapping[str, str] | None = None,
        default_lifetime: float = DEFAULT_LIFETIME,
        outbound: OutboundSettings | None = None,
        refresh: RefreshSettings | None = None,
    ) -> None:
        client = ClientAuth(owner=type(self).__name__, client_id=client_id, client_secret=client_secret,
                            private_key=private_key, private_key_password=private_key_password, key_id=key_id,
                            auth_method=auth_method, assertion_audience=assertion_audience,
                            assertion_lifetime=assertion_lifetime, require_client=True)
        super().__init__(token_url=token_url, client=client, scope=scope, audience=audience, resource=resource,
                         extra_params=extra_params, default_lifetime=default_lifetime, outbound=outbound,
                         refresh=refresh)

    @classmethod
    def from_issuer(cls, issuer: str, **kwargs: Any) -> ClientCredentials:
        """Like the constructor, with ``token_url`` found in the issuer's discovery document."""
        kwargs["token_url"] = discover_token_endpoint(issuer, outbound=kwargs.get("outbound"))
        return cls(**kwargs)

    def _fetch(self) -> Token:
        data: Form = {"grant_type": GRANT_CLIENT_CREDENTIALS}
        self._common_params(data)
        self._resource_params(data)
        return self._request(data)


class TokenExchange(_OAuthProvider):
    """A token obtained by exchanging another one (RFC 8693), refreshed ahead of expiry.

    ``subject_token`` is a provider (any :class:`TokenProvider`: a Kubernetes service-account
    token file, an AWS web identity token, a Databricks token...) or a fixed string. Its token
    is fetched for every exchange; when the issuer answers ``invalid_grant`` the subject
    provider is told its token was refused (``on_unauthorized``, as after a 401) and, if it has
    a new one, the exchange is tried once more with it.

    Client authentication is optional (``auth_method='none'`` sends only ``client_id``, if
    given). :meth:`close` also closes the subject provider.
    """

    def __init__(
        self,
        *,
        token_url: str,
        subject_token: TokenProvider | str,
        subject_token_type: str = TOKEN_TYPE_JWT,
        audience: str | None = None,
        resource: str | Sequence[str] | None = None,
        scope: str | Sequence[str] | None = None,
        requested_token_type: str | None = None,
        actor_token: TokenProvider | str | None = None,
        actor_token_type: str | None = None,
        client_id: str | None = None,
        client_secret: str | None = None,
        private_key: PrivateKey | None = None,
        private_key_password: str | bytes | None = None,
        key_id: str | None = None,
        auth_method: AuthMethod | None = None,
        assertion_audience: str | None = None,
        assertion_lifetime: float = 60.0,
        extra_params: Mapping[str, str] | None = None,
        default_lifetime: float = DEFAULT_LIFETIME,
        outbound: OutboundSettings | None = None,
        refresh: RefreshSettings | None = None,
    ) -> None:
        client = ClientAuth(owner=type(self).__name__, client_id=client_id, client_secret=client_secret,
                            private_key=private_key, private_key_password=private_key_password, key_id=key_id,
                            auth_method=auth_method, assertion_audience=assertion_audience,
                            assertion_lifetime=assertion_lifetime, require_client=False)
        super().__init__(token_url=token_url, client=client, scope=scope, audience=audience, resource=resource,
                         extra_params=extra_params, default_lifetime=default_lifetime, outbound=outbound,
                         refresh=refresh)
        self.subject = self._as_provider(subject_token, "subject_token")
        self.subject_token_type = subject_token_type
        self.actor = self._as_provider(actor_token, "actor_token") if actor_token is not None else None
        if self.actor is not None and not actor_token_type:
            raise ConfigurationError("actor_token needs actor_token_type (RFC 8693 §2.1).")
        self.actor_token_type = actor_token_type
        self.requested_token_type = requested_token_type

    def _as_provider(self, value: TokenProvider | str, what: str) -> TokenProvider:
        if isinstance(value, str):
            return StaticToken(value, refresh=RefreshSettings(clock=self.refresh_settings.clock))
        if isinstance(value, TokenProvider):
            return value
        raise ConfigurationError(
            f"{what} must be a token provider or a string, got {type(value).__name__}.",
        )

    def _describe(self) -> str:
        base = super()._describe()
        return f"{base[:-1]}, subject={self.subject!r})"

    def _fetch(self) -> Token:
        for attempt in (0, 1):
            subject = self.subject.token()
            data: Form = {
                "grant_type": GRANT_TOKEN_EXCHANGE,
                "subject_token": subject.value,
                "subject_token_type": self.subject_token_type,
            }
            extra: list[str | None] = [subject.value]
            if self.actor is not None:
                actor = self.actor.token()
                data["actor_token"] = actor.value
                data["actor_token_type"] = cast(str, self.actor_token_type)
                extra.append(actor.value)
            if self.requested_token_type:
                data["requested_token_type"] = self.requested_token_type
            self._common_params(data)
            self._resource_params(data)
            try:
                return self._request(data, extra)
            except TokenEndpointError as exc:
                if exc.error != "invalid_grant" or attempt:
                    raise
                # The subject token may have been revoked or rotated early: try a new one, once.
                if not self.subject.on_unauthorized(subject.authorization):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        super().close()
        for owned in (self.subject, self.actor):
            close = getattr(owned, "close", None)
            if callable(close):
                close()

