"""Token-endpoint HTTP: one POST with retries, backoff and OAuth error mapping.

Issuers live outside the mesh, so this is a plain ``requests.Session`` with normal public-CA
verification. Redirects are never followed: a 307/308 would re-post the client secret, and a
redirect to another host must not carry credentials anywhere.
"""

from __future__ import annotations

import datetime as _dt
import email.utils
import logging
import random
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from ..redaction import redact_text
from ._util import ts_from_dt, utc_from_ts
from .base import Token
from .errors import TokenEndpointError, TokenUnavailableError

__all__ = ["RetryPolicy", "Form", "Timeout", "Verify", "new_session", "post_token_request", "token_from_response"]

log = logging.getLogger("meshclient.tokens")

Timeout = float | tuple[float, float]
Verify = bool | str
BasicAuth = tuple[str, str] | None
#: A token request body; a list value repeats the parameter (RFC 8707 ``resource``).
Form = dict[str, str | list[str]]

#: OAuth error codes that mean "try again later" (RFC 6749 §5.2 and common practice).
RETRYABLE_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})

_HINTS = {
    "invalid_client": (
        "Check client_id, the client secret or private key, and auth_method "
        "('client_secret_basic', 'client_secret_post' or 'private_key_jwt') against the client's "
        "registration at the issuer."
    ),
    "unauthorized_client": "The issuer does not allow this client this grant type; enable it in the client's settings.",
    "unsupported_grant_type": "The issuer does not offer this grant type at this token endpoint.",
    "invalid_scope": "The client may not request some of these scopes; check scope against the client's grants.",
    "invalid_grant": (
        "The grant (subject token or assertion) was refused: expired, revoked, or not trusted by this issuer."
    ),
    "invalid_target": "The issuer refuses the requested audience or resource.",
    "invalid_audience": "The issuer refuses the requested audience.",
    "invalid_resource": "The issuer refuses the requested resource.",
    "invalid_request": "The issuer calls the request malformed; check audience, scope and extra parameters.",
    "access_denied": "The issuer denied the request; check the client's permissions.",
}


