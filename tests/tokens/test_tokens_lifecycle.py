"""The one token lifecycle: states, single-flight refresh, outages, 429, 401, background refresh.

All against the sandbox OIDCIssuer (a real HTTP token endpoint) with a fake clock shared by
issuer and provider, so expiry is reached by moving the clock, never by sleeping.
"""

from __future__ import annotations

import datetime as dt
import os
import threading

import pytest
from tokens_helpers import CLIENT_ID, LIFETIME, SECRET, FakeClock, GatedIssuer, RecordingSleep, wait_for

from meshclient import MeshError
from meshclient.tokens import (
    ClientCredentials,
    OutboundRetryPolicy,
    OutboundSettings,
    RefreshSettings,
    StaticToken,
    Token,
    TokenEndpointError,
    TokenError,
    TokenExpiredError,
    TokenProvider,
    TokenState,
    TokenUnavailableError,
)
from meshclient_sandbox.oidc import OIDCIssuer

STALE_AT = LIFETIME - min(300.0, 0.2 * LIFETIME)  # 240 s into a 300 s token


def provider(
    issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep, *, background: bool = False
) -> ClientCredentials:
    return ClientCredentials(
        token_url=issuer.token_url,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        refresh=RefreshSettings(clock=clock, sleep=sleeps, background=background),
    )


def join_refresh(p: ClientCredentials) -> None:
    t = p._async_thread
    if t is not None:
        t.join(30)
        assert not t.is_alive()


# ---- Token ---------------------------------------------------------------------------------


def test_token_repr_never_shows_the_value() -> None:
    t = Token("abcdefghijklmnop-secret-value", expires_at=dt.datetime(2030, 1, 1), subject="svc", audience="mesh")
    for text in (repr(t), str(t), f"{t}"):
        assert "abcdefghijklmnop-secret-value" not in text
        assert "svc" in text and "mesh" in text and "2030-01-01" in text
    assert t.expires_at is not None and t.expires_at.tzinfo is not None  # naive is read as UTC
    assert t.authorization == "Bearer abcdefghijklmnop-secret-value"


@pytest.mark.parametrize("bad", ["", "two words", "line\nbreak", "tab\t", "nul\x00", "é-non-ascii"])
def test_token_refuses_values_that_could_break_a_header(bad: str) -> None:
    with pytest.raises(TokenError) as info:
        Token(bad)
    if bad:
        assert bad not in str(info.value)


def test_every_provider_speaks_the_protocol(issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep) -> None:
    assert isinstance(StaticToken("abc.def"), TokenProvider)
    assert isinstance(provider(issuer, clock, sleeps), TokenProvider)
    assert issubclass(TokenError, MeshError)


def test_states_and_refresh_window(issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep) -> None:
    p = provider(issuer, clock, sleeps)
    assert p.state is TokenState.EXPIRED  # nothing cached yet
    first = p.token()
    assert p.state is TokenState.FRESH
    assert first.expires_in(clock()) == pytest.approx(LIFETIME)
    clock.advance(STALE_AT - 1)
    assert p.state is TokenState.FRESH and p.token() is first
    clock.advance(1)
    assert p.state is TokenState.STALE
    clock.advance(LIFETIME - STALE_AT)
    assert p.state is TokenState.EXPIRED
    assert issuer.token_requests == 1


def test_refresh_window_is_five_minutes_for_long_tokens(clock: FakeClock) -> None:
    # 1 h token: 20 % would be 12 min, the 5 min cap wins.
    t = Token("x.y", expires_at=dt.datetime.fromtimestamp(clock() + 3600, dt.timezone.utc))
    p = StaticToken("x.y", expires_at=t.expires_at, refresh=RefreshSettings(clock=clock))
    p.token()
    clock.advance(3600 - 300 - 1)
    assert p.state is TokenState.FRESH
    clock.advance(1)
    assert p.state is TokenState.STALE


# ---- single flight -------------------------------------------------------------------------


