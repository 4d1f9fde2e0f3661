"""Per-endpoint failure accrual, Linkerd's circuit breaker.

``consecutive_failures`` failures in a row (7 by default) open an endpoint: it gets no traffic
for a back-off that grows from ``min_backoff`` to ``max_backoff`` (1 s → 1 min) with jitter
0.5. After the back-off the endpoint is on probation and receives exactly one probe request;
a success closes it, a failure opens it again for longer.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["BreakerSettings", "CircuitBreaker"]

CLOSED, OPEN, PROBATION = "closed", "open", "probation"


@dataclass(frozen=True)
class BreakerSettings:
    consecutive_failures: int = 7
    min_backoff: float = 1.0
    max_backoff: float = 60.0
    jitter: float = 0.5


class CircuitBreaker:
    """State of one endpoint. ``acquire()`` says whether a request may go there now."""

    def __init__(self, settings: BreakerSettings | None = None, *, clock: Callable[[], float] = time.monotonic,
                 rng: random.Random | None = None) -> None:
        self.settings = settings or BreakerSettings()
        self._clock = clock
        self._rng = rng or random.Random()
        self._lock = threading.Lock()
        self.state = CLOSED
        self._failures = 0
        self._opened = 0  # how many times in a row it opened (grows the back-off)
        self._reopen_at = 0.0
        self._probe_in_flight = False

    def _backoff(self) -> float:
        s = self.settings
        base = min(s.max_backoff, s.min_backoff * (2 ** max(0, self._opened - 1)))
        spread = base * s.jitter
        return float(max(0.0, base + self._rng.uniform(-spread, spread)))

    def available(self) -> bool:
        """True when a request may be sent (closed, or probation with no probe out)."""
        with self._lock:
            return self._available_locked()

    def _available_locked(self) -> bool:
        if self.state == OPEN and self._clock() >= self._reopen_at:
            self.state = PROBATION
            self._probe_in_flight = False
        if self.state == CLOSED:
            return True
        return self.state == PROBATION and not self._probe_in_flight

    def acquire(self) -> bool:
        """Claim the right to send one request (the probe, on probation)."""
        with self._lock:
            if not self._available_locked():
                return False
            if self.state == PROBATION:
                self._probe_in_flight = True
            return True

    def release(self) -> None:
        """Give back a claimed probe whose request never completed (cancelled, failed before sending)."""
        with self._lock:
            self._probe_in_flight = False

    def record_success(self) -> None:
        with self._lock:
            self.state = CLOSED
            self._failures = 0
            self._opened = 0
            self._probe_in_flight = False

    def record_failure(self) -> None:
        with self._lock:
            if self.state == PROBATION:
                self._open()
                return
            self._failures += 1
            if self.state == CLOSED and self._failures >= self.settings.consecutive_failures:
                self._open()

    def _open(self) -> None:
        self._opened += 1
        self.state = OPEN
        self._probe_in_flight = False
        self._reopen_at = self._clock() + self._backoff()

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state!r}, failures={self._failures})"
