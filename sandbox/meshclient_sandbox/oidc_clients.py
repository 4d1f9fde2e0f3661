"""Who may ask the sandbox issuer for a token: registered clients (a secret kept only as a hash,
or public keys) and client authentication at the token endpoint — ``client_secret_basic``,
``client_secret_post`` (RFC 6749 §2.3) and ``private_key_jwt`` assertions (RFC 7523 §2.2, one use
per ``jti``). :class:`ClientAuthentication` is mixed into :class:`~meshclient_sandbox.oidc.OIDCIssuer`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from .httpserver import ApiRequest
from .jose import JWKS, JWTError, unverified_claims, verify_jwt

#: RFC 7523 §2.2: the client_assertion_type of a private_key_jwt assertion
CLIENT_ASSERTION_TYPE_JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

__all__ = ["RegisteredClient", "ClientAuthentication", "OAuthError", "hash_secret", "invalid_client", "basic_credentials",
           "CLIENT_ASSERTION_TYPE_JWT_BEARER"]


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass(frozen=True)
class RegisteredClient:
    """A client the issuer knows. Holds a hash of the secret, never the secret."""

    client_id: str
    audiences: tuple[str, ...]
    scopes: tuple[str, ...] = ()
    public_keys: JWKS | None = None
    token_lifetime: float | None = None
    _secret_hash: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def auth_methods(self) -> tuple[str, ...]:
        methods: list[str] = []
        if self._secret_hash is not None:
            methods += ["client_secret_basic", "client_secret_post"]
        if self.public_keys is not None:
            methods.append("private_key_jwt")
        return tuple(methods)

    def check_secret(self, secret: str) -> bool:
        return self._secret_hash is not None and hmac.compare_digest(self._secret_hash, hash_secret(secret))


class OAuthError(Exception):
    """An RFC 6749 §5.2 error response, raised inside the token endpoint."""

    def __init__(self, error: str, description: str, status: int = 400, headers: Mapping[str, str] | None = None):
        self.error, self.description, self.status = error, description, status
        self.headers = dict(headers or {})
        super().__init__(f"{error}: {description}")


class ClientAuthentication:
    """The token endpoint's client authentication; the issuer provides the state below."""

    _lock: threading.RLock
    _clients: dict[str, RegisteredClient]
    _used_jtis: dict[tuple[str, str], float]
    clock: Callable[[], float]
    leeway: float
    max_assertion_lifetime: float

    @property
    def issuer(self) -> str:
        raise NotImplementedError

    @property
    def token_url(self) -> str:
        raise NotImplementedError

    # -- client authentication (RFC 6749 §2.3, RFC 7523 §2.2) ----------------------------

    def _authenticate(self, request: ApiRequest, form: Mapping[str, str | list[str]]) -> RegisteredClient:
        basic = basic_credentials(request)
        post_secret = form.get("client_secret")
        assertion = form.get("client_assertion")
        form_client_id = form.get("client_id")
        used = [m for m, present in (("client_secret_basic", basic is not None),
                                     ("client_secret_post", post_secret is not None),
                                     ("private_key_jwt", assertion is not None)) if present]
        if len(used) > 1:
            raise OAuthError("invalid_request", f"more than one client authentication method used ({', '.join(used)})")
        if not used:
            raise invalid_client("client authentication is required (client_secret_basic, client_secret_post "
                                  "or private_key_jwt)")
        if form_client_id is not None and not isinstance(form_client_id, str):
            raise OAuthError("invalid_request", "client_id must be a single value")
        if basic is not None:
            client_id, secret = basic
            if form_client_id is not None and form_client_id != client_id:
                raise OAuthError("invalid_request", "client_id in the body differs from the Basic credentials")
            return self._check_secret(client_id, secret, "client_secret_basic")
        if post_secret is not None:
            if not isinstance(form_client_id, str) or not form_client_id:
                raise OAuthError("invalid_request", "client_secret_post needs client_id in the body")
            assert isinstance(post_secret, str)
            return self._check_secret(form_client_id, post_secret, "client_secret_post")
        assert isinstance(assertion, str)
        return self._check_assertion(assertion, form.get("client_assertion_type"), form_client_id)

    def _client(self, client_id: str) -> RegisteredClient:
        with self._lock:
            client = self._clients.get(client_id)
        if client is None:
            raise invalid_client(f"unknown client {client_id!r}")
        return client

    def _check_secret(self, client_id: str, secret: str, method: str) -> RegisteredClient:
        client = self._client(client_id)
        if method not in client.auth_methods:
            raise invalid_client(f"client {client_id!r} is not registered for {method}")
        if not client.check_secret(secret):
            raise invalid_client(f"wrong client secret for client {client_id!r}")
        return client

    def _check_assertion(self, assertion: str, assertion_type: object, form_client_id: object) -> RegisteredClient:
        if assertion_type != CLIENT_ASSERTION_TYPE_JWT_BEARER:
            raise OAuthError("invalid_request", f"client_assertion_type must be {CLIENT_ASSERTION_TYPE_JWT_BEARER}")
        try:
            peek = unverified_claims(assertion)
        except JWTError as err:
            raise invalid_client(f"client assertion is malformed: {err.message}") from None
        client_id = peek.get("sub")
        if not isinstance(client_id, str) or not client_id:
            raise invalid_client('client assertion has no "sub" (it must be the client_id)')
        if form_client_id is not None and form_client_id != client_id:
            raise invalid_client("client assertion sub differs from client_id")
        client = self._client(client_id)
        if client.public_keys is None:
            raise invalid_client(f"client {client_id!r} is not registered for private_key_jwt")
        now = self.clock()
        try:
            claims = verify_jwt(
                assertion,
                client.public_keys,
                issuer=client_id,
                audience={self.token_url, self.issuer},
                now=now,
                leeway=self.leeway,
                require=("iss", "sub", "aud", "exp", "jti"),
            )
        except JWTError as err:
            raise invalid_client(f"client assertion rejected: {err.message}") from None
        if claims["sub"] != client_id:
            raise invalid_client("client assertion iss and sub must both be the client_id")
        exp, jti = float(claims["exp"]), claims["jti"]
        if not isinstance(jti, str) or not jti:
            raise invalid_client('client assertion "jti" must be a non-empty string')
        if exp > now + self.max_assertion_lifetime + self.leeway:
            raise invalid_client(f"client assertion expires more than {self.max_assertion_lifetime:g} s from now")
        with self._lock:
            for k in [k for k, v in self._used_jtis.items() if v + self.leeway < now]:
                del self._used_jtis[k]
            if (client_id, jti) in self._used_jtis:
                raise invalid_client(f"client assertion jti was already used by client {client_id!r} (replay)")
            self._used_jtis[(client_id, jti)] = exp
        return client


def invalid_client(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401, {"WWW-Authenticate": 'Basic realm="meshclient-sandbox"'})


def basic_credentials(request: ApiRequest) -> tuple[str, str] | None:
    """RFC 6749 §2.3.1: Basic credentials are form-urlencoded before base64."""
    auth = (request.header("Authorization") or "").strip()
    scheme, _, value = auth.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError):
        raise invalid_client("the Basic authorization header is not valid base64") from None
    user, sep, password = decoded.partition(":")
    if not sep:
        raise invalid_client("the Basic authorization header has no ':' separator")
    return urllib.parse.unquote_plus(user), urllib.parse.unquote_plus(password)
