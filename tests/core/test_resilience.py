"""Fault injection against real mTLS handshakes on loopback: retries, the retry budget,
idempotency, deadlines, circuit breaking, Retry-After, token refresh and direct mode.

Every server counts what reached it on its side (``tests/core/fault_server.py``), so "sent
exactly once" is the server's word, not the client's. Time does not pass by sleeping: the
client's back-off sleeps are recorded instead of slept (``sleeps`` fixture) where the length
matters, and breaker back-offs run on a fake clock. The only timing assertions are loose upper
bounds on deadlines.
"""

from __future__ import annotations

import io
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from fault_server import (
    DROP_BEFORE_HANDSHAKE,
    DROP_DURING_HANDSHAKE,
    RST_BEFORE_HANDSHAKE,
    RST_DURING_HANDSHAKE,
    Action,
    CloseMidResponse,
    FaultServer,
    Hold,
    ResetMidResponse,
    Respond,
    Stall,
    Trickle,
    fault_servers,
)

from meshclient import Credentials, MeshClient
from meshclient.audit import AuditEvent
from meshclient.errors import (
    DeadlineExceededError,
    MeshError,
    MeshTimeoutError,
    NoEndpointAvailableError,
    TLSHandshakeError,
    TransportError,
)
from meshclient.tokens.base import BaseTokenProvider, Token
from meshclient.tokens.errors import TokenUnavailableError
from meshclient.transport.balancer import PeakEwma, StaticEndpoints
from meshclient.transport.breaker import BreakerSettings
from meshclient.transport.budget import RetryBudget
from meshclient.transport.header import ALPN, TransportHeader
from meshclient.transport.retry import RetryPolicy
from meshclient.transport.timing import Clock
from meshclient_sandbox.tls import build_server_context

SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"  # tests/conftest.py's server
FAST = RetryPolicy(min_backoff=0.001, max_backoff=0.002)  # keep real back-off sleeps negligible


# -- fixtures -----------------------------------------------------------------------------------------
@pytest.fixture
def server_ctx(server_creds: Credentials) -> Any:
    return build_server_context(server_creds)


@pytest.fixture
def server(server_ctx: Any) -> Iterator[FaultServer]:
    with FaultServer(server_ctx) as s:
        yield s


