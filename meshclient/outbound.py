"""Every HTTP call that is *not* a mesh call: token endpoints, certificate issuers, CLI probes.

These calls go to services outside the mesh (an OAuth issuer, Vault, step-ca, the Databricks
workspace), so they need the opposite trust of the mesh path, and they all follow the same
rules. This module states both once:

**Trust.** ``verify=True`` means requests' default: certifi's CA bundle, or the bundle named
by ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` when set (Databricks clusters behind a corporate
TLS proxy set these). ``verify="/path/ca.pem"`` trusts exactly that bundle (a private issuer,
step-ca's own root). ``verify=False`` turns verification off (loopback tests only). The mesh
trust anchors are never used here: a session from :func:`new_session` has no mesh adapter,
and the mesh path (``meshclient.tls``) never uses these sessions.

**Environment.** Proxy variables (``HTTPS_PROXY``, ``NO_PROXY``...) apply: clusters often
reach public issuers only through an egress proxy. ``~/.netrc`` does not: a credential
meshclient was not given must never be sent to an issuer.

**Rules.** One User-Agent (:func:`meshclient._version.user_agent`); redirects are never
followed (a 307 would re-send a client secret or a JWT to wherever it points); a bounded retry
loop (:func:`call_with_retries`) whose ``sleep`` doubles as the cancel hook of a closing
owner; ``Retry-After`` read by :func:`meshclient.retry_after.parse_retry_after`; anything shown
from an exception masked by :func:`meshclient.redaction.redact_text`. Each caller keeps its own
error mapping (OAuth codes, Vault errors) on top of :class:`Reply`, :class:`Unreachable` and
:class:`Cancelled`.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import urlsplit

import requests
import requests.auth

from ._version import user_agent
from .errors import ConfigurationError
from .redaction import redact_text, redact_url
from .retry_after import parse_retry_after

__all__ = [
    "DEFAULT_TIMEOUT",
    "Timeout",
    "Verify",
    "Sleep",
    "OutboundRetryPolicy",
    "OutboundSettings",
    "OutboundClient",
    "Reply",
    "RetryLater",
    "Unreachable",
    "Cancelled",
    "new_session",
    "call_with_retries",
    "send_with_retries",
    "check_endpoint_url",
    "check_ca_bundle",
    "is_loopback_host",
    "is_network_error",
    "describe_error",
    "sleep_unless",
]

log = logging.getLogger("meshclient.outbound")

Timeout = float | tuple[float, float]
Verify = bool | str
#: Waits the given seconds; returns ``False`` when the owner was closed meanwhile (stop retrying).
Sleep = Callable[[float], bool]

#: (connect, read) seconds: issuers answer quickly, and a stalled one must not hold a refresh for long.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 30.0)

_T = TypeVar("_T")


# -- the session ---------------------------------------------------------------------------------
class _NoNetrc(requests.auth.AuthBase):
    """Set as the session's default auth so requests never looks up ``~/.netrc`` (see the module doc)."""

    def __call__(self, r: requests.PreparedRequest) -> requests.PreparedRequest:
        return r


def new_session() -> requests.Session:
    """A session for calls outside the mesh: public-CA trust, proxies, no netrc, our User-Agent."""
    s = requests.Session()
    s.headers["User-Agent"] = user_agent()
    s.headers["Accept"] = "application/json"
    s.auth = _NoNetrc()
    return s


# -- settings ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class OutboundRetryPolicy:
    """How an outbound call is retried: connection errors and ``statuses`` (408/429/5xx).

    Not the mesh's :class:`meshclient.RetryPolicy` (budgets, idempotency, bodies): outbound calls
    are few, small and owned by one refresh at a time. Backoff is exponential with jitter
    (``backoff * (1 - jitter * random())``); a ``Retry-After`` header is honoured instead,
    unless it asks for more than ``max_retry_after`` seconds, in which case the call gives up
    at once (callers keep what they hold meanwhile: a cached token, the current certificate).
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
            raise ValueError("OutboundRetryPolicy.attempts must be at least 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("OutboundRetryPolicy.jitter must be in [0, 1]")

    def backoff(self, retry: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``retry`` (0-based)."""
        base = min(self.max_backoff, self.initial_backoff * self.multiplier**retry)
        return base * (1.0 - self.jitter * rand())


@dataclass(frozen=True)
class OutboundSettings:
    """The HTTP knobs of one outbound owner (a token provider, an issuer).

    ``timeout`` is requests' (seconds, or ``(connect, read)``); ``verify`` is ``True``,
    ``False`` or a CA bundle path (see the module doc for what each trusts); ``retries`` the
    :class:`OutboundRetryPolicy`. ``session_factory`` makes the session (default
    :func:`new_session`); a factory rather than a session because a session holds sockets,
    which must not travel to Spark executors by pickle nor be shared with a forked child.
    """

    timeout: Timeout = DEFAULT_TIMEOUT
    verify: Verify = True
    retries: OutboundRetryPolicy = field(default_factory=OutboundRetryPolicy)
    session_factory: Callable[[], requests.Session] = new_session

    def __post_init__(self) -> None:
        if not isinstance(self.verify, (bool, str)):
            raise ConfigurationError("verify must be True, False or the path of a CA bundle.")
        if not isinstance(self.retries, OutboundRetryPolicy):
            raise ConfigurationError(
                f"retries must be a meshclient.tokens.OutboundRetryPolicy, got {type(self.retries).__name__}."
            )


