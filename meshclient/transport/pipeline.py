"""The attempt pipeline: one logical request in, a response and its record out.

:meth:`Pipeline.send` takes its inputs as arguments — the prepared request, the
:class:`~meshclient.transport.route.Target`, the per-attempt timeout and the request's
:class:`~meshclient.transport.timing.Deadline` — and runs, in order:

1. egress policy (refused before any connection is opened);
2. attempts, each: bearer token → time left → endpoint choice → :meth:`ConnectionPools.send`
   (identity verified in the handshake, before any byte) → body read under the deadline →
   balancer/breaker feedback → an :class:`AttemptRecord`;
3. a retry when the failure or status allows it (before-send failures always; otherwise only
   repeatable requests), paid for from the retry budget, after a back-off that fits the deadline;
   one forced token refresh on a 401;
4. same-origin redirects (``history`` kept; a loop raises);
5. the :class:`RequestRecord`, set on the response as ``response.mesh`` and sent to the audit sink.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import requests

from ..audit import AuditSink, TraceContext
from ..errors import DeadlineExceededError, MeshError, MeshTimeoutError, ServerIdentityError, TransportError
from ..policy import EgressPolicy
from ..redaction import redact_url
from ..tls import PeerInfo
from ..tokens import TokenProvider
from .balancer import Endpoint
from .body import Replay, body_size, received_size
from .budget import RetryBudget
from .failures import Failure, translate
from .pools import ConnectionPools
from .record import AttemptRecord, RequestRecord, audit_event, outcome_of_error, outcome_of_status
from .redirects import MAX_REDIRECTS, follow_redirect, is_redirect
from .response import MeshResponse, build_response
from .retry import RETRY_AFTER_STATUSES, RetryPolicy, parse_retry_after
from .route import Route, Target
from .timing import Clock, Deadline
from .watchdog import BodyWatchdog

__all__ = ["Pipeline", "RequestOptions"]

log = logging.getLogger("meshclient.client")


@dataclass(frozen=True)
class RequestOptions:
    """How one logical request is sent (from ``MeshClient.request``'s arguments and the config)."""

    timeout: tuple[float, float]  #: (connect, read) seconds per attempt
    deadline: Deadline  #: all attempts together
    stream: bool = False
    retry: bool = True
    allow_redirects: bool = True


@dataclass
class _Progress:
    """One request's attempts so far (local to one :meth:`Pipeline.send` call)."""

    attempts: list[AttemptRecord] = field(default_factory=list)
    token_refreshed: bool = False
    exclude: Endpoint | None = None


class Pipeline:
    """Everything below ``MeshClient.request``: policy, attempts, retries, record, audit."""

    def __init__(self, pools: ConnectionPools, *, retries: RetryPolicy, budget: RetryBudget,
                 token: TokenProvider | None, policy: EgressPolicy | None, audit: AuditSink | None,
                 clock: Clock) -> None:
        self.pools = pools
        self.retries = retries
        self.budget = budget
        self.token = token
        self.policy = policy
        self.audit = audit
        self.clock = clock

    def client_identity(self) -> str:
        return str(self.pools.contexts.credentials().identity)

    # -- the request ----------------------------------------------------------------------
    def send(self, prepared: requests.PreparedRequest, target: Target, options: RequestOptions) -> MeshResponse:
        started = self.clock.monotonic()
        trace = TraceContext.from_headers(prepared.headers)
        if self.policy is not None:
            try:
                self.policy.check(target.route.server_identity, client_identity=self.pools.contexts.credentials().identity)
            except MeshError as exc:
                self._finish(prepared, target.route, _Progress(), started, trace, "egress_denied", exc, None)
                raise
        attach_token = self.token is not None and "Authorization" not in prepared.headers
        response = self._attempts(prepared, target, options, attach_token, started, trace)
        history: list[requests.Response] = []
        while options.allow_redirects and is_redirect(response):
            nxt = follow_redirect(prepared, response)
            if nxt is None:
                break
            if len(history) >= MAX_REDIRECTS:
                response.close()
                raise TransportError(
                    f"{prepared.method} {redact_url(prepared.url)} was redirected more than {MAX_REDIRECTS} times "
                    "(a redirect loop).",
                    hint="Fix the server's redirects, or pass allow_redirects=False to see the first one.",
                )
            response.content  # noqa: B018 - a redirect's body is small; read it so the connection is reused
            history.append(response)
            prepared = nxt
            response = self._attempts(prepared, target, options, attach_token, self.clock.monotonic(), trace)
        response.history = history
        return response

    # -- the attempts -----------------------------------------------------------------------
    def _attempts(self, prepared: requests.PreparedRequest, target: Target, options: RequestOptions,
                  attach_token: bool, started: float, trace: TraceContext) -> MeshResponse:
        method = prepared.method or "GET"
        may_repeat = options.retry and self.retries.method_allows_retry(method, prepared.headers)
        replay = Replay(prepared)
        self.budget.record_request()
        progress = _Progress()
        route = target.route
        while True:
            number = len(progress.attempts) + 1
            # token and time budget first: a failure there must not leave a breaker probe claimed
            subject = self._attach_token(prepared) if attach_token else None
            try:
                timeout = self._attempt_timeout(options, prepared, route)
                route, endpoint = target.choose(progress.exclude)
            except MeshError as exc:
                self._finish(prepared, route, progress, started, trace, outcome_of_error(exc), exc, None)
                raise
            t0 = self.clock.monotonic()
            if endpoint is not None:
                endpoint.latency.start()
            caught: Exception | None = None
            try:
                response, peer = self._send_once(prepared, route, timeout, options)
            except Exception as exc:
                caught = exc
            except BaseException:  # KeyboardInterrupt in a notebook: give the breaker probe back
                if endpoint is not None:
                    endpoint.latency.finish()
                    endpoint.breaker.release()
                raise
            if caught is not None:
                failure = translate(caught, route, method, prepared.url, timeout)
                del caught  # the original (urllib3's, with the URL) must not become a chained context
                if endpoint is not None:
                    endpoint.latency.finish()
                    endpoint.breaker.record_failure()
                progress.attempts.append(AttemptRecord(
                    number, route.address, None, subject, None, outcome_of_error(failure.error),
                    type(failure.error).__name__, self.clock.monotonic() - t0))
                if self._retry_after_failure(failure, options, may_repeat, replay, number, method, prepared):
                    progress.exclude = endpoint
                    continue
                error = self._final_error(failure, options.deadline, prepared, route, progress, started)
                self._finish(prepared, route, progress, started, trace, outcome_of_error(error), error, None)
                raise error
            elapsed = self.clock.monotonic() - t0
            status = response.status_code
            if endpoint is not None:
                endpoint.latency.finish()
                endpoint.latency.observe(elapsed)
                if status >= 500:
                    endpoint.breaker.record_failure()
                else:
                    endpoint.breaker.record_success()
            progress.attempts.append(AttemptRecord(
                number, route.address, peer, subject, status,
                outcome_of_status(status, response.headers.get("l5d-proxy-error")), None, elapsed))
            if self._refresh_after_401(response, attach_token, progress, replay, prepared):
                continue
            if self._retry_after_status(response, options, may_repeat, replay, number, method, prepared):
                progress.exclude = endpoint if status >= 500 else None
                continue
            if options.stream:
                self._watch_streamed_body(response, route, method, prepared, timeout, options.deadline)
            outcome = outcome_of_status(status, response.headers.get("l5d-proxy-error"))
            self._finish(prepared, route, progress, started, trace, outcome, None, response)
            return response

    def _send_once(self, prepared: requests.PreparedRequest, route: Route, timeout: tuple[float, float],
                   options: RequestOptions) -> tuple[MeshResponse, PeerInfo | None]:
        """One attempt on the wire, and what its connection's handshake proved.

        Without ``stream`` the body is read now, under a watchdog that shuts the socket when the
        deadline passes (a trickling server cannot stretch the request past it).
        """
        t0 = self.clock.monotonic()
        sent = self.pools.send(route, prepared.method or "GET", prepared.path_url, prepared.headers,
                               prepared.body, timeout)
        response = build_response(prepared, sent.raw, self.clock.monotonic() - t0)
        if options.stream:
            return response, sent.peer
        watchdog = BodyWatchdog.start(sent.raw, options.deadline.remaining())
        try:
            response.content  # noqa: B018 - read the body now, under the watchdog
        except BaseException:
            response.close()
            raise
        finally:
            if watchdog is not None:
                watchdog.cancel()
        return response, sent.peer

    def _watch_streamed_body(self, response: MeshResponse, route: Route, method: str,
                             prepared: requests.PreparedRequest, timeout: tuple[float, float],
                             deadline: Deadline) -> None:
        """``stream=True``: the caller reads the body later, still bounded by the deadline, and
        gets meshclient errors (not urllib3's) if the read fails."""

        def read_error(exc: BaseException) -> Exception:
            failure = translate(exc, route, method, prepared.url, timeout)
            return self._deadline_error(failure, deadline, prepared, route)

        response.watch_body(BodyWatchdog.start(response.raw, deadline.remaining()), read_error)

    # -- decisions --------------------------------------------------------------------------
    def _attach_token(self, prepared: requests.PreparedRequest) -> str | None:
        assert self.token is not None
        tok = self.token.token()
        prepared.headers["Authorization"] = tok.authorization
        return tok.subject

    def _attempt_timeout(self, options: RequestOptions, prepared: requests.PreparedRequest,
                         route: Route) -> tuple[float, float]:
        remaining = options.deadline.remaining()
        if remaining is None:
            return options.timeout
        if remaining <= 0:
            raise DeadlineExceededError(
                f"{prepared.method} {redact_url(prepared.url)} ({route.server_identity}) ran out of its deadline.",
                hint="Raise deadline= or make the server answer faster.",
            )
        return min(options.timeout[0], remaining), min(options.timeout[1], remaining)

    def _retry_after_failure(self, failure: Failure, options: RequestOptions, may_repeat: bool, replay: Replay,
                             number: int, method: str, prepared: requests.PreparedRequest) -> bool:
        # Failures before the request was sent are retried whatever the method; after that
        # (reset mid-response, response timeout) only requests that may be repeated.
        if not (failure.transient and options.retry and (failure.before_send or may_repeat)
                and not isinstance(failure.error, ServerIdentityError) and replay.possible
                and number < self.retries.max_attempts):
            return False
        delay = self.retries.backoff(number - 1)
        if not (options.deadline.allows(delay) and self.budget.try_withdraw()):
            return False
        log.debug("retrying %s %s after %s (attempt %d)", method, redact_url(prepared.url),
                  type(failure.error).__name__, number)
        self.clock.sleep(delay)
        return replay.rewind()

    def _retry_after_status(self, response: MeshResponse, options: RequestOptions, may_repeat: bool, replay: Replay,
                            number: int, method: str, prepared: requests.PreparedRequest) -> bool:
        status = response.status_code
        policy = self.retries
        if not (status in policy.retry_statuses and may_repeat and replay.possible and number < policy.max_attempts):
            return False
        delay = policy.backoff(number - 1)
        if status in RETRY_AFTER_STATUSES:
            hinted = parse_retry_after(response.headers.get("Retry-After"))
            if hinted is not None:
                delay = hinted
        if not (delay <= policy.max_retry_after and options.deadline.allows(delay) and self.budget.try_withdraw()):
            return False
        log.debug("retrying %s %s after status %d (attempt %d)", method, redact_url(prepared.url), status, number)
        response.close()
        self.clock.sleep(delay)
        if replay.rewind():
            return True
        raise TransportError(
            f"{method} {redact_url(prepared.url)}: the request body could not be rewound for a retry "
            f"after status {status}.",
            hint="Pass bytes or a seekable file as the body.",
        )

    def _refresh_after_401(self, response: MeshResponse, attach_token: bool, progress: _Progress, replay: Replay,
                           prepared: requests.PreparedRequest) -> bool:
        """One forced token refresh on a 401, outside the retry budget."""
        if response.status_code != 401 or not attach_token or progress.token_refreshed or not replay.possible:
            return False
        assert self.token is not None
        progress.token_refreshed = True
        if self.token.on_unauthorized(prepared.headers.get("Authorization")) and replay.rewind():
            response.close()
            return True
        return False

    def _deadline_error(self, failure: Failure, deadline: Deadline, prepared: requests.PreparedRequest,
                        route: Route) -> MeshError:
        timed_out = isinstance(failure.error, MeshTimeoutError) or (
            type(failure.error) is TransportError  # the watchdog closed a trickling body
        )
        if timed_out and deadline.passed():
            return DeadlineExceededError(
                f"{prepared.method} {redact_url(prepared.url)} ({route.server_identity}) did not complete within "
                "its deadline (all attempts together).",
                hint="Raise deadline= or make the server answer faster.",
            )
        return failure.error

    def _final_error(self, failure: Failure, deadline: Deadline, prepared: requests.PreparedRequest,
                     route: Route, progress: _Progress, started: float) -> MeshError:
        """The error to raise, saying how many attempts were made over how long when more than one."""
        error = self._deadline_error(failure, deadline, prepared, route)
        count = len(progress.attempts)
        if count > 1 and type(error).__init__ is MeshError.__init__:
            spent = self.clock.monotonic() - started
            return type(error)(f"{error.message} ({count} attempts over {spent:.1f} s)", hint=error.hint)
        return error

    # -- the record -------------------------------------------------------------------------
    def _finish(self, prepared: requests.PreparedRequest, route: Route, progress: _Progress, started: float,
                trace: TraceContext, outcome: str, error: MeshError | None,
                response: MeshResponse | None) -> RequestRecord:
        record = RequestRecord(
            method=prepared.method or "",
            url=redact_url(prepared.url),
            client_identity=self.client_identity(),
            server_identity=str(route.server_identity),
            address=route.address,
            attempts=tuple(progress.attempts),
            outcome=outcome,
            trace_id=_trace_id(prepared, trace),
            bytes_sent=body_size(prepared),
            bytes_received=received_size(response),
            seconds=self.clock.monotonic() - started,
            idempotency_key=prepared.headers.get("Idempotency-Key"),
            error=type(error).__name__ if error is not None else None,
        )
        if response is not None:
            response.mesh = record
        if self.audit is not None:
            try:
                self.audit(audit_event(record))
            except Exception:
                log.exception("the audit sink raised; the request itself completed")
        return record


def _trace_id(prepared: requests.PreparedRequest, trace: TraceContext) -> str:
    parts = prepared.headers.get("traceparent", "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else trace.trace_id
