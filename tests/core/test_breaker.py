"""CircuitBreaker: Linkerd's consecutive-failures accrual (7 failures, 1 s → 60 s, jitter 0.5,
one probe on probation), driven by an injected clock and RNG — no sleeps."""

from __future__ import annotations

import random
import threading

import pytest

from meshclient.transport.breaker import CLOSED, OPEN, PROBATION, BreakerSettings, CircuitBreaker


class FakeClock:
    def __init__(self, now: float = 500.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class JitterRng(random.Random):
    """``uniform(a, b)`` → the low end, the middle (no jitter) or the high end."""

    def __init__(self, where: str = "mid") -> None:
        super().__init__(0)
        self.where = where

    def uniform(self, a: float, b: float) -> float:
        return {"low": a, "mid": (a + b) / 2, "high": b}[self.where]


def make(where: str = "mid", **settings: float) -> tuple[CircuitBreaker, FakeClock]:
    clock = FakeClock()
    return CircuitBreaker(BreakerSettings(**settings), clock=clock, rng=JitterRng(where)), clock  # type: ignore[arg-type]


def trip(breaker: CircuitBreaker, failures: int = 7) -> None:
    for _ in range(failures):
        assert breaker.acquire()
        breaker.record_failure()


def reopen_delay(breaker: CircuitBreaker, clock: FakeClock, step: float = 0.001, limit: float = 200.0) -> float:
    """How long (on the fake clock) until an open breaker lets a probe through."""
    waited = 0.0
    while not breaker.available():
        clock.advance(step)
        waited += step
        assert waited < limit, "the breaker never reopened"
    return waited


def test_defaults_are_linkerds() -> None:
    s = BreakerSettings()
    assert (s.consecutive_failures, s.min_backoff, s.max_backoff, s.jitter) == (7, 1.0, 60.0, 0.5)


def test_six_failures_keep_it_closed_the_seventh_opens_it() -> None:
    breaker, _ = make()
    trip(breaker, 6)
    assert breaker.state == CLOSED and breaker.available()
    assert breaker.acquire()
    breaker.record_failure()
    assert breaker.state == OPEN
    assert not breaker.available()
    assert not breaker.acquire()


def test_only_consecutive_failures_count() -> None:
    breaker, _ = make()
    for _ in range(5):
        trip(breaker, 6)
        breaker.record_success()
    assert breaker.state == CLOSED
    trip(breaker, 7)
    assert breaker.state == OPEN


def test_custom_threshold() -> None:
    breaker, _ = make(consecutive_failures=2)
    trip(breaker, 1)
    assert breaker.state == CLOSED
    trip(breaker, 1)
    assert breaker.state == OPEN


def test_first_backoff_is_min_backoff() -> None:
    breaker, clock = make("mid")
    trip(breaker)
    clock.advance(0.999)
    assert not breaker.available()
    clock.advance(0.001)
    assert breaker.available()
    assert breaker.state == PROBATION


def test_exactly_one_probe_on_probation() -> None:
    breaker, clock = make()
    trip(breaker)
    clock.advance(1.0)
    assert breaker.acquire()  # the probe
    for _ in range(20):
        assert not breaker.available()
        assert not breaker.acquire()
    clock.advance(3600)  # however long the probe takes, no second request goes out
    assert not breaker.acquire()


def test_probe_is_granted_to_exactly_one_of_many_threads() -> None:
    breaker, clock = make()
    trip(breaker)
    clock.advance(1.0)
    barrier = threading.Barrier(16)
    granted: list[bool] = []
    lock = threading.Lock()

    def contend() -> None:
        barrier.wait()
        ok = breaker.acquire()
        with lock:
            granted.append(ok)

    threads = [threading.Thread(target=contend) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert granted.count(True) == 1
    assert len(granted) == 16


def test_successful_probe_closes_and_resets_everything() -> None:
    breaker, clock = make()
    trip(breaker)
    clock.advance(1.0)
    assert breaker.acquire()
    breaker.record_success()
    assert breaker.state == CLOSED
    assert all(breaker.acquire() for _ in range(10))
    trip(breaker, 6)  # the failure count started again from zero
    assert breaker.state == CLOSED
    trip(breaker, 1)
    assert breaker.state == OPEN
    assert reopen_delay(breaker, clock) == pytest.approx(1.0, abs=0.002)  # and the back-off from min_backoff


def test_failed_probe_reopens_for_twice_as_long_up_to_a_minute() -> None:
    breaker, clock = make("mid")
    trip(breaker)
    delays = [reopen_delay(breaker, clock, step=0.01)]
    for _ in range(8):
        assert breaker.acquire()
        breaker.record_failure()  # the probe failed: straight back to open, no 7 failures needed
        assert breaker.state == OPEN
        delays.append(reopen_delay(breaker, clock, step=0.01))
    assert delays == pytest.approx([1, 2, 4, 8, 16, 32, 60, 60, 60], abs=0.02)


@pytest.mark.parametrize(("where", "factor"), [("low", 0.5), ("high", 1.5)])
def test_jitter_spreads_the_backoff_by_half(where: str, factor: float) -> None:
    breaker, clock = make(where)
    trip(breaker)
    delays = [reopen_delay(breaker, clock, step=0.01)]
    for _ in range(7):
        assert breaker.acquire()
        breaker.record_failure()
        delays.append(reopen_delay(breaker, clock, step=0.01))
    expected = [factor * b for b in (1, 2, 4, 8, 16, 32, 60, 60)]
    assert delays == pytest.approx(expected, abs=0.02)


def test_real_jitter_stays_within_half_either_side() -> None:
    settings = BreakerSettings()
    for seed in range(20):
        clock = FakeClock()
        breaker = CircuitBreaker(settings, clock=clock, rng=random.Random(seed))
        trip(breaker)
        delay = reopen_delay(breaker, clock, step=0.01)
        assert 0.5 - 0.02 <= delay <= 1.5 + 0.02


def test_failures_while_open_do_not_extend_the_backoff() -> None:
    breaker, clock = make()
    trip(breaker)
    for _ in range(20):  # late answers of requests sent before it opened
        breaker.record_failure()
    assert reopen_delay(breaker, clock) == pytest.approx(1.0, abs=0.002)


def test_probation_failure_without_probe_bookkeeping_still_reopens() -> None:
    breaker, clock = make()
    trip(breaker)
    clock.advance(1.0)
    assert breaker.available()  # moves to probation
    breaker.record_failure()
    assert breaker.state == OPEN


def test_repr() -> None:
    breaker, _ = make()
    assert repr(breaker) == "CircuitBreaker(state='closed', failures=0)"