# -- checks on settings ----------------------------------------------------------------------------
def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: str, what: str) -> str:
    """Refuse anything but https (plain http only on loopback, for local test issuers)."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{what} must be a URL, got {type(url).__name__}.")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(
            f"{what} {redact_url(url)!r} is not an http(s) URL.",
            hint="Use the issuer's token endpoint, e.g. https://login.example.com/oauth2/v1/token.",
        )
    if parts.username or parts.password:
        raise ConfigurationError(f"{what} must not carry credentials in the URL.")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"{what} {redact_url(url)!r} uses plain http: client secrets and tokens would cross the network in clear.",
            hint="Use https (plain http is accepted for loopback test issuers only).",
        )
    return url


def check_ca_bundle(verify: Verify, what: str) -> Verify:
    """A ``verify=`` path must exist now: a typo would otherwise surface only at the first call."""
    if isinstance(verify, str) and not os.path.exists(verify):
        raise ConfigurationError(
            f"The CA bundle verify={verify!r} for the {what} does not exist.",
            hint="Pass the path of a PEM file holding the issuer's CA certificate(s).",
        )
    return verify


# -- failures ------------------------------------------------------------------------------------
def describe_error(exc: BaseException, secrets: Iterable[str | None] = ()) -> str:
    """``Type: detail`` on one line, secrets masked: what a message may say about a failed call."""
    detail = redact_text(str(exc), secrets).replace("\n", " ")[:300]
    return f"{type(exc).__name__}: {detail}" if detail else type(exc).__name__


def is_network_error(exc: BaseException) -> bool:
    """Connection refused, DNS, timeouts: anywhere in the cause chain (SDKs wrap them)."""
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (requests.ConnectionError, requests.Timeout, ConnectionError, TimeoutError)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


class RetryLater(Exception):
    """Raised by an attempt whose failure is worth another try.

    ``reason`` is safe to log; ``after`` the seconds the server asked to wait (else backoff);
    ``response``/``error`` the answer or exception, for the caller's mapping once retries run out.
    """

    def __init__(self, reason: str, *, after: float | None = None, response: requests.Response | None = None,
                 error: BaseException | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.after = after
        self.response = response
        self.error = error
        self.attempts = 0  # set by call_with_retries


class Unreachable(Exception):
    """No answer: ``error`` is the last transport failure, after ``attempts`` tries.

    ``verification`` says TLS verification (or reading the CA bundle) failed: not retried, since
    it will not fix itself. ``detail`` is :func:`describe_error` of the failure (secrets masked).
    """

    def __init__(self, detail: str, *, error: BaseException, attempts: int, verification: bool) -> None:
        super().__init__(detail)
        self.detail = detail
        self.error = error
        self.attempts = attempts
        self.verification = verification


class Cancelled(Exception):
    """The owner was closed while waiting to retry; ``reason`` is the last failure."""

    def __init__(self, reason: str, *, attempts: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.attempts = attempts


@dataclass(frozen=True)
class Reply:
    """The answer a retried call ended with.

    ``gave_up`` is true when it is still an answer the policy retries: retries ran out, or its
    ``Retry-After`` (``retry_after``, seconds) asked for longer than ``max_retry_after``.
    """

    response: requests.Response
    attempts: int
    gave_up: bool = False
    retry_after: float | None = None


# -- the retry loop ----------------------------------------------------------------------------------
def sleep_unless(cancel: threading.Event | None) -> Sleep:
    """A :data:`Sleep` that wakes early and says ``False`` when ``cancel`` is set (an owner closing)."""
    if cancel is None:
        def plain(seconds: float) -> bool:
            time.sleep(seconds)
            return True

        return plain
    return lambda seconds: not cancel.wait(seconds)


def call_with_retries(attempt: Callable[[], _T], *, policy: OutboundRetryPolicy, sleep: Sleep, what: str,
                      rand: Callable[[], float] = random.random) -> _T:
    """Call ``attempt`` until it returns, raises for good, or ``policy.attempts`` run out.

    ``attempt`` raises :class:`RetryLater` for a failure worth another try; once retries run
    out, the last one propagates (with ``attempts`` set). Between tries ``sleep`` waits the
    server's ``Retry-After`` or the policy's backoff; when it returns ``False`` (the owner was
    closed) the loop stops with :class:`Cancelled`.
    """
    for n in range(policy.attempts):
        try:
            return attempt()
        except RetryLater as later:
            later.attempts = n + 1
            if n + 1 >= policy.attempts:
                raise
            delay = later.after if later.after is not None else policy.backoff(n, rand)
            log.info("%s failed (%s); retry %d/%d in %.2f s", what, later.reason, n + 1, policy.attempts - 1, delay)
            if not sleep(delay):
                raise Cancelled(later.reason, attempts=n + 1) from None
    raise AssertionError("unreachable")  # pragma: no cover


def send_with_retries(send: Callable[[], requests.Response], *, policy: OutboundRetryPolicy, sleep: Sleep,
                      what: str, retryable: Callable[[requests.Response], bool] | None = None,
                      secrets: Callable[[], Iterable[str | None]] | None = None,
                      clock: Callable[[], float] = time.time, rand: Callable[[], float] = random.random) -> Reply:
    """One HTTP call with retries: connection errors and answers ``retryable`` says (default:
    ``policy.statuses``). Returns the final :class:`Reply` (any status: the caller maps it);
    raises :class:`Unreachable` when nothing answered and :class:`Cancelled` when the owner closed.
    ``secrets()`` names what to mask in failure texts (asked after each try: a body made per
    try may hold a new secret).
    """
    is_retryable = retryable or (lambda resp: resp.status_code in policy.statuses)

    def hidden() -> list[str | None]:
        return list(secrets()) if secrets is not None else []

    sent = 0
    superseded: list[requests.Response] = []

    def attempt() -> Reply:
        nonlocal sent
        for old in superseded:
            old.close()
        superseded.clear()
        sent += 1
        try:
            resp = send()
        except requests.exceptions.SSLError as exc:
            raise Unreachable(describe_error(exc, hidden()), error=exc, attempts=sent, verification=True) from None
        except requests.RequestException as exc:
            raise RetryLater(describe_error(exc, hidden()), error=exc) from None
        except OSError as exc:  # an unreadable CA bundle (requests raises a bare OSError for it)
            raise Unreachable(describe_error(exc, hidden()), error=exc, attempts=sent, verification=True) from None
        if not is_retryable(resp):
            return Reply(resp, sent)
        after = parse_retry_after(resp.headers.get("Retry-After"), now=clock())
        if after is not None and after > policy.max_retry_after:
            return Reply(resp, sent, gave_up=True, retry_after=after)
        superseded.append(resp)
        raise RetryLater(f"HTTP {resp.status_code}", after=after, response=resp)

    try:
        return call_with_retries(attempt, policy=policy, sleep=sleep, what=what, rand=rand)
    except RetryLater as last:
        if last.response is not None:
            return Reply(last.response, last.attempts, gave_up=True, retry_after=last.after)
        assert last.error is not None
        raise Unreachable(last.reason, error=last.error, attempts=last.attempts, verification=False) from None


# -- one owner's outbound HTTP ----------------------------------------------------------------------
class OutboundClient:
    """One owner's outbound HTTP: its :class:`OutboundSettings` and one lazily made session.

    Picklable and fork-safe: the session (pooled sockets) and its lock are never pickled, and
    :meth:`after_fork` drops them in a child without closing the parent's sockets.
    """

    def __init__(self, settings: OutboundSettings | None = None) -> None:
        self.settings = settings or OutboundSettings()
        self._init_runtime()

    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._session: requests.Session | None = None

    def session(self) -> requests.Session:
        with self._lock:
            if self._session is None:
                self._session = self.settings.session_factory()
            return self._session

    def send_once(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """One request with the settings' timeout and trust, never following a redirect."""
        return self.session().request(method, url, timeout=self.settings.timeout, verify=self.settings.verify,
                                      allow_redirects=False, **kwargs)

    def call(self, method: str, url: str, *, what: str, sleep: Sleep,
             per_attempt: Callable[[], Mapping[str, Any]] | None = None,
             retryable: Callable[[requests.Response], bool] | None = None,
             secrets: Callable[[], Iterable[str | None]] | None = None, clock: Callable[[], float] = time.time,
             rand: Callable[[], float] = random.random, **kwargs: Any) -> Reply:
        """:func:`send_with_retries` of :meth:`send_once`; ``per_attempt()`` adds keyword
        arguments made anew for each try (a client assertion needs a fresh ``jti``)."""

        def send() -> requests.Response:
            fresh = dict(per_attempt()) if per_attempt is not None else {}
            return self.send_once(method, url, **kwargs, **fresh)

        return send_with_retries(send, policy=self.settings.retries, sleep=sleep, what=what, retryable=retryable,
                                 secrets=secrets, clock=clock, rand=rand)

    def close(self) -> None:
        """Close pooled connections (usable again afterwards: a new session is made on demand)."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()

    def after_fork(self) -> None:
        """In a forked child: forget the parent's session (its sockets are the parent's) and lock."""
        self._init_runtime()

    def __getstate__(self) -> dict[str, Any]:
        return {"settings": self.settings}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.settings = state["settings"]
        self._init_runtime()
