"""RetryBudget: Linkerd's 20 % of requests + 10 retries/s over a 10 s window, with an injected clock.

No test sleeps: time is a number the test moves. Clock values sit in the middle of the
budget's 0.1 s accounting slots so that no assertion depends on float rounding at a slot edge.
"""

from __future__ import annotations

import threading

import pytest

from meshclient.transport.budget import RetryBudget


class FakeClock:
    def __init__(self, now: float = 1000.05) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def drain(budget: RetryBudget, limit: int = 100_000) -> int:
    """Withdraw until refused; return how many retries were granted."""
    granted = 0
    while budget.try_withdraw():
        granted += 1
        assert granted < limit, "the budget never refused"
    return granted


def test_defaults_are_linkerds() -> None:
    budget = RetryBudget()
    assert (budget.retry_ratio, budget.min_retries_per_second, budget.ttl) == (0.2, 10.0, 10.0)


def test_a_quiet_client_gets_the_floor_of_10_per_second_times_ttl() -> None:
    budget = RetryBudget(clock=FakeClock())
    assert drain(budget) == 10 * 10
    assert not budget.try_withdraw()


@pytest.mark.parametrize("requests", [1, 5, 50, 100, 1000])
def test_allows_20_percent_of_requests_plus_the_floor(requests: int) -> None:
    budget = RetryBudget(clock=FakeClock())
    for _ in range(requests):
        budget.record_request()
    expected = int(0.2 * requests + 10 * 10)
    assert drain(budget) == expected
    snap = budget.snapshot()
    assert snap["requests"] == requests
    assert snap["retries"] == expected
    assert snap["allowed"] == pytest.approx(0.2 * requests + 100)


def test_ratio_alone_without_a_floor() -> None:
    budget = RetryBudget(retry_ratio=0.2, min_retries_per_second=0, clock=FakeClock())
    assert not budget.try_withdraw()  # no requests, no floor: nothing to spend
    for _ in range(10):
        budget.record_request()
    assert drain(budget) == 2
    for _ in range(5):  # five more requests earn exactly one more retry
        budget.record_request()
    assert drain(budget) == 1


def test_custom_window_scales_the_floor() -> None:
    budget = RetryBudget(retry_ratio=0.5, min_retries_per_second=3, ttl=2, clock=FakeClock())
    for _ in range(8):
        budget.record_request()
    assert drain(budget) == 4 + 3 * 2


def test_every_request_earns_its_share_as_it_comes() -> None:
    budget = RetryBudget(retry_ratio=0.2, min_retries_per_second=0, clock=FakeClock())
    granted = 0
    for _ in range(100):
        budget.record_request()
        granted += drain(budget)
    assert granted == 20


def test_spent_budget_refills_as_the_window_slides() -> None:
    clock = FakeClock(1000.05)
    budget = RetryBudget(clock=clock)
    for _ in range(100):
        budget.record_request()
    assert drain(budget) == 120

    clock.advance(5.0)  # half a window later: the spent retries still count
    assert not budget.try_withdraw()
    clock.advance(4.9)  # 9.9 s after the spending: still inside the 10 s window
    assert not budget.try_withdraw()
    clock.advance(0.2)  # 10.1 s: the slot that held both the requests and the retries has left the window
    snap = budget.snapshot()
    assert (snap["requests"], snap["retries"]) == (0, 0)
    assert drain(budget) == 100  # the floor again; the old requests no longer earn anything


def test_old_requests_leave_the_window_one_slot_at_a_time() -> None:
    clock = FakeClock(1000.05)
    budget = RetryBudget(retry_ratio=0.2, min_retries_per_second=0, clock=clock)
    for _ in range(50):
        budget.record_request()
    clock.advance(5.0)
    for _ in range(50):
        budget.record_request()
    assert drain(budget) == 20  # 100 requests in the window
    clock.advance(5.1)  # the first 50 requests are 10.1 s old: gone; the retries spent 5.1 s ago stay
    snap = budget.snapshot()
    assert snap["requests"] == 50
    assert snap["retries"] == 20
    assert not budget.try_withdraw()  # allowed 10, already 20 spent in the window
    clock.advance(5.0)  # now the retries (10.1 s old) are gone too, and so are the second 50 requests
    assert budget.snapshot() == {"requests": 0, "retries": 0, "allowed": 0.0}


def test_refill_is_gradual_with_a_steady_request_rate() -> None:
    """A client sending 10 requests/s under a permanent failure: retries never exceed the budget
    in any 10 s window, and keep being granted as old retries leave the window."""
    clock = FakeClock(1000.05)
    budget = RetryBudget(retry_ratio=0.2, min_retries_per_second=1, ttl=10, clock=clock)
    granted_at: list[float] = []
    for _ in range(600):  # 60 s of traffic, one request every 0.1 s, each wanting 2 retries
        budget.record_request()
        for _ in range(2):
            if budget.try_withdraw():
                granted_at.append(clock.now)
        clock.advance(0.1)
    # in every window of 10 s, retries <= 20 % of the ~100 requests + 1/s * 10 s
    for start in granted_at:
        in_window = sum(1 for t in granted_at if start <= t < start + 10 - 1e-9)
        assert in_window <= 0.2 * 100 + 10 + 1
    # and the budget keeps granting in the last window (it refilled)
    assert any(t > clock.now - 10 for t in granted_at)
    assert len(granted_at) < 600 * 2 * 0.5  # far fewer than the 1200 retries wanted


def test_concurrent_withdrawals_never_overspend() -> None:
    budget = RetryBudget(retry_ratio=0.2, min_retries_per_second=10, ttl=10, clock=FakeClock())
    for _ in range(500):
        budget.record_request()
    granted = [0] * 8
    start = threading.Barrier(8)

    def worker(i: int) -> None:
        start.wait()
        for _ in range(200):
            if budget.try_withdraw():
                granted[i] += 1

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert not any(t.is_alive() for t in threads)
    assert sum(granted) == 0.2 * 500 + 100


@pytest.mark.parametrize(
    "kwargs",
    [{"retry_ratio": -0.1}, {"retry_ratio": 1001}, {"min_retries_per_second": -1}, {"ttl": 0}, {"ttl": -5}],
)
def test_rejects_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryBudget(**kwargs)


def test_repr_names_the_settings() -> None:
    assert repr(RetryBudget()) == "RetryBudget(retry_ratio=0.2, min_retries_per_second=10.0, ttl=10.0)"