@pytest.fixture
def make_client(client_creds: Credentials, request: pytest.FixtureRequest) -> Iterator[Callable[..., MeshClient]]:
    clients: list[MeshClient] = []
    # a test that takes ``sleeps`` gets clients whose back-off sleeps it records
    clock = request.getfixturevalue("sleeps").clock if "sleeps" in request.fixturenames else None

    def make(**kwargs: Any) -> MeshClient:
        kwargs.setdefault("retries", FAST)
        kwargs.setdefault("timeout", (5.0, 5.0))
        kwargs.setdefault("clock", clock)
        client = MeshClient(client_creds, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


class Sleeps(list):  # type: ignore[type-arg]
    """The client's back-off sleeps, recorded instead of slept (the client's injected
    :class:`Clock`); ``on_sleep`` runs at each one."""

    on_sleep: Callable[[float], None] | None = None

    def sleep(self, seconds: float) -> None:
        self.append(seconds)
        if self.on_sleep is not None:
            self.on_sleep(seconds)

    @property
    def clock(self) -> Clock:
        return Clock(monotonic=time.monotonic, sleep=self.sleep)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


class FakeClock:
    def __init__(self, now: float = 10_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Tokens(BaseTokenProvider):
    """A real provider (meshclient.tokens' lifecycle) whose source hands out ``tok-1``, ``tok-2``...
    and counts fetches and invalidations; ``fail_next`` makes the next ``token()`` calls fail
    the way an unreachable token endpoint does."""

    def __init__(self) -> None:
        super().__init__()
        self.fetches = 0
        self.invalidations = 0
        self.fail_next = 0

    def _fetch(self) -> Token:
        self.fetches += 1
        return Token.from_value(f"tok-{self.fetches}", subject="svc-notebook")

    def token(self) -> Token:
        if self.fail_next:
            self.fail_next -= 1
            raise TokenUnavailableError("the token endpoint did not answer (test)")
        return super().token()

    def invalidate(self, token: Token | None = None) -> None:
        self.invalidations += 1
        super().invalidate(token)


# -- the retry budget under a 503 storm -------------------------------------------------------------------
def test_503_storm_retries_stay_within_the_budget(server: FaultServer, make_client: Callable[..., MeshClient]) -> None:
    # A frozen budget clock keeps every request in one 10 s window: the allowance is exactly
    # 20 % of the requests + 10/s * 10 s, whatever the speed of the machine.
    budget = RetryBudget(retry_ratio=0.2, min_retries_per_second=10, ttl=10, clock=lambda: 7_000.05)
    client = make_client(retry_budget=budget)
    server.default = Respond(503, body=b"busy")
    requests_sent = 200

    def burst(n: int) -> list[int]:
        return [client.get(f"{server.url}/storm", server_identity=SERVER_ID).status_code for _ in range(n)]

    with ThreadPoolExecutor(4) as pool:
        statuses = [s for chunk in pool.map(burst, [50] * 4) for s in chunk]

    assert statuses == [503] * requests_sent  # the last answer is returned once retries are spent
    seen = server.attempts("GET", "/storm")
    snap = budget.snapshot()
    assert snap["requests"] == requests_sent
    assert seen == requests_sent + snap["retries"]  # every retry the budget paid for reached the server
    assert seen > requests_sent  # retries did happen
    assert seen <= requests_sent * 1.2 + 10 * 10  # ...but no more than the budget: 340, not max_attempts' 600
    assert snap["retries"] == math.floor(snap["allowed"])  # the budget, not max_attempts, was the limit


def test_budget_is_shared_and_refuses_once_spent(server: FaultServer, make_client: Callable[..., MeshClient]) -> None:
    budget = RetryBudget(retry_ratio=0.0, min_retries_per_second=0.5, ttl=10, clock=lambda: 7_000.05)  # 5 retries
    client = make_client(retry_budget=budget)
    server.default = Respond(503)
    for _ in range(10):
        assert client.get(f"{server.url}/x", server_identity=SERVER_ID).status_code == 503
    assert server.attempts() == 10 + 5


# -- what may be sent twice ---------------------------------------------------------------------------------
POST_FAULTS = {
    "503": (Respond(503), None),
    "reset-mid-response": (ResetMidResponse(), TransportError),
    "stall": (Stall(), MeshTimeoutError),
}


@pytest.mark.parametrize("fault", list(POST_FAULTS))
def test_post_without_idempotency_key_is_sent_exactly_once(
    fault: str, server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    action, error = POST_FAULTS[fault]
    events: list[AuditEvent] = []
    client = make_client(timeout=(5.0, 0.5), audit=events.append)
    server.push(action, path="/submit")
    if error is None:
        assert client.post(f"{server.url}/submit", data=b'{"n": 1}', server_identity=SERVER_ID).status_code == 503
    else:
        with pytest.raises(error):
            client.post(f"{server.url}/submit", data=b'{"n": 1}', server_identity=SERVER_ID)
    assert server.wait_for(lambda s: s.attempts("POST", "/submit") >= 1)
    assert server.attempts("POST", "/submit") == 1
    assert server.bodies("POST", "/submit") == [b'{"n": 1}']
    assert events[-1].attempts == 1  # and the client made no second attempt that could still be on its way


def test_post_with_idempotency_key_is_retried_after_503(
    server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    client = make_client()
    server.push(Respond(503), path="/submit")
    response = client.post(f"{server.url}/submit", data=b'{"n": 1}', headers={"Idempotency-Key": "job-42-part-7"},
                           server_identity=SERVER_ID)
    assert response.status_code == 200
    assert server.attempts("POST", "/submit") == 2
    assert server.bodies("POST", "/submit") == [b'{"n": 1}', b'{"n": 1}']
    assert [r.headers["idempotency-key"] for r in server.requests] == ["job-42-part-7"] * 2


@pytest.mark.parametrize("fault", ["reset-mid-response", "stall"])
def test_post_with_idempotency_key_is_retried_after_a_reset_or_a_read_timeout(
    fault: str, server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    """Requests that may be repeated (idempotent method or Idempotency-Key) are retried after a reset
    mid-response and after a response timeout (Linkerd retries response-headers timeouts, §5.1)."""
    action, _ = POST_FAULTS[fault]
    client = make_client(timeout=(5.0, 0.5))
    server.push(action, path="/submit")
    response = client.post(f"{server.url}/submit", data=b'{"n": 1}', headers={"Idempotency-Key": "job-42-part-7"},
                           server_identity=SERVER_ID)
    assert response.status_code == 200
    assert server.attempts("POST", "/submit") == 2
    assert server.bodies("POST", "/submit") == [b'{"n": 1}', b'{"n": 1}']


@pytest.mark.parametrize("action", [Respond(503), ResetMidResponse()], ids=["503", "reset-mid-response"])
@pytest.mark.parametrize("offset", [0, 10])
def test_put_with_a_seekable_file_is_rewound_for_the_retry(
    action: Action, offset: int, server: FaultServer, make_client: Callable[..., MeshClient], tmp_path: Path
) -> None:
    """A seekable body is rewound to where it started for the retry, after a 503 or a reset."""
    content = os.urandom(200 * 1024)  # larger than Linkerd's 64 KiB limit: replayable, so retried anyway
    path = tmp_path / "model.bin"
    path.write_bytes(content)
    client = make_client()
    server.push(action, path="/artifacts/model.bin")
    with path.open("rb") as fh:
        fh.seek(offset)
        response = client.put(f"{server.url}/artifacts/model.bin", data=fh, server_identity=SERVER_ID)
    assert response.status_code == 200
    assert server.bodies("PUT", "/artifacts/model.bin") == [content[offset:]] * 2


@pytest.mark.parametrize("method", ["PUT", "POST"])
@pytest.mark.parametrize("action", [Respond(503), ResetMidResponse()], ids=["503", "reset-mid-response"])
def test_a_generator_body_is_never_retried(
    method: str, action: Action, server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    client = make_client()
    server.push(action, path="/stream")

    def chunks() -> Iterator[bytes]:
        yield b"part-1;"
        yield b"part-2;"

    headers = {"Idempotency-Key": "k-1"}  # even a key cannot make a consumed stream replayable
    if isinstance(action, Respond):
        response = client.request(method, f"{server.url}/stream", data=chunks(), headers=headers,
                                  server_identity=SERVER_ID)
        assert response.status_code == 503
    else:
        with pytest.raises(TransportError):
            client.request(method, f"{server.url}/stream", data=chunks(), headers=headers, server_identity=SERVER_ID)
    assert server.wait_for(lambda s: s.attempts(method, "/stream") >= 1)
    assert server.attempts(method, "/stream") == 1
    assert server.bodies(method, "/stream") == [b"part-1;part-2;"]


@pytest.mark.parametrize("action", [ResetMidResponse(), CloseMidResponse()], ids=["rst", "fin"])
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_body_cut_short_is_an_error_never_a_short_success(
    action: Action, method: str, server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    """Regression, seen in the Databricks 15.4 compat run (transport/connections.py): urllib3 1.26's
    ``HTTPResponse`` defaults to ``enforce_content_length=False`` (2.x: True) and requests 2.31
    does not set it, so when the server's connection ends after 100 of 4096 announced bytes the
    client returns **200 with a truncated body** (silent data corruption for artifacts/results),
    and never retries. Fix: give both pool classes a response class that enforces it, e.g.
    ``class _StrictHTTPResponse(urllib3.response.HTTPResponse): def __init__(self, *a, **kw):
    kw.setdefault("enforce_content_length", True); super().__init__(*a, **kw)`` and
    ``ResponseCls = _StrictHTTPResponse`` on ``MeshHTTPSConnectionPool`` and
    ``DirectHTTPSConnectionPool``."""
    client = make_client()
    server.push(action)
    with pytest.raises(TransportError, match="cut off"):
        client.request(method, f"{server.url}/artifact", data=b"x" if method == "POST" else None,
                       server_identity=SERVER_ID, retry=False)


# -- failures before anything was sent ---------------------------------------------------------------------
@pytest.mark.parametrize("fault", [DROP_BEFORE_HANDSHAKE, DROP_DURING_HANDSHAKE, RST_BEFORE_HANDSHAKE,
                                   RST_DURING_HANDSHAKE])
def test_handshake_drop_is_retried_even_for_post(
    fault: str, server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    """Regression (transport/failures.py, translate): an RST while the TLS
    handshake runs surfaces as ``ConnectionError(ProtocolError('Connection aborted.',
    ConnectionResetError))``, which is neither "refused" nor TLS, so it is classified as "the
    connection broke" with ``before_send=False`` and a POST is not retried although nothing was
    sent. Fix: in ``MeshHTTPSConnection.connect`` (transport/connections.py) tag any ``OSError`` raised
    by ``super().connect()`` (TCP connect or handshake: before any request byte), e.g.
    ``exc.mesh_before_send = True; raise``, and in ``translate``'s ``ConnectionError`` branch treat
    ``any(getattr(e, "mesh_before_send", False) for e in _chain(exc))`` like "refused"
    (``ConnectError``, ``before_send=True, transient=True``)."""
    client = make_client()
    server.push_connections(fault)
    response = client.post(f"{server.url}/submit", data=b"payload", server_identity=SERVER_ID)
    assert response.status_code == 200
    assert response.mesh.attempt_count == 2  # type: ignore[union-attr]
    assert server.tcp_connections == 2
    assert server.attempts("POST", "/submit") == 1
    assert server.bodies("POST", "/submit") == [b"payload"]


def test_handshake_drops_give_up_after_max_attempts(server: FaultServer, make_client: Callable[..., MeshClient]) -> None:
    client = make_client()
    server.connection_default = DROP_DURING_HANDSHAKE
    with pytest.raises(TLSHandshakeError) as info:
        client.post(f"{server.url}/submit", data=b"payload", server_identity=SERVER_ID)
    assert SERVER_ID in str(info.value)
    assert server.tcp_connections == 3  # max_attempts
    assert server.attempts() == 0


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_connection_refused_is_retried_for_post_and_succeeds_when_the_server_is_back(
    server_ctx: Any, make_client: Callable[..., MeshClient], sleeps: Sleeps
) -> None:
    port = _unused_port()  # nothing listens there: the first attempt is refused
    revived = FaultServer(server_ctx, port=port)
    started: list[bool] = []

    def recover(_: float) -> None:  # the server comes back while the client backs off
        if not started:
            started.append(True)
            revived.start()

    sleeps.on_sleep = recover
    client = make_client()
    try:
        response = client.post(f"https://127.0.0.1:{port}/submit", data=b"payload", server_identity=SERVER_ID)
        assert response.status_code == 200
        assert response.mesh.attempt_count == 2  # type: ignore[union-attr]
        assert revived.attempts("POST", "/submit") == 1
        assert len(sleeps) == 1
    finally:
        revived.stop()


# -- deadlines ---------------------------------------------------------------------------------------------
def test_deadline_holds_against_a_stalling_server(server: FaultServer, make_client: Callable[..., MeshClient]) -> None:
    client = make_client(timeout=(5.0, 5.0))
    server.default = Stall()
    started = time.monotonic()
    with pytest.raises(MeshTimeoutError) as info:
        client.get(f"{server.url}/slow", server_identity=SERVER_ID, deadline=1.0)
    elapsed = time.monotonic() - started
    assert isinstance(info.value, DeadlineExceededError)
    assert elapsed < 1.0 + 2.0  # loose: the point is "not the 5 s read timeout, not 3 attempts"
    assert server.attempts() >= 1


def test_deadline_bounds_retries_of_short_attempts(server: FaultServer, make_client: Callable[..., MeshClient]) -> None:
    client = make_client(timeout=(5.0, 0.3), retries=RetryPolicy(max_attempts=50, min_backoff=0.001, max_backoff=0.002))
    server.default = Stall()
    started = time.monotonic()
    with pytest.raises(MeshTimeoutError):
        client.get(f"{server.url}/slow", server_identity=SERVER_ID, deadline=1.0)
    assert time.monotonic() - started < 1.0 + 2.0
    assert 1 <= server.attempts() < 50


def test_deadline_holds_against_a_trickling_body(server: FaultServer, make_client: Callable[..., MeshClient]) -> None:
    """Regression (client.py, MeshClient._attempts): the deadline is only turned into per-socket-operation
    timeouts (``_attempt_timeout``), and requests reads the body inside ``Session.send`` with
    ``stream=False``; a server that sends headers and then one byte every 0.2 s never trips a read
    timeout, so ``deadline=1.0`` returns after the whole 4.5 s body. Fix: send with ``stream=True``
    and read the body in ``_attempts`` (``response.raw.stream(64 KiB)``) checking ``deadline_at``
    between chunks (and setting the socket timeout to the time left), raising
    ``DeadlineExceededError``; then set ``response._content`` for non-streaming callers."""
    client = make_client(timeout=(5.0, 5.0))
    server.default = Trickle(body=b"x" * 30, interval=0.15)
    started = time.monotonic()
    with pytest.raises(MeshTimeoutError):
        client.get(f"{server.url}/trickle", server_identity=SERVER_ID, deadline=1.0)
    assert time.monotonic() - started < 1.0 + 2.0


def test_retry_after_longer_than_the_deadline_is_not_waited_for(
    server: FaultServer, make_client: Callable[..., MeshClient], sleeps: Sleeps
) -> None:
    client = make_client()
    server.default = Respond.with_headers(503, {"Retry-After": "5"})
    response = client.get(f"{server.url}/x", server_identity=SERVER_ID, deadline=2.0)
    assert response.status_code == 503
    assert sleeps == []
    assert server.attempts() == 1


# -- circuit breaking across instances of one identity ---------------------------------------------------
class FlatLatency(PeakEwma):
    """Equal cost for every endpoint, so P2C picks uniformly: the breaker is what is under test
    here (how latency steers the choice is test_balancer's subject)."""

    def observe(self, rtt: float) -> None:
        pass

    def cost(self) -> float:
        return 0.030 * (self.pending + 1)  # exactly equal: no float drift from decay to break ties


def _service(client: MeshClient, servers: list[FaultServer], clock: FakeClock,
             settings: BreakerSettings | None = None) -> tuple[Any, StaticEndpoints]:
    endpoints = StaticEndpoints([s.address for s in servers], servers[0].port, breaker=settings, clock=clock)
    for ep in endpoints.current():
        ep.latency = FlatLatency(clock=clock)
    return client.service(servers[0].url, SERVER_ID, endpoints=endpoints), endpoints


def _drive(svc: Any, until: Callable[[], bool], limit: int = 400) -> int:
    """Send GETs (all must succeed) until ``until()``; return how many were sent."""
    for sent in range(limit):
        if until():
            return sent
        assert svc.get("/work").status_code == 200
    raise AssertionError(f"condition not reached after {limit} requests")


@pytest.mark.parametrize("failure", ["503", "handshake-drop"])
def test_broken_endpoint_is_ejected_probed_once_and_readmitted(
    failure: str, server_ctx: Any, make_client: Callable[..., MeshClient]
) -> None:
    clock = FakeClock()
    client = make_client()
    with fault_servers(server_ctx, 3) as servers:
        bad = servers[0]
        if failure == "503":
            bad.default = Respond(503)

            def tries() -> int:
                return bad.attempts()
        else:
            bad.connection_default = DROP_BEFORE_HANDSHAKE

            def tries() -> int:
                return bad.tcp_connections

        svc, endpoints = _service(client, servers, clock)
        breaker = endpoints.current()[0].breaker

        # 7 consecutive failures open it; every request still succeeds (retried on another instance)
        _drive(svc, lambda: tries() >= 7)
        assert tries() == 7
        assert breaker.state == "open"
        for _ in range(60):
            assert svc.get("/work").status_code == 200
        assert tries() == 7  # ejected: no traffic
        clock.advance(0.49)  # shorter than the shortest first back-off (1 s - 50 %)
        for _ in range(30):
            assert svc.get("/work").status_code == 200
        assert tries() == 7

        # back-off over: exactly one probe
        clock.advance(1.02)  # 1.51 s > the longest first back-off (1 s + 50 %)
        if failure == "503":
            release = threading.Event()
            bad.default = Hold(release, Respond(503))  # keep the probe in flight while we look
            prober_results: list[int] = []

            def prober() -> None:
                for _ in range(400):
                    if bad.attempts() >= 8:
                        return
                    prober_results.append(svc.get("/work").status_code)

            thread = threading.Thread(target=prober)
            thread.start()
            try:
                assert bad.wait_for(lambda s: s.attempts() >= 8, timeout=10)
                for _ in range(40):  # concurrent with the probe in flight
                    assert svc.get("/work").status_code == 200
                assert bad.attempts() == 8
            finally:
                release.set()
                thread.join(10)
            assert not thread.is_alive()
            assert set(prober_results) == {200}
        else:
            _drive(svc, lambda: tries() >= 8)
        assert tries() == 8
        assert breaker.state == "open"  # the probe failed: open again, for longer (2 s ± 50 %)
        for _ in range(30):
            assert svc.get("/work").status_code == 200
        clock.advance(0.99)  # shorter than the shortest second back-off
        for _ in range(30):
            assert svc.get("/work").status_code == 200
        assert tries() == 8

        # healthy again: the next probe succeeds and it takes its share of traffic again
        bad.default = Respond()
        bad.connection_default = "accept"
        clock.advance(2.02)  # 3.01 s > the longest second back-off
        _drive(svc, lambda: bad.attempts() >= 1 if failure != "503" else bad.attempts() >= 9)
        assert breaker.state == "closed"
        before = bad.attempts()
        for _ in range(90):
            assert svc.get("/work").status_code == 200
        assert bad.attempts() - before >= 10  # roughly a third of 90


def test_all_endpoints_open_fails_fast_without_contacting_them(
    server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    clock = FakeClock()
    client = make_client(retries=RetryPolicy.disabled())
    server.default = Respond(503)
    svc, endpoints = _service(client, [server], clock)
    for _ in range(7):
        assert svc.get("/work").status_code == 503
    with pytest.raises(NoEndpointAvailableError):
        svc.get("/work")
    assert server.attempts() == 7


def test_a_failed_token_fetch_does_not_leave_an_endpoint_stuck_in_probation(
    server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    """Regression (client.py, MeshClient._attempts): ``target.choose()`` claims the breaker's single
    probation probe *before* ``_attach_token`` and ``_attempt_timeout`` run; when either raises
    (the IdP is down, the deadline is already spent, or a KeyboardInterrupt in a notebook), the
    probe is never recorded as a success or a failure, ``_probe_in_flight`` stays True and the
    endpoint receives no request ever again (NoEndpointAvailableError forever for a one-endpoint
    service). Fix: fetch the token and compute the attempt timeout before ``target.choose``, and
    wrap the rest of the attempt in try/finally so an attempt that ends without
    record_success/record_failure releases the probe (e.g. a new ``CircuitBreaker.release()``
    that clears ``_probe_in_flight``) and calls ``endpoint.latency.finish()`` if it was started."""
    clock = FakeClock()
    tokens = Tokens()
    client = make_client(retries=RetryPolicy.disabled(), token=tokens)
    svc, endpoints = _service(client, [server], clock,
                              BreakerSettings(consecutive_failures=1, min_backoff=1, max_backoff=1, jitter=0))
    server.push(Respond(503))
    assert svc.get("/work").status_code == 503  # opens the breaker
    clock.advance(1.0)  # probation
    tokens.fail_next = 1
    with pytest.raises(TokenUnavailableError):
        svc.get("/work")  # the probe's token could not be fetched: nothing was sent
    clock.advance(3600)
    assert svc.get("/work").status_code == 200  # today: NoEndpointAvailableError, for ever
    assert server.attempts() == 2


# -- Retry-After ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_seconds_is_honoured(
    status: int, server: FaultServer, make_client: Callable[..., MeshClient], sleeps: Sleeps
) -> None:
    client = make_client()
    server.push(Respond.with_headers(status, {"Retry-After": "7"}))
    response = client.get(f"{server.url}/x", server_identity=SERVER_ID)
    assert response.status_code == 200
    assert sleeps == [7.0]
    assert server.attempts() == 2


def test_retry_after_http_date_is_honoured(
    server: FaultServer, make_client: Callable[..., MeshClient], sleeps: Sleeps
) -> None:
    import email.utils

    client = make_client()
    server.on_request = lambda req: (
        Respond.with_headers(429, {"Retry-After": email.utils.formatdate(time.time() + 5, usegmt=True)})
        if server.attempts() == 1 else None
    )
    assert client.get(f"{server.url}/x", server_identity=SERVER_ID).status_code == 200
    assert len(sleeps) == 1 and 3.0 <= sleeps[0] <= 6.0
    assert server.attempts() == 2


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_beyond_the_maximum_returns_the_answer_as_it_is(
    status: int, server: FaultServer, make_client: Callable[..., MeshClient], sleeps: Sleeps
) -> None:
    client = make_client()
    server.push(Respond.with_headers(status, {"Retry-After": "11"}, body=b"come back later"))
    response = client.get(f"{server.url}/x", server_identity=SERVER_ID)
    assert response.status_code == status
    assert response.headers["Retry-After"] == "11"
    assert response.content == b"come back later"
    assert sleeps == []
    assert server.attempts() == 1


def test_max_retry_after_is_configurable(
    server: FaultServer, make_client: Callable[..., MeshClient], sleeps: Sleeps
) -> None:
    client = make_client(retries=RetryPolicy(max_retry_after=30, min_backoff=0.001, max_backoff=0.002))
    server.push(Respond.with_headers(429, {"Retry-After": "11"}))
    assert client.get(f"{server.url}/x", server_identity=SERVER_ID).status_code == 200
    assert sleeps == [11.0]


def test_retry_after_on_other_statuses_is_ignored(
    server: FaultServer, make_client: Callable[..., MeshClient], sleeps: Sleeps
) -> None:
    client = make_client()
    server.push(Respond.with_headers(502, {"Retry-After": "7"}), Respond.with_headers(429, {}))
    assert client.get(f"{server.url}/x", server_identity=SERVER_ID).status_code == 200
    assert len(sleeps) == 2 and all(s <= 0.002 for s in sleeps)  # the policy's back-off both times
    assert server.attempts() == 3


def test_a_malformed_retry_after_does_not_crash_the_request(
    server: FaultServer, make_client: Callable[..., MeshClient], sleeps: Sleeps
) -> None:
    """Regression: the header byte 0xB2 ('²' in latin-1) passed ``str.isdigit()`` and ``float('²')``
    raised a bare ValueError out of ``client.get`` (see test_retry_policy.py)."""
    client = make_client()
    server.push(Respond.with_headers(503, {"Retry-After": "\xb2"}))
    assert client.get(f"{server.url}/x", server_identity=SERVER_ID).status_code == 200


# -- 401 and the token provider ----------------------------------------------------------------------------
def test_401_invalidates_the_token_once_and_retries_once(
    server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    tokens = Tokens()
    budget = RetryBudget(clock=lambda: 7_000.05)
    client = make_client(token=tokens, retry_budget=budget)
    server.push(Respond(401))
    assert client.post(f"{server.url}/x", data=b"body", server_identity=SERVER_ID).status_code == 200
    assert tokens.invalidations == 1
    assert tokens.fetches == 2
    assert [r.headers["authorization"] for r in server.requests] == ["Bearer tok-1", "Bearer tok-2"]
    assert server.bodies() == [b"body", b"body"]
    assert budget.snapshot()["retries"] == 0  # the forced refresh is not a budgeted retry


def test_a_persistent_401_is_returned_after_one_refresh(
    server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    tokens = Tokens()
    client = make_client(token=tokens)
    server.default = Respond(401)
    assert client.get(f"{server.url}/x", server_identity=SERVER_ID).status_code == 401
    assert tokens.invalidations == 1
    assert server.attempts() == 2


def test_401_without_a_token_provider_is_returned(server: FaultServer, make_client: Callable[..., MeshClient]) -> None:
    client = make_client()
    server.push(Respond(401))
    assert client.get(f"{server.url}/x", server_identity=SERVER_ID).status_code == 401
    assert server.attempts() == 1


# -- direct mode ---------------------------------------------------------------------------------------------
@pytest.fixture
def direct_server(server_creds: Credentials) -> Iterator[FaultServer]:
    with FaultServer(build_server_context(server_creds, alpn=[ALPN])) as s:
        yield s


def test_direct_mode_names_the_application_port(
    direct_server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    client = make_client()
    for _ in range(3):
        response = client.get("https://127.0.0.1:8080/predict", server_identity=SERVER_ID,
                              direct=direct_server.address)
        assert response.status_code == 200
    assert direct_server.transport_headers == [TransportHeader(port=8080, name="", session_protocol="http1")]
    assert direct_server.tcp_connections == 1  # one header per connection, then keep-alive
    assert [(r.alpn, r.transport_header) for r in direct_server.requests] == [
        (ALPN, TransportHeader(port=8080, name="", session_protocol="http1"))] * 3
    assert response.mesh.verified_peer.alpn == ALPN  # type: ignore[union-attr]


def test_direct_mode_through_a_service_names_each_endpoints_port(
    direct_server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    client = make_client()
    svc = client.service("https://scorer.ml-serving.svc.cluster.local:9090", SERVER_ID,
                         endpoints=["127.0.0.1:7070"], direct=direct_server.address)
    assert svc.post("/invocations", json={"x": 1}).status_code == 200
    assert [h.port for h in direct_server.transport_headers] == [7070]
    assert direct_server.requests[0].headers["host"] == "scorer.ml-serving.svc.cluster.local:9090"


def test_direct_mode_against_a_server_without_the_alpn_fails_clearly(
    server: FaultServer, make_client: Callable[..., MeshClient]
) -> None:
    client = make_client()
    with pytest.raises(TLSHandshakeError) as info:
        client.get("https://127.0.0.1:8080/predict", server_identity=SERVER_ID, direct=server.address)
    text = str(info.value)
    assert "direct mode" in text
    assert ALPN in text
    assert server.address in text
    assert server.wait_for(lambda s: s.handshakes + s.failed_handshakes >= 1)
    client.close()  # the server has seen everything this client will ever send
    assert server.wait_for(lambda s: s.open_connections == 0)
    assert server.tcp_connections == 1  # not retried: the peer will not change its mind
    assert server.attempts() == 0  # and no request byte was sent


# -- odds and ends ---------------------------------------------------------------------------------------------
def test_retries_can_be_switched_off_per_request(server: FaultServer, make_client: Callable[..., MeshClient]) -> None:
    client = make_client()
    server.default = Respond(503)
    assert client.get(f"{server.url}/x", server_identity=SERVER_ID, retry=False).status_code == 503
    assert server.attempts() == 1


def test_every_error_is_a_mesh_error(server: FaultServer, make_client: Callable[..., MeshClient]) -> None:
    client = make_client(timeout=(5.0, 0.3))
    server.push(ResetMidResponse(), ResetMidResponse(), ResetMidResponse(), Stall())
    with pytest.raises(MeshError):
        client.get(f"{server.url}/x", server_identity=SERVER_ID)
    with pytest.raises(MeshError):
        client.post(f"{server.url}/x", data=io.BytesIO(b"abc"), server_identity=SERVER_ID)
