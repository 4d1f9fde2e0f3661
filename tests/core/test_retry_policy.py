"""RetryPolicy (what may be retried, full-jitter backoff) and Retry-After parsing.

Backoff randomness comes from an injected RNG: a stub that returns the low or the high end of
the range it is asked for, or a seeded ``random.Random``. Retry-After dates are parsed against
an injected ``now``.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Iterator

import pytest
from requests.structures import CaseInsensitiveDict

from meshclient.transport.retry import (
    IDEMPOTENT_METHODS,
    RETRY_AFTER_STATUSES,
    RETRYABLE_STATUSES,
    RetryPolicy,
    parse_retry_after,
)


class EdgeRng(random.Random):
    """``uniform(a, b)`` returns ``a`` or ``b``: the extremes of full jitter."""

    def __init__(self, high: bool) -> None:
        super().__init__(0)
        self.high = high
        self.calls: list[tuple[float, float]] = []

    def uniform(self, a: float, b: float) -> float:
        self.calls.append((a, b))
        return b if self.high else a


# -- settings ---------------------------------------------------------------------------------
def test_defaults_follow_linkerd() -> None:
    policy = RetryPolicy()
    assert policy.max_attempts == 3
    assert (policy.min_backoff, policy.max_backoff) == (0.025, 0.25)  # Linkerd 2.16+: 25 ms .. 250 ms
    assert policy.max_retry_after == 10.0
    assert policy.retry_statuses == frozenset({429, 502, 503, 504})
    assert RETRYABLE_STATUSES == frozenset({429, 502, 503, 504})
    assert RETRY_AFTER_STATUSES == frozenset({429, 503})


def test_disabled_means_one_attempt() -> None:
    assert RetryPolicy.disabled().max_attempts == 1


@pytest.mark.parametrize("kwargs", [{"max_attempts": 0}, {"min_backoff": 0.5, "max_backoff": 0.1},
                                    {"min_backoff": -0.1}])
def test_rejects_nonsense_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# -- which requests may be repeated -------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE", "get", "put"])
def test_idempotent_methods_may_repeat(method: str) -> None:
    assert RetryPolicy().method_allows_retry(method, CaseInsensitiveDict())


@pytest.mark.parametrize("method", ["POST", "PATCH", "CONNECT", "post"])
def test_other_methods_repeat_only_with_an_idempotency_key(method: str) -> None:
    policy = RetryPolicy()
    assert not policy.method_allows_retry(method, CaseInsensitiveDict())
    assert not policy.method_allows_retry(method, CaseInsensitiveDict({"Idempotency-Key": ""}))
    assert policy.method_allows_retry(method, CaseInsensitiveDict({"Idempotency-Key": "k-1"}))
    assert policy.method_allows_retry(method, CaseInsensitiveDict({"idempotency-key": "k-1"}))
    assert not policy.method_allows_retry(method, None)


def test_idempotent_set() -> None:
    assert frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"}) == IDEMPOTENT_METHODS


# -- backoff ---------------------------------------------------------------------------------------
def test_backoff_ceiling_doubles_per_retry_up_to_max() -> None:
    policy = RetryPolicy()
    rng = EdgeRng(high=True)
    assert [policy.backoff(n, rng) for n in range(7)] == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.25, 0.25, 0.25])
    assert [hi for _, hi in rng.calls] == pytest.approx([0.025, 0.05, 0.1, 0.2, 0.25, 0.25, 0.25])


def test_full_jitter_draws_from_zero_and_floors_at_half_the_minimum() -> None:
    policy = RetryPolicy()
    rng = EdgeRng(high=False)
    assert [policy.backoff(n, rng) for n in range(5)] == [0.0125] * 5
    assert all(lo == 0.0 for lo, _ in rng.calls)  # full jitter: the draw starts at zero


def test_negative_retry_numbers_are_treated_as_the_first() -> None:
    assert RetryPolicy().backoff(-3, EdgeRng(high=True)) == pytest.approx(0.025)


@pytest.mark.parametrize("seed", range(5))
def test_backoff_stays_within_its_bounds(seed: int) -> None:
    policy = RetryPolicy(min_backoff=0.02, max_backoff=0.3)
    rng = random.Random(seed)
    for n in range(12):
        cap = min(0.3, 0.02 * 2**n)
        for _ in range(200):
            delay = policy.backoff(n, rng)
            assert 0.01 <= delay <= cap


def test_backoff_is_actually_jittered() -> None:
    policy = RetryPolicy()
    rng = random.Random(42)
    delays = [policy.backoff(6, rng) for _ in range(2000)]
    assert min(delays) < 0.05
    assert max(delays) > 0.2
    assert len(set(delays)) > 1900  # continuous draws, not a handful of values


def test_zero_backoff_is_allowed() -> None:
    assert RetryPolicy(min_backoff=0, max_backoff=0).backoff(3, random.Random(1)) == 0.0


def test_backoff_for_a_large_retry_number_is_max_backoff() -> None:
    """Regression: ``min_backoff * 2 ** n`` used to overflow a float for n >= ~1030 (OverflowError)
    instead of capping at max_backoff; max_attempts is user-settable."""
    rng = EdgeRng(high=True)
    assert RetryPolicy().backoff(5000, rng) == pytest.approx(0.25)


# -- Retry-After -----------------------------------------------------------------------------------
NOW = email.utils.parsedate_to_datetime("Wed, 21 Oct 2015 07:27:00 GMT").timestamp()


@pytest.mark.parametrize(
    ("value", "expected"),
    [("0", 0.0), ("1", 1.0), ("120", 120.0), ("  7 ", 7.0), ("86400", 86400.0)],
)
def test_retry_after_seconds(value: str, expected: float) -> None:
    assert parse_retry_after(value) == expected


@pytest.mark.parametrize("value", [None, "", "   ", "soon", "-5", "1.5", "1e3", "0x10", "5 seconds"])
def test_retry_after_garbage_is_none(value: str | None) -> None:
    assert parse_retry_after(value) is None


@pytest.mark.parametrize(
    "value",
    [
        "Wed, 21 Oct 2015 07:28:00 GMT",  # IMF-fixdate (the preferred form)
        "Wednesday, 21-Oct-15 07:28:00 GMT",  # obsolete RFC 850 form
        "Wed Oct 21 07:28:00 2015",  # obsolete asctime form (no zone: always GMT per RFC 9110)
    ],
)
def test_retry_after_http_date_forms(value: str) -> None:
    assert parse_retry_after(value, now=NOW) == pytest.approx(60.0)


def test_retry_after_date_in_the_past_is_zero() -> None:
    assert parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now=NOW) == 0.0


def test_retry_after_date_uses_the_wall_clock_by_default() -> None:
    future = email.utils.formatdate(time.time() + 30, usegmt=True)
    delay = parse_retry_after(future)
    assert delay is not None and 25 <= delay <= 31


@pytest.fixture
def non_utc_local_time(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    if not hasattr(time, "tzset"):
        pytest.skip("needs time.tzset")
    monkeypatch.setenv("TZ", "EST+05EDT,M3.2.0,M11.1.0")  # POSIX rule: no tz database needed
    time.tzset()
    try:
        yield
    finally:
        monkeypatch.undo()
        time.tzset()


@pytest.mark.usefixtures("non_utc_local_time")
@pytest.mark.parametrize(
    "value",
    ["Wed, 21 Oct 2015 07:28:00 GMT", "Wed Oct 21 07:28:00 2015", "Wed, 21 Oct 2015 07:28:00 -0000"],
)
def test_retry_after_dates_are_gmt_whatever_the_local_zone(value: str) -> None:
    """Regression: ``parsedate_to_datetime`` returns a *naive* datetime for asctime dates and
    ``-0000``, and ``.timestamp()`` reads a naive datetime as local time, so on a host whose zone
    is not UTC the delay was off by the UTC offset (4 h here). HTTP dates are always GMT."""
    assert parse_retry_after(value, now=NOW) == pytest.approx(60.0)


@pytest.mark.parametrize("value", ["\xb2", "\xb3", "\xb9", "1\xb2"])
def test_retry_after_with_latin1_digit_lookalikes_is_none(value: str) -> None:
    """Regression: ``str.isdigit()`` is true for '²' '³' '¹' (http.client decodes header bytes
    0xB2/0xB3/0xB9 as latin-1) and ``float('²')`` raised ValueError — a server's malformed header
    crashed the request with a non-MeshError."""
    assert parse_retry_after(value) is None
