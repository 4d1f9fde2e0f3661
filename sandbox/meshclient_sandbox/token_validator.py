"""The resource server's side of the sandbox's OAuth: validating bearer tokens from one issuer
(discovery document and JWKS fetched over HTTP and cached, refetched on an unknown ``kid``), as
the sandbox apps and the Vault emulator do. The issuer side is :mod:`.oidc`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Collection, Iterable
from types import TracebackType
from typing import Any, Protocol

import requests

from meshclient.errors import MeshError

from .jose import JWKS, JWTError, to_jwks, unverified_header, verify_jwt

__all__ = ["TokenValidator", "IssuerUnavailableError", "NamedIssuer"]


class IssuerUnavailableError(MeshError):
    """The issuer's discovery document or JWKS could not be fetched."""


class NamedIssuer(Protocol):
    """An in-process issuer (``OIDCIssuer``): its ``issuer`` URL is read at each use (its port
    is known only once it has started)."""

    @property
    def issuer(self) -> str: ...


class TokenValidator:
    """Validates bearer tokens from one issuer for a resource server (the sandbox apps).

    Fetches the issuer's discovery document and JWKS over HTTP, caches the JWKS and
    refetches it when a token names an unknown ``kid`` (the issuer rotated) — at most once
    per ``refetch_interval`` for the same unknown ``kid``, so garbage tokens cannot make
    it hammer the issuer — and when the cache is older than ``jwks_ttl``.

    ``audience=None`` skips the audience check; only do that when the caller checks it.
    """

    def __init__(
        self,
        issuer: str | NamedIssuer,
        audience: str | Collection[str] | None,
        *,
        leeway: float = 30.0,
        required_scopes: Iterable[str] = (),
        clock: Callable[[], float] = time.time,
        timeout: float = 5.0,
        jwks_ttl: float = 300.0,
        refetch_interval: float = 5.0,
    ) -> None:
        self._issuer_obj = None if isinstance(issuer, str) else issuer
        self._issuer_str = issuer.rstrip("/") if isinstance(issuer, str) else None
        self.audience = audience
        self.leeway = leeway
        self.required_scopes = tuple(required_scopes)
        self.clock = clock
        self.timeout = timeout
        self.jwks_ttl = jwks_ttl
        self.refetch_interval = refetch_interval
        self._lock = threading.Lock()
        self._jwks: JWKS | None = None
        self._fetched_at = 0.0
        self._missed: dict[str, float] = {}
        self._session: requests.Session | None = None
        self.fetches = 0

    @property
    def issuer(self) -> str:
        if self._issuer_obj is not None:
            return self._issuer_obj.issuer
        assert self._issuer_str is not None
        return self._issuer_str

    def __repr__(self) -> str:
        return f"<TokenValidator issuer={self.issuer!r} audience={self.audience!r}>"

    def close(self) -> None:
        with self._lock:
            if self._session is not None:
                self._session.close()
                self._session = None

    def __enter__(self) -> TokenValidator:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _get_json(self, url: str) -> Any:
        if self._session is None:
            self._session = requests.Session()
            self._session.trust_env = False  # loopback: never through an HTTP(S)_PROXY
        try:
            resp = self._session.get(url, timeout=self.timeout)
        except requests.RequestException as exc:
            raise IssuerUnavailableError(
                f"cannot reach issuer {self.issuer} at {url}: {type(exc).__name__}",
                hint="Check that the issuer is running.",
            ) from None
        if resp.status_code != 200:
            raise IssuerUnavailableError(f"issuer {self.issuer} answered {resp.status_code} for {url}")
        try:
            return resp.json()
        except ValueError:
            raise IssuerUnavailableError(f"issuer {self.issuer} sent non-JSON from {url}") from None

    def refresh(self) -> JWKS:
        """Fetch discovery + JWKS now (normally done on demand)."""
        with self._lock:
            return self._fetch_locked()

    def _fetch_locked(self) -> JWKS:
        issuer = self.issuer
        doc = self._get_json(f"{issuer}/.well-known/openid-configuration")
        if not isinstance(doc, dict) or doc.get("issuer") != issuer:
            raise IssuerUnavailableError(
                f"discovery document of {issuer} names issuer {doc.get('issuer') if isinstance(doc, dict) else None!r}"
            )
        jwks_uri = doc.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise IssuerUnavailableError(f"discovery document of {issuer} has no jwks_uri")
        try:
            jwks = to_jwks(self._get_json(jwks_uri))
        except JWTError as err:
            raise IssuerUnavailableError(f"JWKS of {issuer} is unusable: {err.message}") from None
        self._jwks, self._fetched_at = jwks, time.monotonic()
        self.fetches += 1
        return jwks

    def _keys(self, kid: str | None) -> JWKS:
        with self._lock:
            now = time.monotonic()
            jwks = self._jwks
            if jwks is None or now - self._fetched_at > self.jwks_ttl:
                return self._fetch_locked()
            if kid is not None and kid not in jwks.kids:
                last_miss = self._missed.get(kid)
                if last_miss is None or now - last_miss > self.refetch_interval:
                    jwks = self._fetch_locked()
                    if kid not in jwks.kids:
                        self._missed[kid] = now
                        if len(self._missed) > 1024:
                            self._missed.clear()
            return jwks

    def validate(self, token: str) -> dict[str, Any]:
        """The verified claims of ``token``; :class:`~meshclient.jose.JWTError` if it is
        bad, :class:`IssuerUnavailableError` if the keys cannot be fetched."""
        kid = unverified_header(token).get("kid")
        keys = self._keys(kid if isinstance(kid, str) else None)
        claims = verify_jwt(token, keys, issuer=self.issuer, audience=self.audience, now=self.clock(),
                            leeway=self.leeway)
        if self.required_scopes:
            granted = set(str(claims.get("scope") or "").split())
            missing = [s for s in self.required_scopes if s not in granted]
            if missing:
                sub = claims.get("sub")
                raise JWTError(f"token for subject {sub!r} lacks scope {' '.join(missing)!r}", reason="scope")
        return claims

    def validate_authorization(self, authorization: str | None) -> dict[str, Any]:
        """Validate an ``Authorization`` header value (``Bearer <token>``)."""
        scheme, _, value = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise JWTError("no bearer token in the Authorization header", reason="missing",
                           hint="Send 'Authorization: Bearer <access token>'.")
        return self.validate(value.strip())

    @staticmethod
    def challenge(err: JWTError | None = None, *, realm: str = "meshclient-sandbox") -> str:
        """A ``WWW-Authenticate`` value for a 401/403 (RFC 6750 §3)."""
        if err is None or err.reason == "missing":
            return f'Bearer realm="{realm}"'
        code = "insufficient_scope" if err.reason == "scope" else "invalid_token"
        desc = err.message.replace("\\", "\\\\").replace('"', "'")
        return f'Bearer realm="{realm}", error="{code}", error_description="{desc}"'
