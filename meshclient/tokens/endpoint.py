"""One token request (RFC 6749 §5) over :mod:`meshclient.outbound`, and the OAuth side of it.

The HTTP rules (session, retries, ``Retry-After``, no redirects, redaction) are the outbound
module's; what stays here is what only a token endpoint means: OAuth error codes that are
worth a retry, the error mapping to :class:`TokenEndpointError` with a hint per code, and
turning a token response into a :class:`Token`.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import requests

from ..outbound import Cancelled, OutboundClient, Sleep, Unreachable
from ..redaction import redact_text, redact_url
from .claims import utc_from_ts
from .errors import TokenEndpointError, TokenUnavailableError
from .token import Token

__all__ = ["Form", "BasicAuth", "RETRYABLE_OAUTH_ERRORS", "request_token", "token_from_response"]

#: A token request body; a list value repeats the parameter (RFC 8707 ``resource``).
Form = dict[str, str | list[str]]
BasicAuth = tuple[str, str] | None

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
_OUTAGE_HINT = "The issuer is unreachable, down or overloaded; a still-valid cached token stays in use meanwhile."


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
    shown = redact_url(token_url)
    return f"{shown} for client_id {client_id!r}" if client_id else shown


def request_token(
    http: OutboundClient,
    *,
    token_url: str,
    client_id: str | None,
    build: Callable[[], tuple[Form, BasicAuth]],
    secrets: Callable[[], Iterable[str | None]],
    sleep: Sleep,
    clock: Callable[[], float],
) -> dict[str, Any]:
    """POST a token request until it succeeds, fails for good, or retries run out.

    ``build`` makes the form body and basic-auth pair for each attempt (a client assertion
    must carry a new ``jti`` every time); ``sleep`` is the owner's cancel hook. Returns the
    parsed JSON answer.
    """
    who = _who(token_url, client_id)

    def per_attempt() -> dict[str, Any]:
        data, auth = build()
        return {"data": data, "auth": auth}

    def retryable(resp: requests.Response) -> bool:
        return resp.status_code in http.settings.retries.statuses or _oauth_error(resp)[0] in RETRYABLE_OAUTH_ERRORS

    try:
        reply = http.call("POST", token_url, what=f"token request to {who}", sleep=sleep, per_attempt=per_attempt,
                          retryable=retryable, secrets=secrets, clock=clock)
    except Unreachable as exc:
        hint = (
            "The issuer's HTTPS certificate did not verify: pass outbound=OutboundSettings(verify='/path/to/ca.pem') "
            "for an issuer with a private CA." if exc.verification else _OUTAGE_HINT
        )
        raise TokenUnavailableError(
            f"Token endpoint {who} could not be used after {exc.attempts} attempt(s); last: "
            f"{redact_text(exc.detail, secrets())}.",
            hint=hint,
        ) from None
    except Cancelled:
        raise TokenUnavailableError(f"Token request to {who} abandoned: the provider was closed.") from None
    resp = reply.response
    status = resp.status_code
    if 200 <= status < 300:
        return _parse_success(resp, who, token_url, client_id)
    if 300 <= status < 400:
        host = urlsplit(resp.headers.get("Location", "")).hostname or "the same host"
        raise TokenEndpointError(
            f"Token endpoint {who} answered with a redirect (HTTP {status}) to {host}; meshclient does "
            "not follow redirects for token requests, so credentials never go anywhere else.",
            token_url=token_url,
            client_id=client_id,
            status=status,
            hint="Configure the final token endpoint URL (see the issuer's discovery document).",
        )
    error, description = _oauth_error(resp)
    if reply.gave_up:
        last = f"HTTP {status}" + (f" {error}" if error else "")
        limit = http.settings.retries.max_retry_after
        if reply.retry_after is not None and reply.retry_after > limit:
            raise TokenUnavailableError(
                f"Token endpoint {who} answered {last} and asks to retry after {reply.retry_after:.0f} s, more "
                f"than the {limit:.0f} s meshclient waits.",
                hint="The issuer is overloaded or down; a still-valid cached token stays in use meanwhile.",
            )
        raise TokenUnavailableError(
            f"Token endpoint {who} could not be used after {reply.attempts} attempt(s); last: {last}.",
            hint=_OUTAGE_HINT,
        )
    raise _endpoint_error(resp, who, token_url, client_id, error, description, secrets())


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
