"""OAuth 2.0 client credentials (RFC 6749 §4.4) and token exchange (RFC 8693) against any issuer.

Client authentication: ``client_secret_basic``, ``client_secret_post`` (RFC 6749 §2.3.1) or
``private_key_jwt`` (an RFC 7523 assertion signed with :mod:`meshclient.jose`; ES256 for P-256
keys, RS256 for RSA), or ``none`` for token exchange by a public client.
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, cast, get_args
from urllib.parse import quote_plus

import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import ConfigurationError
from ._http import BasicAuth, Form, RetryPolicy, Timeout, Verify, new_session, post_token_request, token_from_response
from ._util import check_endpoint_url
from .base import BaseTokenProvider, Clock, Sleep, Token, TokenProvider
from .errors import TokenEndpointError
from .static import StaticToken

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
]

AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
PrivateKey = str | bytes | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"

DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)
#: Assumed lifetime when the issuer gives neither ``expires_in`` nor a JWT ``exp``.
DEFAULT_LIFETIME = 3600.0


def _scope_str(scope: str | Sequence[str] | None) -> str | None:
    if scope is None:
        return None
    if isinstance(scope, str):
        return scope.strip() or None
    return " ".join(s.strip() for s in scope if s.strip()) or None


def _key_pem(key: PrivateKey, password: str | bytes | None) -> bytes:
    """PKCS#8 PEM of the key, unencrypted, in memory (kept as bytes so the provider pickles)."""
    if isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    data = key.encode("ascii") if isinstance(key, str) else bytes(key)
    pw = password.encode("utf-8") if isinstance(password, str) else password
    loaded = _load_key(data, pw)
    return loaded.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _load_key(pem: bytes, password: bytes | None = None) -> ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=password)
    except (ValueError, TypeError) as exc:
        # Never include the bytes: they are the key.
        raise ConfigurationError(
            "private_key is not a readable PEM private key (or the password is wrong).",
            hint="Pass the PEM text of an EC P-256 or RSA (2048+ bits) private key, or a cryptography key object.",
        ) from exc
    if not isinstance(key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise ConfigurationError(
            f"private_key is a {type(key).__name__}; private_key_jwt needs an EC or RSA key.",
        )
    return key


def discover_token_endpoint(issuer: str, *, verify: Verify = True, timeout: Timeout = DEFAULT_TIMEOUT) -> str:
    """The ``token_endpoint`` from an issuer's discovery document (OIDC, then RFC 8414)."""
    from .errors import TokenUnavailableError

    base = check_endpoint_url(issuer, "issuer").rstrip("/")
    with new_session() as session:
        last = ""
        for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            url = base + path
            try:
                resp = session.get(url, timeout=timeout, verify=verify, allow_redirects=False)
            except requests.RequestException as exc:
                last = f"{url}: {type(exc).__name__}: {exc}"
                continue
            if resp.status_code != 200:
                last = f"{url}: HTTP {resp.status_code}"
                continue
            try:
                doc = resp.json()
            except ValueError:
                last = f"{url}: not JSON"
                continue
            endpoint = doc.get("token_endpoint") if isinstance(doc, dict) else None
            if isinstance(endpoint, str) and endpoint:
                return check_endpoint_url(endpoint, "token_endpoint")
            last = f"{url}: no token_endpoint"
    raise TokenUnavailableError(
        f"Could not discover the token endpoint of issuer {issuer}: {last}.",
        hint="Pass token_url= explicitly, or check the issuer URL.",
    )


class _OAuthProvider(BaseTokenProvider):
    """Shared token-endpoint plumbing: client authentication, retries, response parsing."""

    _transient = ("_session", "_key")

    def __init__(
        self,
        *,
        token_url: str,
        client_id: str | None,
        client_secret: str | None,
        private_key: PrivateKey | None,
        private_key_password: str | bytes | None,
        key_id: str | None,
        auth_method: AuthMethod | None,
        assertion_audience: str | None,
        assertion_lifetime: float,
        scope: str | Sequence[str] | None,
        audience: str | None,
        resource: str | Sequence[str] | None,
        extra_params: Mapping[str, str] | None,
        verify: Verify,
        timeout: Timeout,
        retry: RetryPolicy | None,
        default_lifetime: float,
        background_refresh: bool,
        refresh_margin: float,
        refresh_fraction: float,
        clock: Clock | None,
        sleep: Sleep | None,
        require_client: bool,
    ) -> None:
        super().__init__(
            background_refresh=background_refresh,
            refresh_margin=refresh_margin,
            refresh_fraction=refresh_fraction,
            clock=clock,
            sleep=sleep,
        )
        self.token_url = check_endpoint_url(token_url, "token_url")
        self.client_id = client_id or None
        if client_secret is not None and private_key is not None:
            raise ConfigurationError("Pass client_secret or private_key, not both.")
        if auth_method is None:
            if private_key is not None:
                auth_method = "private_key_jwt"
            elif client_secret is not None:
                auth_method = "client_secret_basic"
            else:
                auth_method = "none"
        if auth_method not in get_args(AuthMethod):
            raise ConfigurationError(
                f"auth_method {auth_method!r} is not supported.",
                hint=f"Use one of {', '.join(get_args(AuthMethod))}.",
            )
        self.auth_method: AuthMethod = auth_method
        if require_client and not self.client_id:
            raise ConfigurationError(f"{type(self).__name__} needs a client_id.")
        if auth_method in ("client_secret_basic", "client_secret_post"):
            if not client_secret:
                raise ConfigurationError(
                    f"auth_method {auth_method!r} needs client_secret (for client_id {self.client_id!r}).",
                    hint="Read it from a secret scope, e.g. dbutils.secrets.get(scope, key).",
                )
            if not self.client_id:
                raise ConfigurationError(f"auth_method {auth_method!r} needs a client_id.")
        if auth_method == "private_key_jwt":
            if private_key is None:
                raise ConfigurationError(
                    f"auth_method 'private_key_jwt' needs private_key (for client_id {self.client_id!r})."
                )
            if not self.client_id:
                raise ConfigurationError("auth_method 'private_key_jwt' needs a client_id.")
        if auth_method == "none" and require_client:
            raise ConfigurationError(
                f"{type(self).__name__} for client_id {self.client_id!r} needs client_secret or private_key.",
            )
        self._client_secret = client_secret
        self._key_pem = _key_pem(private_key, private_key_password) if private_key is not None else None
        self.key_id = key_id
        self.assertion_audience = assertion_audience
        self.assertion_lifetime = float(assertion_lifetime)
        self.scope = _scope_str(scope)
        self.audience = audience
        self.resource: tuple[str, ...] = (resource,) if isinstance(resource, str) else tuple(resource or ())
        self.extra_params = dict(extra_params or {})
        self.verify = verify
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.default_lifetime = float(default_lifetime)
        self._rebuild()

    # ---- plumbing -------------------------------------------------------------------------
    def _rebuild(self) -> None:
        self._session: requests.Session | None = None
        self._key = _load_key(self._key_pem) if self._key_pem is not None else None

    def _release(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            session.close()

    def _forked(self) -> None:
        self._session = None  # its pooled sockets belong to the parent; do not close them

    def _get_session(self) -> requests.Session:
        if self._session is None:
            self._session = new_session()
        return self._session

    def _secrets(self) -> Iterable[str | None]:
        return (self._client_secret,)

    def _describe(self) -> str:
        parts = [f"token_url={self.token_url!r}"]
        if self.client_id:
            parts.append(f"client_id={self.client_id!r}")
        if self.scope:
            parts.append(f"scope={self.scope!r}")
        if self.audience:
            parts.append(f"audience={self.audience!r}")
        parts.append(f"auth_method={self.auth_method!r}")
        return f"{type(self).__name__}({', '.join(parts)})"

    def _assertion(self) -> str:
        from .. import jose

        assert self._key is not None and self.client_id is not None
        now = int(self._now())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.assertion_audience or self.token_url,
            "jti": _secrets.token_urlsafe(18),
            "iat": now,
            "nbf": now,
            "exp": now + int(self.assertion_lifetime),
        }
        return jose.sign_jwt(claims, self._key, kid=self.key_id)

    def _client_auth(self, data: Form) -> BasicAuth:
        method = self.auth_method
        if method == "client_secret_basic":
            assert self.client_id is not None and self._client_secret is not None
            # RFC 6749 §2.3.1: both are form-urlencoded before Basic encoding (a no-op for
            # the usual [A-Za-z0-9._~-] secrets; servers decode them).
            return (quote_plus(self.client_id, safe=""), quote_plus(self._client_secret, safe=""))
        if method == "client_secret_post":
            assert self.client_id is not None and self._client_secret is not None
            data["client_id"] = self.client_id
            data["client_secret"] = self._client_secret
        elif method == "private_key_jwt":
            assert self.client_id is not None
            data["client_id"] = self.client_id
            data["client_assertion_type"] = CLIENT_ASSERTION_TYPE
            data["client_assertion"] = self._assertion()
        elif self.client_id:
            data["client_id"] = self.client_id
        return None

    def _common_params(self, data: Form) -> None:
        if self.scope:
            data["scope"] = self.scope
        if self.audience:
            data["audience"] = self.audience
        data.update(self.extra_params)

    def _request(self, grant: Form, extra_secrets: Iterable[str | None] = ()) -> Token:
        sent: list[str] = []

        def build() -> tuple[Form, BasicAuth]:
            data = dict(grant)
            auth = self._client_auth(data)
            assertion = data.get("client_assertion")
            if isinstance(assertion, str):
                sent.append(assertion)
            return data, auth

        def secrets() -> list[str | None]:
            return [self._client_secret, *sent, *extra_secrets]

        obtained = self._now()
        doc = post_token_request(
            session=self._get_session(),
            token_url=self.token_url,
            build=build,
            client_id=self.client_id,
            secrets=secrets,
            retry=self.retry,
            timeout=self.timeout,
            verify=self.verify,
            sleep=self._sleep,
            clock=self._now,
        )
        return token_from_response(
            doc,
            obtained=obtained,
            default_lifetime=self.default_lifetime,
            token_url=self.token_url,
            client_id=self.client_id,
        )

    def _resource_params(self, data: Form) -> None:
        # RFC 8707: one resource parameter per resource (requests repeats a key for a list).
        if self.resource:
            data["resource"] = self.resource[0] if len(self.resource) == 1 else list(self.resource)


class ClientCredentials(_OAuthProvider):
    """A token from the client credentials grant, refreshed ahead of expiry.

    ``auth_method`` defaults to ``private_key_jwt`` when ``private_key`` is given and to
    ``client_secret_basic`` otherwise. ``audience`` is sent as the ``audience`` parameter
    (Okta, Auth0); ``resource`` as RFC 8707 ``resource``. ``verify`` is the usual requests
    setting (a CA bundle path for a private issuer). ``repr`` shows client_id, token_url and
    scope, never the secret or key.

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
        verify: Verify = True,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        default_lifetime: float = DEFAULT_LIFETIME,
        background_refresh: bool = False,
        refresh_margin: float = 300.0,
        refresh_fraction: float = 0.2,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        super().__init__(
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            private_key=private_key,
            private_key_password=private_key_password,
            key_id=key_id,
            auth_method=auth_method,
            assertion_audience=assertion_audience,
            assertion_lifetime=assertion_lifetime,
            scope=scope,
            audience=audience,
            resource=resource,
            extra_params=extra_params,
            verify=verify,
            timeout=timeout,
            retry=retry,
            default_lifetime=default_lifetime,
            background_refresh=background_refresh,
            refresh_margin=refresh_margin,
            refresh_fraction=refresh_fraction,
            clock=clock,
            sleep=sleep,
            require_client=True,
        )

    @classmethod
    def from_issuer(cls, issuer: str, **kwargs: Any) -> ClientCredentials:
        """Like the constructor, with ``token_url`` found in the issuer's discovery document."""
        kwargs["token_url"] = discover_token_endpoint(
            issuer, verify=kwargs.get("verify", True), timeout=kwargs.get("timeout", DEFAULT_TIMEOUT)
        )
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
    is fetched for every exchange; when the issuer answers ``invalid_grant`` the subject token
    is invalidated and the exchange tried once more with a new one.

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
        verify: Verify = True,
        timeout: Timeout = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        default_lifetime: float = DEFAULT_LIFETIME,
        background_refresh: bool = False,
        refresh_margin: float = 300.0,
        refresh_fraction: float = 0.2,
        clock: Clock | None = None,
        sleep: Sleep | None = None,
    ) -> None:
        super().__init__(
            token_url=token_url,
            client_id=client_id,
            client_secret=client_secret,
            private_key=private_key,
            private_key_password=private_key_password,
            key_id=key_id,
            auth_method=auth_method,
            assertion_audience=assertion_audience,
            assertion_lifetime=assertion_lifetime,
            scope=scope,
            audience=audience,
            resource=resource,
            extra_params=extra_params,
            verify=verify,
            timeout=timeout,
            retry=retry,
            default_lifetime=default_lifetime,
            background_refresh=background_refresh,
            refresh_margin=refresh_margin,
            refresh_fraction=refresh_fraction,
            clock=clock,
            sleep=sleep,
            require_client=False,
        )
        self.subject = _as_provider(subject_token, "subject_token", clock)
        self.subject_token_type = subject_token_type
        self.actor = _as_provider(actor_token, "actor_token", clock) if actor_token is not None else None
        if self.actor is not None and not actor_token_type:
            raise ConfigurationError("actor_token needs actor_token_type (RFC 8693 §2.1).")
        self.actor_token_type = actor_token_type
        self.requested_token_type = requested_token_type

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
                # The subject token may have been revoked or rotated early: get a new one, once.
                self.subject.invalidate(subject)
        raise AssertionError("unreachable")  # pragma: no cover

    def close(self) -> None:
        super().close()
        for owned in (self.subject, self.actor):
            close = getattr(owned, "close", None)
            if callable(close):
                close()


def _as_provider(value: TokenProvider | str, what: str, clock: Clock | None) -> TokenProvider:
    if isinstance(value, str):
        return StaticToken(value, clock=clock)
    if isinstance(value, TokenProvider):
        return value
    raise ConfigurationError(
        f"{what} must be a token provider or a string, got {type(value).__name__}.",
    )
