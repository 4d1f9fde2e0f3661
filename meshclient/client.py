"""``MeshClient``: every request meshclient makes goes through :meth:`MeshClient.request`.

One path for every request: egress policy → route (address, identity, SNI, direct mode) →
token → attempts (endpoint choice, per-attempt timeout under one deadline, retry under the
shared budget) → audit event. Artifacts, results and scoring are users of this client.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin, urlsplit

import requests

from .audit import AuditEvent, AuditSink, TraceContext, as_audit_sink
from .credentials import Credentials
from .credentials.sources import IdentitySource
from .errors import (
    ConfigurationError,
    DeadlineExceededError,
    HTTPStatusError,
    MeshError,
    MeshTimeoutError,
    PolicyDeniedError,
    ServerIdentityError,
    TransportError,
)
from .identity import Identity
from .policy import EgressPolicy
from .redaction import redact_url
from .tls import build_client_context, sni_for
from .tokens import TokenProvider
from .transport.adapter import MeshAdapter, Route, TLSState
from .transport.balancer import Balancer, DnsEndpoints, Endpoint, StaticEndpoints
from .transport.budget import RetryBudget
from .transport.failures import Failure, translate
from .transport.header import ALPN
from .transport.retry import RETRY_AFTER_STATUSES, RetryPolicy, parse_retry_after

if TYPE_CHECKING:
    from .config import ClientConfig

__all__ = ["MeshClient", "MeshService", "DEFAULT_TIMEOUT", "DIRECT_PORT", "raise_for_status"]

log = logging.getLogger("meshclient.client")

#: (connect, read) seconds. Linkerd's default route timeout is 10 s; uploads need longer reads.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 60.0)
#: The Linkerd proxy's inbound port, where direct mode connects.
DIRECT_PORT = 4143
_REDIRECTS = {301, 302, 303, 307, 308}
_MAX_REDIRECTS = 10


def _user_agent() -> str:
    from ._version import __version__

    return f"meshclient/{__version__} python-requests/{requests.__version__}"


def _timeout_pair(timeout: float | tuple[float, float]) -> tuple[float, float]:
    if isinstance(timeout, tuple):
        return float(timeout[0]), float(timeout[1])
    return float(timeout), float(timeout)


@dataclass
class _Target:
    """Where one logical request goes: a fixed route, or a balanced set of endpoints."""

    route: Route
    balancer: Balancer | None = None
    direct_port: int | None = None  # with a balancer: connect to endpoint_host:direct_port

    def choose(self, exclude: Endpoint | None) -> tuple[Route, Endpoint | None]:
        if self.balancer is None:
            return self.route, None
        ep = self.balancer.pick(exclude)
        if self.direct_port is not None:
            route = Route(ep.host, self.direct_port, self.route.server_identity, self.route.sni,
                          direct_target_port=ep.port)
        else:
            route = Route(ep.host, ep.port, self.route.server_identity, self.route.sni)
        return route, ep


class MeshClient:
    """A thread-safe HTTP client speaking mutual TLS with verified identities on both ends.

    Args:
        credentials: the workload's :class:`~meshclient.Credentials` (``None``: from the
            ``MESHCLIENT_*`` environment variables).
        token: a provider from :mod:`meshclient.tokens`; its bearer token is attached to every
            request (all MeshClient destinations are mesh services), refreshed once on a 401.
        policy: an :class:`~meshclient.EgressPolicy`; requests to other identities fail before
            any connection is opened.
        audit: where audit events go: a callable taking an :class:`~meshclient.AuditEvent`,
            ``True`` (the ``meshclient.audit`` logger, JSON lines), a ``logging.Logger`` or a file path.
        retries: a :class:`~meshclient.RetryPolicy` (``None``: Linkerd-like defaults; use
            ``RetryPolicy.disabled()`` to switch retries off).
        retry_budget: a :class:`~meshclient.RetryBudget` (default 20 % + 10/s over 10 s).
        timeout: default ``(connect, read)`` timeout in seconds per attempt, or one number for both.
        deadline: default overall seconds per request across all attempts (``None``: no deadline).
        allow_tls12: accept TLS 1.2 servers (Linkerd speaks TLS 1.3 only; opt in for other peers).
        pool_maxsize: keep-alive connections kept per (address, identity).

    Every request names the ``server_identity`` it expects; the connection is refused, before
    any request byte is sent, unless the server proves that identity with a certificate that
    chains to the mesh trust anchors.
    """

    def __init__(
        self,
        credentials: Credentials | IdentitySource | None = None,
        *,
        token: TokenProvider | None = None,
        policy: EgressPolicy | None = None,
        audit: AuditSink | str | logging.Logger | bool | None = None,
        retries: RetryPolicy | None = None,
        retry_budget: RetryBudget | None = None,
        timeout: float | tuple[float, float] = DEFAULT_TIMEOUT,
        deadline: float | None = None,
        allow_tls12: bool = False,
        pool_maxsize: int = 10,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        if credentials is None:
            credentials = Credentials.from_env()
        if not isinstance(credentials, (Credentials, IdentitySource)):
            raise ConfigurationError(
                f"credentials must be a meshclient.Credentials or a rotating source, got {type(credentials).__name__}.",
                hint="Build one with Credentials.from_files(...), from_pem(...), from_env(), or "
                "meshclient.FileSource(cert=..., key=..., trust_anchors=...) for material that rotates.",
            )
        if policy is not None and not isinstance(policy, EgressPolicy):
            raise ConfigurationError("policy must be a meshclient.EgressPolicy.",
                                     hint='Write policy=meshclient.EgressPolicy(allow=["*.ns.serviceaccount..."]).')
        self._credentials = credentials
        self._token = token
        self._policy = policy
        self._audit = as_audit_sink(audit)
        self._retries = retries or RetryPolicy()
        self._budget = retry_budget or RetryBudget()
        self._allow_tls12 = allow_tls12
        self._pool_maxsize = pool_maxsize
        self._headers = dict(headers or {})
        self._audit_setting = audit
        self._config_key = uuid.uuid4().hex
        self._timeout = _timeout_pair(timeout)
        self._deadline = deadline
        self._lock = threading.Lock()
        self._tls: TLSState | None = None
        self._closed = False
        self._adapter = MeshAdapter(self._tls_state, pool_maxsize=pool_maxsize)
        session = requests.Session()
        session.trust_env = False  # no proxies, .netrc or CA bundles from the environment
        session.headers["User-Agent"] = _user_agent()
        if headers:
            session.headers.update(headers)
        session.mount("https://", self._adapter)
        session.mount("http://", self._adapter)
        self._session = session

    # -- state ----------------------------------------------------------------------------
    @property
    def credentials(self) -> Credentials:
        """The current credentials snapshot (a rotating source's newest one)."""
        source = self._credentials
        return source.current() if isinstance(source, IdentitySource) else source

    @property
    def source(self) -> Credentials | IdentitySource:
        """What the client was given: a fixed snapshot or a rotating source."""
        return self._credentials

    @property
    def identity(self) -> Identity:
        """This client's own identity (what servers see as ``l5d-client-id``)."""
        return self.credentials.identity

    @property
    def retry_budget(self) -> RetryBudget:
        return self._budget

    def _tls_state(self) -> TLSState:
        state = self._tls
        creds = self.credentials  # a rotation shows up here as a new generation
        if state is not None and state.generation == creds.generation:
            return state
        with self._lock:
            if self._tls is None or self._tls.generation != creds.generation:
                ctx = build_client_context(creds, allow_tls12=self._allow_tls12)
                direct = build_client_context(creds, allow_tls12=False, alpn=[ALPN])
                self._tls = TLSState(creds.generation, ctx, direct)
            return self._tls

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The current generation's TLS context (read-only use: inspection, tests)."""
        ctx: ssl.SSLContext = self._tls_state().context
        return ctx

    # -- requests -------------------------------------------------------------------------
    def request(
        self,
        method: str,
        url: str,
        *,
        server_identity: str | Identity,
        server_name: str | None = None,
        direct: bool | str | None = None,
        params: Any = None,
        data: Any = None,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        files: Any = None,
        timeout: float | tuple[float, float] | None = None,
        deadline: float | None = None,
        stream: bool = False,
        allow_redirects: bool = True,
        retry: bool = True,
    ) -> requests.Response:
        """Send one request to ``url``, which must be served by ``server_identity``.

        ``url`` may use any address (pod IP, service DNS name, localhost); the identity is
        what is verified. For a SPIFFE ``server_identity`` the SNI is ``server_name`` or the
        URL host. ``direct=True`` uses Linkerd's direct mode (TLS to port 4143 of the URL's
        host with ALPN ``transport.l5d.io/v1`` and a transport header naming the URL's port);
        ``direct="host:port"`` connects to that proxy address instead. Retries follow the
        client's :class:`RetryPolicy` and budget; ``deadline`` bounds all attempts together.
        Redirects are followed only within the same scheme, host and port, where the verified
        identity stays the same. Returns a ``requests.Response``; errors are
        :class:`~meshclient.MeshError` subclasses.
        """
        identity = Identity.parse(server_identity)
        target = _Target(self._route(url, identity, server_name, direct))
        return self._perform(method, url, identity, target, params=params, data=data, json=json, headers=headers,
                             files=files, timeout=timeout, deadline=deadline, stream=stream,
                             allow_redirects=allow_redirects, retry=retry)

    def _perform(self, method: str, url: str, identity: Identity, target: _Target, *, params: Any, data: Any,
                 json: Any, headers: Mapping[str, str] | None, files: Any, timeout: Any, deadline: float | None,
                 stream: bool, allow_redirects: bool, retry: bool, host_header: str | None = None) -> requests.Response:
        if self._closed:
            raise ConfigurationError("This MeshClient is closed.", hint="Create a new MeshClient.")
        started = time.monotonic()
        trace = TraceContext.from_headers(headers)
        req = requests.Request(method.upper(), url, params=params, data=data, json=json,
                               headers=dict(headers) if headers else None, files=files)
        prepared = self._session.prepare_request(req)
        prepared.headers.setdefault("traceparent", trace.header)
        if host_header:
            prepared.headers["Host"] = host_header
        total = deadline if deadline is not None else self._deadline
        deadline_at = None if total is None else started + total
        if self._policy is not None:
            try:
                self._policy.check(identity, client_identity=self.identity)
            except MeshError as exc:
                self._emit(prepared, target.route, None, started, attempts=0, trace=trace, outcome="egress_denied",
                           error=exc, token_subject=None)
                raise
        per_attempt = self._timeout if timeout is None else _timeout_pair(timeout)
        response = self._attempts(prepared, target, per_attempt, deadline_at, stream, retry, trace, started)
        redirects = 0
        while allow_redirects and response.status_code in _REDIRECTS and redirects < _MAX_REDIRECTS:
            nxt = self._same_origin_redirect(prepared, response, target.route)
            if nxt is None:
                break
            response.close()
            prepared = nxt
            response = self._attempts(prepared, _Target(target.route), per_attempt, deadline_at, stream, retry,
                                      trace, time.monotonic())
            redirects += 1
        return response

    # -- the attempt loop -------------------------------------------------------------------
    def _attempts(self, prepared: requests.PreparedRequest, target: _Target, per_attempt: tuple[float, float],
                  deadline_at: float | None, stream: bool, retry: bool, trace: TraceContext,
                  started: float) -> requests.Response:
        method = prepared.method or "GET"
        policy = self._retries
        may_repeat = retry and policy.method_allows_retry(method, prepared.headers)
        replay = _Replay(prepared)
        self._budget.record_request()
        attempts = 0
        token_refreshed = False
        token_subject: str | None = None
        exclude: Endpoint | None = None
        route = target.route
        while True:
            attempts += 1
            # token and time budget first: a failure there must not leave a breaker probe claimed
            token_subject = self._attach_token(prepared)
            try:
                attempt_timeout = self._attempt_timeout(per_attempt, deadline_at, prepared, route)
            except DeadlineExceededError as exc:
                self._emit(prepared, route, None, started, attempts - 1, trace, "deadline_exceeded", exc, token_subject)
                raise
            try:
                route, endpoint = target.choose(exclude)
            except MeshError as exc:
                self._emit(prepared, route, None, started, attempts, trace, "no_endpoint", exc, token_subject)
                raise
            prepared.mesh_route = route  # type: ignore[attr-defined]
            t0 = time.monotonic()
            if endpoint is not None:
                endpoint.latency.start()
            try:
                response = self._send_once(prepared, attempt_timeout, stream, deadline_at)
            except BaseException as exc:
                if not isinstance(exc, Exception):  # KeyboardInterrupt in a notebook: give the probe back
                    if endpoint is not None:
                        endpoint.latency.finish()
                        endpoint.breaker.release()
                    raise
                failure = translate(exc, route, method, prepared.url, attempt_timeout)
                if endpoint is not None:
                    endpoint.latency.finish()
                    endpoint.breaker.record_failure()
                # Failures before the request was sent are retried whatever the method; after that
                # (reset mid-response, response timeout) only requests that may be repeated.
                retry_ok = (
                    failure.transient
                    and retry
                    and (failure.before_send or may_repeat)
                    and not isinstance(failure.error, ServerIdentityError)
                    and replay.possible
                    and attempts < policy.max_attempts
                )
                delay = policy.backoff(attempts - 1)
                if retry_ok and self._time_left(deadline_at, delay) and self._budget.try_withdraw():
                    log.debug("retrying %s %s after %s (attempt %d)", method, redact_url(prepared.url),
                              type(failure.error).__name__, attempts)
                    exclude = endpoint
                    time.sleep(delay)
                    if replay.rewind():
                        continue
                error = self._deadline_error(failure, deadline_at, prepared, route)
                self._emit(prepared, route, None, started, attempts, trace, _outcome(error), error, token_subject)
                raise error from None
            elapsed = time.monotonic() - t0
            if endpoint is not None:
                endpoint.latency.finish()
                endpoint.latency.observe(elapsed)
                if response.status_code >= 500:
                    endpoint.breaker.record_failure()
                else:
                    endpoint.breaker.record_success()
            status = response.status_code
            if (status == 401 and self._token is not None and not token_refreshed and replay.possible
                    and getattr(prepared, "mesh_token_attached", False)):
                token_refreshed = True  # one forced refresh, outside the retry budget
                rejected = prepared.headers.get("Authorization")
                if self._token.on_unauthorized(rejected) and replay.rewind():
                    response.close()
                    continue
            if (status in policy.retry_statuses and may_repeat and replay.possible
                    and attempts < policy.max_attempts):
                delay = policy.backoff(attempts - 1)
                if status in RETRY_AFTER_STATUSES:
                    hinted = parse_retry_after(response.headers.get("Retry-After"))
                    if hinted is not None:
                        delay = hinted
                if delay <= policy.max_retry_after and self._time_left(deadline_at, delay) \
                        and self._budget.try_withdraw():
                    log.debug("retrying %s %s after status %d (attempt %d)", method, redact_url(prepared.url),
                              status, attempts)
                    response.close()
                    exclude = endpoint if status >= 500 else None
                    time.sleep(delay)
                    if replay.rewind():
                        continue
                    raise TransportError(
                        f"{method} {redact_url(prepared.url)}: the request body could not be rewound for a retry "
                        f"after status {status}.",
                        hint="Pass bytes or a seekable file as the body.",
                    )
            response.mesh_attempts = attempts  # type: ignore[attr-defined]
            response.mesh_client_identity = str(self.identity)  # type: ignore[attr-defined]
            self._emit(prepared, route, response, started, attempts, trace, _status_outcome(response), None,
                       token_subject)
            return response

    def _send_once(self, prepared: requests.PreparedRequest, timeout: tuple[float, float], stream: bool,
                   deadline_at: float | None) -> requests.Response:
        """One attempt. With a deadline, the body is read under a watchdog that closes the socket
        when the deadline passes, so a server trickling bytes cannot stretch the request."""
        if deadline_at is None or stream:
            return self._session.send(prepared, timeout=timeout, stream=stream, allow_redirects=False)
        response = self._session.send(prepared, timeout=timeout, stream=True, allow_redirects=False)
        raw = response.raw
        conn = getattr(raw, "_connection", None) or getattr(raw, "connection", None)
        sock = getattr(conn, "sock", None)
        watchdog = None
        if sock is not None:
            watchdog = threading.Timer(max(0.0, deadline_at - time.monotonic()), _shutdown_quietly, (sock,))
            watchdog.daemon = True
            watchdog.start()
        try:
            response.content  # noqa: B018 - read the body now, under the watchdog
        except BaseException:
            response.close()
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
        return response

    def _attach_token(self, prepared: requests.PreparedRequest) -> str | None:
        if self._token is None:
            return None
        if prepared.headers.get("Authorization") and not getattr(prepared, "mesh_token_attached", False):
            return None  # the caller set its own Authorization header
        tok = self._token.token()
        prepared.headers["Authorization"] = tok.authorization
        prepared.mesh_token_attached = True  # type: ignore[attr-defined]
        return tok.subject

    @staticmethod
    def _time_left(deadline_at: float | None, needed: float) -> bool:
        return deadline_at is None or time.monotonic() + needed < deadline_at

    def _attempt_timeout(self, per_attempt: tuple[float, float], deadline_at: float | None,
                         prepared: requests.PreparedRequest, route: Route) -> tuple[float, float]:
        if deadline_at is None:
            return per_attempt
        remaining = deadline_at - time.monotonic()
        if remaining <= 0:
            raise DeadlineExceededError(
                f"{prepared.method} {redact_url(prepared.url)} ({route.server_identity}) ran out of its deadline.",
                hint="Raise deadline= or make the server answer faster.",
            )
        return min(per_attempt[0], remaining), min(per_attempt[1], remaining)

    def _deadline_error(self, failure: Failure, deadline_at: float | None, prepared: requests.PreparedRequest,
                        route: Route) -> MeshError:
        timed_out = isinstance(failure.error, MeshTimeoutError) or (
            type(failure.error) is TransportError  # the watchdog closed a trickling body
        )
        if deadline_at is not None and timed_out and time.monotonic() >= deadline_at - 0.001:
            return DeadlineExceededError(
                f"{prepared.method} {redact_url(prepared.url)} ({route.server_identity}) did not complete within "
                "its deadline (all attempts together).",
                hint="Raise deadline= or make the server answer faster.",
            )
        return failure.error

    def _emit(self, prepared: requests.PreparedRequest, route: Route, response: requests.Response | None,
              started: float, attempts: int, trace: TraceContext, outcome: str, error: MeshError | None,
              token_subject: str | None) -> None:
        if self._audit is None:
            return
        peer = getattr(response, "mesh_peer", None) if response is not None else None
        event = AuditEvent(
            time=AuditEvent.now(),
            client_identity=str(self.identity),
            server_identity=str(route.server_identity),
            verified_server_identity=str(peer.identity) if peer is not None else None,
            token_subject=token_subject,
            method=prepared.method or "",
            url=redact_url(prepared.url),
            status=response.status_code if response is not None else None,
            bytes_sent=_body_size(prepared),
            bytes_received=_received_size(response),
            duration_ms=round((time.monotonic() - started) * 1000, 3),
            attempts=attempts,
            idempotency_key=prepared.headers.get("Idempotency-Key"),
            trace_id=_trace_id(prepared, trace),
            outcome=outcome,
            error=type(error).__name__ if error is not None else None,
            endpoint=route.address,
        )
        try:
            self._audit(event)
        except Exception:
            log.exception("the audit sink raised; the request itself completed")

    # -- routes -----------------------------------------------------------------------------
    def _route(self, url: str, identity: Identity, server_name: str | None,
               direct: bool | str | None = None) -> Route:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise ConfigurationError(f"The URL {url!r} is not valid: {exc}.") from None
        if parts.scheme != "https":
            raise ConfigurationError(
                f"The URL {redact_url(url)!r} is not https: meshclient only speaks mutual TLS.",
                hint="Use https:// with the workload's address and port (the Linkerd proxy terminates mTLS there).",
            )
        if not parts.hostname:
            raise ConfigurationError(f"The URL {redact_url(url)!r} has no host.")
        host = parts.hostname
        port = port or 443
        sni = sni_for(identity, host, server_name)
        if not direct:
            return Route(host=host, port=port, server_identity=identity, sni=sni)
        if direct is True:
            return Route(host=host, port=DIRECT_PORT, server_identity=identity, sni=sni, direct_target_port=port)
        from .transport.balancer import parse_address

        dhost, dport = parse_address(str(direct), DIRECT_PORT)
        return Route(host=dhost, port=dport, server_identity=identity, sni=sni, direct_target_port=port)

    def _same_origin_redirect(
        self, prepared: requests.PreparedRequest, response: requests.Response, route: Route
    ) -> requests.PreparedRequest | None:
        location = response.headers.get("Location")
        if not location:
            return None
        target = urljoin(prepared.url or "", location)
        parts = urlsplit(target)
        current = urlsplit(prepared.url or "")
        if parts.scheme != "https" or parts.hostname != current.hostname or (parts.port or 443) != (current.port or 443):
            return None  # another host could be another workload: never reuse the identity (or token) for it
        nxt = prepared.copy()
        nxt.prepare_url(target, None)
        status = response.status_code
        if status == 303 or (status in (301, 302) and prepared.method not in ("GET", "HEAD")):
            nxt.method = "GET"
            nxt.body = None
            for name in ("Content-Length", "Content-Type", "Transfer-Encoding"):
                nxt.headers.pop(name, None)
        elif nxt.body is not None and not _Replay(prepared).rewind():
            return None  # a stream cannot be replayed
        nxt.mesh_route = route  # type: ignore[attr-defined]
        if getattr(prepared, "mesh_token_attached", False):
            nxt.mesh_token_attached = True  # type: ignore[attr-defined]
        return nxt

    def get(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", url, **kwargs)

    def put(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("PUT", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("DELETE", url, **kwargs)

    def head(self, url: str, **kwargs: Any) -> requests.Response:
        return self.request("HEAD", url, **kwargs)

    def service(
        self,
        base_url: str,
        server_identity: str | Identity,
        *,
        server_name: str | None = None,
        endpoints: list[str] | StaticEndpoints | DnsEndpoints | None = None,
        direct: bool | str | None = None,
    ) -> MeshService:
        """A base URL bound to the identity that must serve it.

        ``endpoints`` spreads requests over several addresses serving that identity: a list of
        ``host[:port]`` (the port defaults to the base URL's), or :class:`DnsEndpoints` for
        the A records of a headless service. ``direct`` as in :meth:`request`.
        """
        return MeshService(self, base_url, Identity.parse(server_identity), server_name=server_name,
                           endpoints=endpoints, direct=direct)

    def config(self) -> ClientConfig:
        """A picklable description of this client, from which executors build their own
        (see :func:`meshclient.spark.share`). Never contains contexts, pools, locks or threads."""
        from .config import ClientConfig

        b = self._budget
        return ClientConfig(
            credentials=self._credentials,
            token=self._token,
            policy=self._policy,
            audit=self._audit_setting,
            retries=self._retries,
            retry_budget=(b.retry_ratio, b.min_retries_per_second, b.ttl),
            timeout=self._timeout,
            deadline=self._deadline,
            allow_tls12=self._allow_tls12,
            pool_maxsize=self._pool_maxsize,
            headers=tuple(self._headers.items()),
            key=self._config_key,
        )

    # -- lifecycle ------------------------------------------------------------------------
    def close(self) -> None:
        self._closed = True
        self._session.close()

    def __enter__(self) -> MeshClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"MeshClient(credentials={self._credentials!r}{', closed' if self._closed else ''})"


class MeshService:
    """A base URL bound to a server identity: ``svc.post("/invocations", json=...)``."""

    def __init__(self, client: MeshClient, base_url: str, server_identity: Identity, *,
                 server_name: str | None = None,
                 endpoints: list[str] | StaticEndpoints | DnsEndpoints | None = None,
                 direct: bool | str | None = None) -> None:
        self._route = client._route(base_url, server_identity, server_name, direct)
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.server_identity = server_identity
        self.server_name = server_name
        self.direct = direct
        self._balancer: Balancer | None = None
        if endpoints is not None:
            parts = urlsplit(self.base_url)
            default_port = parts.port or 443
            source = endpoints if isinstance(endpoints, (StaticEndpoints, DnsEndpoints)) else \
                StaticEndpoints(endpoints, default_port)
            self._balancer = Balancer(source, service=f"{self.base_url} ({server_identity})")

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._balancer.endpoints.current()) if self._balancer else []

    def url(self, path: str) -> str:
        if "://" in path:
            raise ConfigurationError(f"MeshService paths are relative; got the URL {redact_url(path)!r}.",
                                     hint="Use client.request(...) for another address.")
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def request(self, method: str, path: str = "", **kwargs: Any) -> requests.Response:
        url = self.url(path)
        if self._balancer is None:
            return self.client.request(method, url, server_identity=self.server_identity,
                                       server_name=self.server_name, direct=self.direct, **kwargs)
        direct_port = None
        if self.direct:
            direct_port = DIRECT_PORT if self.direct is True else int(str(self.direct).rsplit(":", 1)[-1])
        target = _Target(self._route, self._balancer, direct_port)
        host_header = urlsplit(self.base_url).netloc
        options: dict[str, Any] = {"params": None, "data": None, "json": None, "headers": None, "files": None, "timeout": None,
                   "deadline": None, "stream": False, "allow_redirects": True, "retry": True}
        unknown = set(kwargs) - set(options)
        if unknown:
            raise TypeError(f"unexpected arguments: {', '.join(sorted(unknown))}")
        options.update(kwargs)
        return self.client._perform(method, url, self.server_identity, target, host_header=host_header, **options)

    def get(self, path: str = "", **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str = "", **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str = "", **kwargs: Any) -> requests.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str = "", **kwargs: Any) -> requests.Response:
        return self.request("DELETE", path, **kwargs)

    def head(self, path: str = "", **kwargs: Any) -> requests.Response:
        return self.request("HEAD", path, **kwargs)

    def __repr__(self) -> str:
        return f"MeshService({self.base_url!r}, server_identity='{self.server_identity}')"


class _Replay:
    """Whether (and how) a prepared body can be sent again: bytes yes, seekable files rewound,
    generators and other streams never."""

    def __init__(self, prepared: requests.PreparedRequest) -> None:
        self.body = prepared.body
        self.position = getattr(prepared, "_body_position", None)
        if self.body is None or isinstance(self.body, (bytes, str, bytearray)):
            self.possible = True
        else:
            seek = getattr(self.body, "seek", None)
            tell = getattr(self.body, "tell", None)
            if self.position is None and callable(tell):
                try:
                    self.position = tell()
                except OSError:
                    self.position = None
            self.possible = callable(seek) and isinstance(self.position, int)

    def rewind(self) -> bool:
        if not self.possible:
            return False
        if self.body is not None and not isinstance(self.body, (bytes, str, bytearray)):
            try:
                self.body.seek(self.position)  # type: ignore[union-attr]
            except (OSError, ValueError):
                return False
        return True


def _shutdown_quietly(sock: Any) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _outcome(error: MeshError) -> str:
    name = type(error).__name__
    return {
        "ServerIdentityError": "server_identity_mismatch",
        "TLSHandshakeError": "tls_error",
        "ConnectError": "connect_error",
        "MeshTimeoutError": "timeout",
        "DeadlineExceededError": "deadline_exceeded",
    }.get(name, "transport_error")


def _status_outcome(response: requests.Response) -> str:
    if response.status_code == 403 and response.headers.get("l5d-proxy-error"):
        return "policy_denied"
    if response.status_code >= 400:
        return "http_error"
    return "ok"


def _body_size(prepared: requests.PreparedRequest) -> int | None:
    body = prepared.body
    if body is None:
        return 0
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8"))
    length = prepared.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _received_size(response: requests.Response | None) -> int | None:
    if response is None:
        return None
    if getattr(response, "_content_consumed", False) and isinstance(getattr(response, "_content", None), bytes):
        return len(response.content)
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isdigit() else None


def _trace_id(prepared: requests.PreparedRequest, trace: TraceContext) -> str:
    value = prepared.headers.get("traceparent", "")
    parts = value.split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else trace.trace_id


def raise_for_status(response: requests.Response) -> requests.Response:
    """Raise :class:`HTTPStatusError` (or :class:`PolicyDeniedError`) for 4xx/5xx; return the response."""
    status = response.status_code
    if status < 400:
        return response
    url = redact_url(response.request.url if response.request else response.url)
    proxy_error = response.headers.get("l5d-proxy-error")
    if status == 403 and proxy_error:
        who = getattr(response, "mesh_client_identity", None)
        raise PolicyDeniedError(
            f"The mesh proxy at {url} refused {f'identity {who!r}' if who else 'this identity'} by policy: "
            f"{proxy_error}.",
            status=status, url=url,
            hint="Ask the service owner to authorize this client's identity (MeshTLSAuthentication / AuthorizationPolicy).",
        )
    if proxy_error:
        raise HTTPStatusError(f"The mesh proxy answered {status} for {url}: {proxy_error}.", status=status, url=url)
    raise HTTPStatusError(f"{url} answered {status} {response.reason or ''}".rstrip() + ".", status=status, url=url)