@dataclass(frozen=True)
class RetryPolicy:
    """How token requests are retried: connection errors, 408/429/5xx, ``temporarily_unavailable``.

    Backoff is exponential with jitter (``backoff * (1 - jitter * random())``); a
    ``Retry-After`` header is honoured instead, unless it asks for more than
    ``max_retry_after`` seconds, in which case the request fails at once (callers keep their
    cached token meanwhile).
    """

    attempts: int = 4
    initial_backoff: float = 0.5
    max_backoff: float = 8.0
    multiplier: float = 2.0
    jitter: float = 0.5
    max_retry_after: float = 60.0
    statuses: frozenset[int] = field(default_factory=lambda: frozenset({408, 429, 500, 502, 503, 504}))

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError("RetryPolicy.attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("RetryPolicy.jitter must be in [0, 1]")

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        return base * (1.0 - self.jitter * rand())


def new_session() -> requests.Session:
    """A session for issuers: system/certifi CAs, proxies from the environment, our User-Agent."""
    from .._version import __version__

    s = requests.Session()
    s.headers["User-Agent"] = f"meshclient/{__version__} python-requests/{requests.__version__}"
    s.headers["Accept"] = "application/json"
    return s


def parse_retry_after(value: str | None, now: float) -> float | None:
    """Seconds from a ``Retry-After`` header (delta-seconds or HTTP-date), ``None`` if absent/bad."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    return max(0.0, ts_from_dt(when) - now)


def _oauth_error(resp: requests.Response) -> tuple[str | None, str | None]:
    try:
        doc = resp.json()
    except ValueError:
        return None, None
    if not isinstance(doc, dict):
        return None, None
    err, desc = doc.get("error"), doc.get("error_description")
    return (err if isinstance(err, str) else None), (desc if isinstance(desc, str) else None)


def _who(token_url: str, client_id: str | None) -> str:
    return f"{token_url} for client_id {client_id!r}" if client_id else token_url


def post_token_request(
    *,
    session: requests.Session,
    token_url: str,
    build: Callable[[], tuple[Form, BasicAuth]],
    client_id: str | None,
    secrets: Callable[[], Iterable[str | None]],
    retry: RetryPolicy,
    timeout: Timeout,
    verify: Verify,
    sleep: Callable[[float], bool],
    clock: Callable[[], float],
    rand: Callable[[], float] = random.random,
) -> dict[str, Any]:
    """POST a token request until it succeeds, fails for good, or retries run out.

    ``build`` makes the form body and basic-auth pair for each attempt (a client assertion
    must carry a new ``jti`` every time). Returns the parsed JSON answer.
    """
    who = _who(token_url, client_id)
    last = "no attempt made"
    for attempt in range(retry.attempts):
        data, auth = build()
        wait: float | None = None
        try:
            resp = session.post(token_url, data=data, auth=auth, timeout=timeout, verify=verify, allow_redirects=False)
        except requests.RequestException as exc:
            # str(exc) names host and port only; redact anyway in case a proxy echoes more.
            last = f"{type(exc).__name__}: {redact_text(str(exc), secrets())}"
        else:
            status = resp.status_code
            if 200 <= status < 300:
                return _parse_success(resp, who, token_url, client_id)
            if 300 <= status < 400:
                location = resp.headers.get("Location", "")
                host = urlsplit(location).hostname or "the same host"
                raise TokenEndpointError(
                    f"Token endpoint {who} answered with a redirect (HTTP {status}) to {host}; meshclient does "
                    "not follow redirects for token requests, so credentials never go anywhere else.",
                    token_url=token_url,
                    client_id=client_id,
                    status=status,
                    hint="Configure the final token endpoint URL (see the issuer's discovery document).",
                )
            error, description = _oauth_error(resp)
            if status in retry.statuses or error in RETRYABLE_OAUTH_ERRORS:
                last = f"HTTP {status}" + (f" {error}" if error else "")
                wait = parse_retry_after(resp.headers.get("Retry-After"), clock())
                if wait is not None and wait > retry.max_retry_after:
                    raise TokenUnavailableError(
                        f"Token endpoint {who} answered {last} and asks to retry after {wait:.0f} s, more than "
                        f"the {retry.max_retry_after:.0f} s meshclient waits.",
                        hint="The issuer is overloaded or down; a still-valid cached token stays in use meanwhile.",
                    )
            else:
                raise _endpoint_error(resp, who, token_url, client_id, error, description, secrets())
        if attempt + 1 >= retry.attempts:
            break
        delay = wait if wait is not None else retry.backoff(attempt, rand)
        log.info(
            "token request to %s failed (%s); retry %d/%d in %.2f s",
            who,
            last,
            attempt + 1,
            retry.attempts - 1,
            delay,
        )
        if not sleep(delay):
            raise TokenUnavailableError(f"Token request to {who} abandoned: the provider was closed.")
    raise TokenUnavailableError(
        f"Token endpoint {who} could not be used after {retry.attempts} attempt(s); last: {last}.",
        hint="The issuer is unreachable, down or overloaded; a still-valid cached token stays in use meanwhile.",
    )


def _endpoint_error(
    resp: requests.Response,
    who: str,
    token_url: str,
    client_id: str | None,
    error: str | None,
    description: str | None,
    secrets: Iterable[str | None],
) -> TokenEndpointError:
    status = resp.status_code
    secrets = list(secrets)
    if error:
        detail = f"{error}" + (f" ({redact_text(description, secrets)})" if description else "")
    else:
        ctype = resp.headers.get("Content-Type", "no content type")
        body = redact_text(resp.text[:200], secrets).strip().replace("\n", " ")
        detail = f"a non-OAuth answer ({ctype})" + (f": {body!r}" if body else "")
    hint = _HINTS.get(error or "")
    if hint is None and status == 401:
        hint = _HINTS["invalid_client"]
    return TokenEndpointError(
        f"Token request to {who} failed with HTTP {status}: {detail}.",
        token_url=token_url,
        client_id=client_id,
        error=error,
        status=status,
        hint=hint,
    )


def _parse_success(resp: requests.Response, who: str, token_url: str, client_id: str | None) -> dict[str, Any]:
    try:
        doc = resp.json()
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise TokenEndpointError(
            f"Token endpoint {who} answered HTTP {resp.status_code} with something that is not a JSON object "
            f"({resp.headers.get('Content-Type', 'no content type')}).",
            token_url=token_url,
            client_id=client_id,
            status=resp.status_code,
            hint="Check that token_url is the issuer's token endpoint, not a login page or a proxy.",
        )
    if not isinstance(doc.get("access_token"), str) or not doc["access_token"]:
        raise TokenEndpointError(
            f"Token endpoint {who} answered without an access_token (fields: {', '.join(sorted(doc)) or 'none'}).",
            token_url=token_url,
            client_id=client_id,
            status=resp.status_code,
        )
    return doc


def token_from_response(
    doc: Mapping[str, Any],
    *,
    obtained: float,
    default_lifetime: float,
    token_url: str,
    client_id: str | None,
) -> Token:
    """A :class:`Token` from a token response (RFC 6749 §5.1 / RFC 8693 §2.2.1)."""
    token_type = doc.get("token_type")
    if isinstance(token_type, str) and token_type.lower() not in ("bearer", "n_a"):
        raise TokenEndpointError(
            f"Token endpoint {_who(token_url, client_id)} issued a {token_type!r} token; meshclient sends "
            "Bearer tokens only.",
            token_url=token_url,
            client_id=client_id,
            hint="Ask the issuer for Bearer tokens (no DPoP/MAC binding) for this client.",
        )
    expires_at: _dt.datetime | None = None
    raw = doc.get("expires_in")
    if raw is not None and not isinstance(raw, bool):
        try:
            expires_at = utc_from_ts(obtained + float(raw))
        except (TypeError, ValueError, OverflowError):
            expires_at = None
    scope = doc.get("scope")
    token = Token.from_value(
        doc["access_token"], expires_at=expires_at, scope=scope if isinstance(scope, str) else None
    )
    if token.expires_at is None and default_lifetime > 0:
        # No expires_in and no JWT exp: assume a lifetime; a 401 forces a refresh anyway.
        token = Token(
            token.value,
            expires_at=utc_from_ts(obtained + default_lifetime),
            subject=token.subject,
            audience=token.audience,
            scope=token.scope,
        )
    return token
