"""A local OIDC / OAuth 2.0 issuer and a bearer-token validator, for the sandbox and tests.

Why a real server instead of mocks: the token providers must be tested against the wire
protocol they will meet in production — discovery, JWKS with key rotation, the client
credentials grant with the three client authentication methods (RFC 6749 §2.3,
RFC 7523 ``private_key_jwt``) and RFC 8693 token exchange — including the error shapes of
RFC 6749 §5.2. Test hooks (request counters, an outage switch, throttling with
``Retry-After``) let token-lifecycle tests provoke the failures a real IdP has.

Never use this issuer for anything real: keys live in memory, clients are registered by
code, and everything listens on loopback only.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from .httpserver import ApiRequest, HTTPError, Response, SandboxHTTPServer
from .jose import (
    JWTError,
    KeySet,
    public_jwk,
    sign_jwt,
    to_jwks,
    unverified_claims,
    unverified_header,
    verify_jwt,
)
from .oidc_clients import (
    CLIENT_ASSERTION_TYPE_JWT_BEARER,
    ClientAuthentication,
    OAuthError,
    RegisteredClient,
    hash_secret,
)
from .token_validator import IssuerUnavailableError, TokenValidator

__all__ = [
    "OIDCIssuer",
    "RegisteredClient",
    "TokenValidator",
    "IssuerUnavailableError",
    "GRANT_CLIENT_CREDENTIALS",
    "GRANT_TOKEN_EXCHANGE",
    "CLIENT_ASSERTION_TYPE_JWT_BEARER",
    "TOKEN_TYPE_ACCESS_TOKEN",
    "TOKEN_TYPE_JWT",
    "TOKEN_TYPE_ID_TOKEN",
]

logger = logging.getLogger("meshclient_sandbox.oidc")

GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
TOKEN_TYPE_ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
TOKEN_TYPE_JWT = "urn:ietf:params:oauth:token-type:jwt"
TOKEN_TYPE_ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"

_SUBJECT_TOKEN_TYPES = (TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, TOKEN_TYPE_ID_TOKEN)
_ISSUABLE_TOKEN_TYPES = (TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT)
_AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt")
_REPEATABLE = ("audience", "resource")  # RFC 8693 §2.1 allows these more than once
_OAUTH_ERRORS = frozenset({
    "invalid_request", "invalid_client", "invalid_grant", "unauthorized_client", "unsupported_grant_type",
    "invalid_scope", "invalid_target", "temporarily_unavailable", "server_error",
})


class _Trusted:
    """A foreign issuer whose tokens are accepted as RFC 8693 subject tokens."""

    def __init__(
        self,
        issuer: str,
        keys: KeySet | None,
        audience: str | Collection[str] | None,
        validator: TokenValidator | None,
    ) -> None:
        self.issuer, self.keys, self.audience, self.validator = issuer, keys, audience, validator


class OIDCIssuer(ClientAuthentication, SandboxHTTPServer):
    """An OAuth 2.0 / OIDC issuer on loopback: discovery, JWKS, and ``/token``.

    Grants: ``client_credentials`` and RFC 8693 token exchange. Client authentication:
    ``client_secret_basic``, ``client_secret_post`` and ``private_key_jwt``. Access
    tokens are ES256 JWTs (``typ`` ``at+jwt``) with ``iss, sub, aud, exp, iat, nbf, jti,
    scope, client_id``. The issuer identifier is :attr:`url` (known once started).

    Test hooks: :attr:`token_requests`, :attr:`tokens_issued`, :attr:`jwks_requests`,
    :meth:`set_outage`, :meth:`set_throttle`, :meth:`rotate_key`, :meth:`issue_token`.
    ``clock`` (epoch seconds) drives every time decision so expiry can be tested
    without sleeping.
    """

    name = "oidc-issuer"

    def __init__(
        self,
        *,
        audience: str = "meshclient-sandbox",
        token_lifetime: float = 300.0,
        leeway: float = 30.0,
        max_assertion_lifetime: float = 3600.0,
        clock: Callable[[], float] = time.time,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.default_audience = audience
        self.token_lifetime = float(token_lifetime)
        self.leeway = float(leeway)
        self.max_assertion_lifetime = float(max_assertion_lifetime)
        self.clock = clock
        self._lock = threading.RLock()
        self._keys: list[tuple[str, ec.EllipticCurvePrivateKey]] = []
        self._clients: dict[str, RegisteredClient] = {}
        self._trusted: dict[str, _Trusted] = {}
        self._used_jtis: dict[tuple[str, str], float] = {}
        self.token_requests = 0
        self.tokens_issued = 0
        self.jwks_requests = 0
        self._outage: tuple[int, int | None, int | None] | None = None  # status, retry_after, times left
        self._throttle: tuple[int, int | None] | None = None  # retry_after, times left
        self._new_key()
        self.add_route("GET", "/.well-known/openid-configuration", self._discovery)
        self.add_route("GET", "/.well-known/oauth-authorization-server", self._discovery)
        self.add_route("GET", "/jwks", self._jwks)
        self.add_route("POST", "/token", self._token)

    # -- identifiers -------------------------------------------------------------------

    @property
    def issuer(self) -> str:
        """The issuer identifier (``iss``): the base URL."""
        return self.url

    @property
    def token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def jwks_url(self) -> str:
        return f"{self.url}/jwks"

    def discovery_document(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "token_endpoint": self.token_url,
            "jwks_uri": self.jwks_url,
            "grant_types_supported": [GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE],
            "token_endpoint_auth_methods_supported": list(_AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": ["ES256", "ES384", "ES512", "RS256", "RS384", "RS512"],
            "response_types_supported": ["token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
            "scopes_supported": self._all_scopes(),
        }

    def _all_scopes(self) -> list[str]:
        with self._lock:
            return sorted({s for c in self._clients.values() for s in c.scopes})

    # -- keys --------------------------------------------------------------------------

    def _new_key(self) -> str:
        key = ec.generate_private_key(ec.SECP256R1())
        kid = public_jwk(key)["kid"]
        self._keys.insert(0, (kid, key))
        return kid

    @property
    def signing_kid(self) -> str:
        with self._lock:
            return self._keys[0][0]

    def rotate_key(self, *, keep_previous: int = 1) -> str:
        """Sign with a fresh key from now on; keep the last ``keep_previous`` old keys in
        the JWKS so tokens already issued stay verifiable (the rotation overlap).
        Returns the new ``kid``."""
        with self._lock:
            kid = self._new_key()
            del self._keys[1 + max(0, keep_previous) :]
        logger.debug("%s: rotated signing key, now %s", self.name, kid)
        return kid

    def retire_old_keys(self) -> None:
        """End the overlap: only the current key stays in the JWKS."""
        with self._lock:
            del self._keys[1:]

    def jwks(self) -> dict[str, Any]:
        """The published JWK Set (current key first)."""
        with self._lock:
            return {"keys": [public_jwk(k, kid=kid, alg="ES256") for kid, k in self._keys]}

    # -- registration ------------------------------------------------------------------

    def register_client(
        self,
        client_id: str,
        *,
        secret: str | None = None,
        public_jwk: KeySet | None = None,
        audience: str | Sequence[str] | None = None,
        scopes: Iterable[str] = (),
        token_lifetime: float | None = None,
    ) -> RegisteredClient:
        """Register (or replace) a confidential client.

        ``secret`` enables ``client_secret_basic``/``client_secret_post``; ``public_jwk``
        (a JWK, JWKS or public key) enables ``private_key_jwt``. ``audience`` is what the
        client's tokens are for (the first is the default ``aud``; the others may be asked
        for in a token exchange); it defaults to the issuer's ``audience``. ``scopes``
        lists what the client may ask for and gets by default.
        """
        if secret is None and public_jwk is None:
            raise ValueError(f"client {client_id!r} needs a secret or a public_jwk to authenticate")
        auds = (audience,) if isinstance(audience, str) else tuple(audience or (self.default_audience,))
        client = RegisteredClient(
            client_id=client_id,
            audiences=auds,
            scopes=tuple(scopes),
            public_keys=to_jwks(public_jwk) if public_jwk is not None else None,
            token_lifetime=token_lifetime,
            _secret_hash=hash_secret(secret) if secret is not None else None,
        )
        with self._lock:
            self._clients[client_id] = client
        return client

    def unregister_client(self, client_id: str) -> None:
        with self._lock:
            self._clients.pop(client_id, None)

    def trust_issuer(
        self,
        issuer: str | OIDCIssuer,
        *,
        jwks: KeySet | None = None,
        audience: str | Collection[str] | None = None,
    ) -> None:
        """Accept JWTs from another issuer as subject tokens in token exchange.

        Pass an :class:`OIDCIssuer` (its JWKS is fetched over HTTP), an issuer URL (the
        same, by discovery), or an issuer string with explicit ``jwks`` (e.g. a Kubernetes
        service-account issuer). ``audience`` restricts which subject tokens qualify.
        """
        if isinstance(issuer, OIDCIssuer) or jwks is None:
            validator = TokenValidator(issuer, audience, leeway=self.leeway, clock=self.clock)
            trusted = _Trusted(validator.issuer, None, audience, validator)
        else:
            trusted = _Trusted(issuer, jwks, audience, None)
        with self._lock:
            self._trusted[trusted.issuer] = trusted

    # -- test hooks --------------------------------------------------------------------

    def set_outage(
        self, enabled: bool = True, *, status: int = 503, retry_after: int | None = None, times: int | None = None
    ) -> None:
        """Answer every request with ``status`` (503 ``temporarily_unavailable`` by
        default) — for the next ``times`` requests, or until switched off."""
        with self._lock:
            self._outage = (status, retry_after, times) if enabled else None

    def set_throttle(self, retry_after: int | None = 1, *, times: int | None = None) -> None:
        """Answer token requests with 429 and ``Retry-After: retry_after`` — for the next
        ``times`` token requests, or until ``set_throttle(None)``."""
        with self._lock:
            self._throttle = (retry_after, times) if retry_after is not None else None

    def clear_faults(self) -> None:
        with self._lock:
            self._outage = self._throttle = None

    def reset_counters(self) -> None:
        with self._lock:
            self.token_requests = self.tokens_issued = self.jwks_requests = 0

    def _take_outage(self) -> Response | None:
        with self._lock:
            if self._outage is None:
                return None
            status, retry_after, times = self._outage
            if times is not None:
                self._outage = (status, retry_after, times - 1) if times > 1 else None
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return oauth_response("temporarily_unavailable", "the issuer is unavailable (sandbox outage)", status, headers)

    def _take_throttle(self) -> Response | None:
        with self._lock:
            if self._throttle is None:
                return None
            retry_after, times = self._throttle
            if times is not None:
                self._throttle = (retry_after, times - 1) if times > 1 else None
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        return oauth_response("temporarily_unavailable", "too many token requests (sandbox throttle)", 429, headers)

    # -- issuing -----------------------------------------------------------------------

    def issue_token(
        self,
        subject: str,
        *,
        audience: str | Sequence[str] | None = None,
        scope: str | Iterable[str] | None = None,
        lifetime: float | None = None,
        client_id: str | None = None,
        issued_at: float | None = None,
        extra_claims: Mapping[str, Any] | None = None,
    ) -> str:
        """Mint an access token directly (for tests: subject tokens, expired tokens with a
        negative ``lifetime``, not-yet-valid ones with a future ``issued_at``)."""
        now = self.clock() if issued_at is None else issued_at
        life = self.token_lifetime if lifetime is None else lifetime
        aud: str | list[str] = self.default_audience if audience is None else (
            audience if isinstance(audience, str) else list(audience)
        )
        scope_str = scope if isinstance(scope, str) or scope is None else " ".join(scope)
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": subject,
            "aud": aud,
            "iat": int(now),
            "nbf": int(now),
            "exp": int(now + life),
            "jti": uuid.uuid4().hex,
            "scope": scope_str or "",
            "client_id": client_id or subject,
        }
        claims.update(extra_claims or {})
        with self._lock:
            kid, key = self._keys[0]
        return sign_jwt(claims, key, kid=kid, alg="ES256", typ="at+jwt")

    # -- endpoints ---------------------------------------------------------------------

    def handle(self, request: ApiRequest) -> Response:
        outage = self._take_outage()
        if outage is not None:
            if request.path == "/token":
                with self._lock:
                    self.token_requests += 1
            return outage
        return super().handle(request)

    def error_response(self, status: int, message: str, *, code: str | None = None) -> Response:
        if code in _OAUTH_ERRORS:
            error = code
        else:
            error = "server_error" if status >= 500 else "not_found" if status == 404 else "invalid_request"
        return oauth_response(error, message, status)

    def _discovery(self, request: ApiRequest) -> Response:
        return Response.json(self.discovery_document())

    def _jwks(self, request: ApiRequest) -> Response:
        with self._lock:
            self.jwks_requests += 1
        return Response.json(self.jwks(), headers={"Cache-Control": "max-age=60"})

    def _token(self, request: ApiRequest) -> Response:
        with self._lock:
            self.token_requests += 1
        throttled = self._take_throttle()
        if throttled is not None:
            return throttled
        try:
            form = self._token_form(request)
            client = self._authenticate(request, form)
            grant = form.get("grant_type")
            if not grant:
                raise OAuthError("invalid_request", "grant_type is required")
            if grant == GRANT_CLIENT_CREDENTIALS:
                body = self._client_credentials(client, form)
            elif grant == GRANT_TOKEN_EXCHANGE:
                body = self._token_exchange(client, form, request)
            else:
                raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported by this issuer")
        except OAuthError as err:
            logger.debug("%s: token request rejected: %s (%s)", self.name, err.error, err.description)
            return oauth_response(err.error, err.description, err.status, err.headers)
        with self._lock:
            self.tokens_issued += 1
        return Response.json(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    def _token_form(self, request: ApiRequest) -> dict[str, str | list[str]]:
        try:
            lists = request.form_lists()
        except HTTPError as err:
            raise OAuthError("invalid_request", err.message) from None
        form: dict[str, str | list[str]] = {}
        for name, values in lists.items():
            if name in _REPEATABLE:
                form[name] = values
            elif len(values) > 1:
                raise OAuthError("invalid_request", f"parameter {name!r} is repeated")
            else:
                form[name] = values[0]
        return form

    # -- grants ------------------------------------------------------------------------

    def _scope_for(self, client: RegisteredClient, requested: object) -> str:
        if requested is None:
            return " ".join(client.scopes)
        if not isinstance(requested, str):
            raise OAuthError("invalid_request", "scope must be a single value")
        asked = requested.split()
        extra = [s for s in asked if s not in client.scopes]
        if extra:
            raise OAuthError("invalid_scope", f"client {client.client_id!r} may not ask for scope {' '.join(extra)!r}")
        return " ".join(dict.fromkeys(asked))

    def _mint(self, client: RegisteredClient, sub: str, aud: str | list[str], scope: str,
              extra: Mapping[str, Any] | None = None) -> tuple[str, int]:
        lifetime = client.token_lifetime if client.token_lifetime is not None else self.token_lifetime
        token = self.issue_token(sub, audience=aud, scope=scope, lifetime=lifetime, client_id=client.client_id,
                                 extra_claims=extra)
        logger.debug("%s: issued token to client %s for sub %s, aud %s, lifetime %gs",
                     self.name, client.client_id, sub, aud, lifetime)
        return token, int(lifetime)

    def _client_credentials(self, client: RegisteredClient, form: Mapping[str, Any]) -> dict[str, Any]:
        scope = self._scope_for(client, form.get("scope"))
        token, expires_in = self._mint(client, client.client_id, client.audiences[0], scope)
        return {"access_token": token, "token_type": "Bearer", "expires_in": expires_in, "scope": scope}

    def _token_exchange(self, client: RegisteredClient, form: Mapping[str, Any], request: ApiRequest) -> dict[str, Any]:
        subject_token = form.get("subject_token")
        subject_type = form.get("subject_token_type")
        if not subject_token:
            raise OAuthError("invalid_request", "subject_token is required for token exchange")
        if not subject_type:
            raise OAuthError("invalid_request", "subject_token_type is required for token exchange")
        if subject_type not in _SUBJECT_TOKEN_TYPES:
            raise OAuthError("invalid_request", f"subject_token_type {subject_type!r} is not supported; "
                              f"use one of {', '.join(_SUBJECT_TOKEN_TYPES)}")
        if form.get("actor_token") is not None:
            raise OAuthError("invalid_request", "actor_token is not supported; the authenticated client is the actor")
        requested_type = form.get("requested_token_type") or TOKEN_TYPE_ACCESS_TOKEN
        if requested_type not in _ISSUABLE_TOKEN_TYPES:
            raise OAuthError("invalid_request", f"requested_token_type {requested_type!r} cannot be issued; "
                              f"use one of {', '.join(_ISSUABLE_TOKEN_TYPES)}")
        subject = self._validate_subject_token(subject_token)
        sub = subject.get("sub")
        if not isinstance(sub, str) or not sub:
            raise OAuthError("invalid_grant", "subject token has no sub")
        asked_aud: list[str] = [a for v in form.get("audience", []) for a in v.split()] if form.get("audience") else []
        if form.get("resource"):
            raise OAuthError("invalid_target", "the resource parameter is not supported; use audience")
        denied = [a for a in asked_aud if a not in client.audiences]
        if denied:
            raise OAuthError("invalid_target", f"client {client.client_id!r} may not obtain tokens for "
                              f"audience {', '.join(denied)}")
        aud: str | list[str] = (asked_aud[0] if len(asked_aud) == 1 else asked_aud) if asked_aud else client.audiences[0]
        scope = self._scope_for(client, form.get("scope"))
        act: dict[str, Any] = {"sub": client.client_id}
        if isinstance(subject.get("act"), dict):
            act["act"] = subject["act"]
        token, expires_in = self._mint(client, sub, aud, scope, {"act": act})
        return {
            "access_token": token,
            "issued_token_type": requested_type,
            "token_type": "Bearer",
            "expires_in": expires_in,
            "scope": scope,
        }

    def _validate_subject_token(self, token: str) -> dict[str, Any]:
        try:
            iss = unverified_claims(token).get("iss")
            unverified_header(token)
        except JWTError as err:
            raise OAuthError("invalid_grant", f"subject token is not a JWT: {err.message}") from None
        try:
            if iss == self.issuer:
                return verify_jwt(token, self.jwks(), issuer=self.issuer, audience=None, now=self.clock(),
                                  leeway=self.leeway)
            with self._lock:
                trusted = self._trusted.get(iss) if isinstance(iss, str) else None
            if trusted is None:
                raise OAuthError("invalid_grant", f"subject token issuer {iss!r} is not trusted by this issuer")
            if trusted.validator is not None:
                return trusted.validator.validate(token)
            assert trusted.keys is not None
            return verify_jwt(token, trusted.keys, issuer=trusted.issuer, audience=trusted.audience,
                              now=self.clock(), leeway=self.leeway)
        except JWTError as err:
            raise OAuthError("invalid_grant", f"subject token rejected: {err.message}") from None
        except IssuerUnavailableError as err:
            raise OAuthError("invalid_grant", f"subject token issuer unavailable: {err.message}") from None


def oauth_response(error: str, description: str, status: int, headers: Mapping[str, str] | None = None) -> Response:
    hdrs = {"Cache-Control": "no-store", "Pragma": "no-cache", **(headers or {})}
    return Response.json({"error": error, "error_description": description}, status, headers=hdrs)
