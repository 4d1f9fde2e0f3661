"""How an OAuth client proves who it is to a token endpoint (RFC 6749 §2.3, RFC 7523).

``client_secret_basic``, ``client_secret_post``, ``private_key_jwt`` (an assertion signed with
:mod:`meshclient.jose`: ES256 for P-256 keys, RS256 for RSA) or ``none`` (a public client,
token exchange only). Apart from the grants (:mod:`.oauth`) because it is the part that holds
secrets: the secret and the key live here, never in a ``repr``, and the key travels to
executors as PEM bytes in memory (the parsed key object is rebuilt on arrival).
"""

from __future__ import annotations

import secrets as _secrets
from collections.abc import Callable
from typing import Any, Literal, get_args
from urllib.parse import quote_plus

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from ..errors import ConfigurationError
from .endpoint import BasicAuth, Form

__all__ = ["AuthMethod", "PrivateKey", "ClientAuth", "CLIENT_ASSERTION_TYPE"]

AuthMethod = Literal["client_secret_basic", "client_secret_post", "private_key_jwt", "none"]
PrivateKey = str | bytes | ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


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


class ClientAuth:
    """One client's identity at a token endpoint and the method it authenticates with.

    ``auth_method`` defaults to ``private_key_jwt`` with a key, ``client_secret_basic`` with a
    secret, else ``none``. ``owner`` names the provider in messages; ``require_client`` refuses
    ``none`` (client credentials needs an authenticated client, token exchange does not).
    """

    def __init__(
        self,
        *,
        owner: str,
        client_id: str | None,
        client_secret: str | None = None,
        private_key: PrivateKey | None = None,
        private_key_password: str | bytes | None = None,
        key_id: str | None = None,
        auth_method: AuthMethod | None = None,
        assertion_audience: str | None = None,
        assertion_lifetime: float = 60.0,
        require_client: bool,
    ) -> None:
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
        self.method: AuthMethod = auth_method
        if require_client and not self.client_id:
            raise ConfigurationError(f"{owner} needs a client_id.")
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
                f"{owner} for client_id {self.client_id!r} needs client_secret or private_key.",
            )
        self._client_secret = client_secret
        self._key_pem = _key_pem(private_key, private_key_password) if private_key is not None else None
        self.key_id = key_id
        self.assertion_audience = assertion_audience
        self.assertion_lifetime = float(assertion_lifetime)
        self._load()

    def _load(self) -> None:
        self.key = _load_key(self._key_pem) if self._key_pem is not None else None

    @property
    def secret(self) -> str | None:
        """The client secret (for masking in messages; never shown)."""
        return self._client_secret

    def assertion(self, token_url: str, now: float) -> str:
        """A fresh RFC 7523 client assertion: a new ``jti`` every time (issuers refuse replays)."""
        from .. import jose

        assert self.key is not None and self.client_id is not None
        issued = int(now)
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.assertion_audience or token_url,
            "jti": _secrets.token_urlsafe(18),
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(self.assertion_lifetime),
        }
        return jose.sign_jwt(claims, self.key, kid=self.key_id)

    def apply(self, data: Form, token_url: str, clock: Callable[[], float]) -> BasicAuth:
        """Add this client's authentication to a token request: form fields, or a Basic pair."""
        method = self.method
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
            data["client_assertion"] = self.assertion(token_url, clock())
        elif self.client_id:
            data["client_id"] = self.client_id
        return None

    def __repr__(self) -> str:
        return f"ClientAuth(client_id={self.client_id!r}, method={self.method!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("key", None)  # a key object does not pickle; its PEM bytes do
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._load()