def test_sixteen_threads_cause_exactly_one_token_request(
    issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    p = provider(issuer, clock, sleeps)
    barrier = threading.Barrier(16)
    got: list[Token] = []
    lock = threading.Lock()

    def ask() -> None:
        barrier.wait()
        t = p.token()
        with lock:
            got.append(t)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 16 and len({t.value for t in got}) == 1
    assert issuer.token_requests == 1 and issuer.tokens_issued == 1


def test_threads_with_an_expired_token_wait_for_the_single_refresh(
    gated_issuer: GatedIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    p = provider(gated_issuer, clock, sleeps)
    old = p.token()
    clock.advance(LIFETIME)  # expired
    gated_issuer.gate.clear()
    got: list[Token] = []
    lock = threading.Lock()

    def ask() -> None:
        t = p.token()
        with lock:
            got.append(t)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    gated_issuer.wait_arrived(2)  # the initial request plus exactly one refresh in flight
    wait_for(lambda: waiters(p) == 15, what="the other threads to queue")
    assert got == []  # everyone is waiting: an expired token is never handed out
    gated_issuer.gate.set()
    for t in threads:
        t.join(30)
    assert len(got) == 16 and {t.value for t in got} != {old.value} and len({t.value for t in got}) == 1
    assert gated_issuer.arrived == 2 and gated_issuer.token_requests == 2


def test_threads_holding_a_stale_token_do_not_wait_and_it_refreshes_once(
    gated_issuer: GatedIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    p = provider(gated_issuer, clock, sleeps)
    old = p.token()
    clock.advance(STALE_AT + 1)
    gated_issuer.gate.clear()  # the refresh will hang at the issuer
    got: list[Token] = []
    lock = threading.Lock()

    def ask() -> None:
        t = p.token()
        with lock:
            got.append(t)

    threads = [threading.Thread(target=ask) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    # All 16 returned while the refresh is still stuck at the issuer: none of them waited.
    assert len(got) == 16 and all(t.value == old.value for t in got)
    gated_issuer.wait_arrived(2)
    gated_issuer.gate.set()
    join_refresh(p)
    new = p.token()
    assert new.value != old.value and p.state is TokenState.FRESH
    assert gated_issuer.arrived == 2 and gated_issuer.token_requests == 2


def test_an_expired_token_is_refreshed(issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep) -> None:
    p = provider(issuer, clock, sleeps)
    old = p.token()
    clock.advance(LIFETIME + 1)
    new = p.token()
    assert new.value != old.value
    assert new.expires_in(clock()) == pytest.approx(LIFETIME)
    assert issuer.token_requests == 2


# ---- outages and throttling ------------------------------------------------------------------


def test_an_issuer_outage_is_survived_until_expiry_then_a_clear_error(
    issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    p = provider(issuer, clock, sleeps)
    cached = p.token()
    issuer.set_outage()  # 503 temporarily_unavailable on every request
    clock.advance(STALE_AT + 1)
    assert p.token() is cached  # stale but valid: served at once, refresh runs aside
    join_refresh(p)
    attempts = OutboundRetryPolicy().attempts
    assert issuer.token_requests == 1 + attempts  # the background refresh retried, then gave up
    clock.advance(LIFETIME - STALE_AT - 2)  # one second before expiry
    assert p.token() is cached
    clock.advance(1)  # expired now
    with pytest.raises(TokenExpiredError) as info:
        p.token()
    err = info.value
    assert isinstance(err, TokenUnavailableError) and isinstance(err, MeshError)
    msg = str(err)
    assert "expired at" in msg and issuer.token_url in msg and CLIENT_ID in msg
    assert "503" in msg and SECRET not in msg and cached.value not in msg
    issuer.clear_faults()
    assert p.token().value != cached.value  # back to normal once the issuer is


def waiters(p: ClientCredentials) -> int:
    """Threads blocked on the provider's condition (CPython's Condition keeps a deque)."""
    return len(p._cond._waiters)  # type: ignore[attr-defined]


def test_a_failed_refresh_is_reported_to_every_waiting_thread_not_repeated(
    gated_issuer: GatedIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    p = provider(gated_issuer, clock, sleeps)
    cached = p.token()
    clock.advance(LIFETIME)
    gated_issuer.set_throttle(3600)  # 429 asking for an hour: fails at once, no retry
    gated_issuer.gate.clear()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def ask() -> None:
        try:
            p.token()
        except TokenError as exc:
            with lock:
                errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    gated_issuer.wait_arrived(2)  # one refresh in flight...
    wait_for(lambda: waiters(p) == 7, what="the other threads to queue")  # ...the rest wait for it
    gated_issuer.gate.set()
    for t in threads:
        t.join(30)
    assert len(errors) == 8 and all(isinstance(e, TokenExpiredError) for e in errors)
    assert gated_issuer.token_requests == 2  # one failed refresh for eight callers
    assert all(cached.value not in str(e) and SECRET not in str(e) for e in errors)


def test_429_with_retry_after_is_honoured(issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep) -> None:
    issuer.set_throttle(7, times=1)
    p = provider(issuer, clock, sleeps)
    p.token()
    assert sleeps.calls == [7.0]
    assert issuer.token_requests == 2


def test_a_retry_after_beyond_the_cap_fails_at_once(
    issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    issuer.set_throttle(3600, times=1)
    p = provider(issuer, clock, sleeps)
    with pytest.raises(TokenUnavailableError, match="3600 s"):
        p.token()
    assert sleeps.calls == [] and issuer.token_requests == 1


def test_5xx_is_retried_with_exponential_backoff_and_jitter(
    issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    issuer.set_outage(times=3)
    p = provider(issuer, clock, sleeps)
    p.token()
    assert issuer.token_requests == 4
    policy = OutboundRetryPolicy()
    assert len(sleeps.calls) == 3
    for i, s in enumerate(sleeps.calls):
        full = policy.initial_backoff * policy.multiplier**i
        assert full * (1 - policy.jitter) <= s <= full


def test_retry_after_as_http_date(issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep) -> None:
    from meshclient.retry_after import parse_retry_after

    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(10.0)
    assert parse_retry_after("12", now=0) == 12.0
    assert parse_retry_after("soon", now=0) is None


def test_invalid_client_is_not_retried_and_names_url_and_client(
    issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    p = ClientCredentials(
        token_url=issuer.token_url,
        client_id=CLIENT_ID,
        client_secret="wrong-secret-value",
        refresh=RefreshSettings(clock=clock, sleep=sleeps),
    )
    with pytest.raises(TokenEndpointError) as info:
        p.token()
    err = info.value
    assert err.error == "invalid_client" and err.status == 401
    assert err.token_url == issuer.token_url and err.client_id == CLIENT_ID
    assert issuer.token_url in str(err) and CLIENT_ID in str(err) and "auth_method" in str(err)
    assert "wrong-secret-value" not in str(err)
    assert issuer.token_requests == 1 and sleeps.calls == []


def test_connection_refused_becomes_a_token_error(clock: FakeClock, sleeps: RecordingSleep) -> None:
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    p = ClientCredentials(
        token_url=f"http://127.0.0.1:{port}/token",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        refresh=RefreshSettings(clock=clock, sleep=sleeps),
        outbound=OutboundSettings(retries=OutboundRetryPolicy(attempts=2)),
    )
    with pytest.raises(TokenUnavailableError, match="2 attempt") as info:
        p.token()
    assert "ConnectionError" in str(info.value) and SECRET not in str(info.value)
    assert len(sleeps.calls) == 1


# ---- 401 handling ----------------------------------------------------------------------------


def test_on_unauthorized_forces_one_refresh_for_many_concurrent_401s(
    issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    p = provider(issuer, clock, sleeps)
    header = p.authorization_header()
    barrier = threading.Barrier(8)
    answers: list[bool] = []
    lock = threading.Lock()

    def rejected() -> None:
        barrier.wait()
        retry = p.on_unauthorized(header)
        with lock:
            answers.append(retry)

    threads = [threading.Thread(target=rejected) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert answers == [True] * 8
    assert p.authorization_header() != header
    assert issuer.token_requests == 2  # one forced refresh, not eight


def test_invalidate_only_drops_the_token_it_names(issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep) -> None:
    p = provider(issuer, clock, sleeps)
    old = p.token()
    p.invalidate(old)
    new = p.token()
    p.invalidate(old)  # stale news: the current token stays
    assert p.token() is new and issuer.token_requests == 2
    p.invalidate()
    p.token()
    assert issuer.token_requests == 3


def test_a_static_token_says_a_retry_is_pointless() -> None:
    p = StaticToken("opaque-token-1234")
    assert p.authorization_header() == "Bearer opaque-token-1234"
    assert p.on_unauthorized("Bearer opaque-token-1234") is False


# ---- background refresh and close ---------------------------------------------------------------


def test_background_refresh_renews_a_stale_token_and_stops_on_close(
    issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    p = provider(issuer, clock, sleeps, background=True)
    p._bg_tick = 0.01  # re-read the fake clock often
    first = p.token()
    thread = p._bg_thread
    assert thread is not None and thread.daemon and thread.is_alive()
    clock.advance(STALE_AT + 1)
    wait_for(lambda: issuer.token_requests == 2, what="the background refresh")
    wait_for(lambda: p.state is TokenState.FRESH, what="the new token to be cached")
    assert p.token().value != first.value
    p.close()
    assert not thread.is_alive()
    with pytest.raises(TokenError, match="closed"):
        p.token()
    p.close()  # idempotent


def test_context_manager_closes(issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep) -> None:
    with provider(issuer, clock, sleeps) as p:
        p.token()
    with pytest.raises(TokenError):
        p.token()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_gets_new_locks_and_keeps_the_token(
    issuer: OIDCIssuer, clock: FakeClock, sleeps: RecordingSleep
) -> None:
    """PySpark forks its Python workers: a lock held by another thread at fork time must not
    deadlock the child, and the child must not reuse the parent's pooled connections."""
    p = provider(issuer, clock, sleeps)
    cached = p.token()
    parent_session = p._http._session
    read, write = os.pipe()
    with p._cond:  # held across the fork, as another thread might
        pid = os.fork()
        if pid == 0:  # pragma: no cover - runs in the child
            code = 1
            try:
                same = p.token() is cached
                p.invalidate()
                fresh = p.token()
                fine = same and fresh.value != cached.value and p._http._session is not parent_session
                code = 0 if fine else 2
            finally:
                os.write(write, bytes([code]))
                os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as r:
        status = r.read(1)
    os.waitpid(pid, 0)
    assert status == b"\x00"
    assert issuer.token_requests == 2  # the child's refresh went to the issuer, over its own connection
