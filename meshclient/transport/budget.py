"""A retry budget shared by one client, the way Linkerd and Finagle bound retries.

Retries may add at most ``retry_ratio`` of the requests seen in the last ``ttl`` seconds, plus
``min_retries_per_second`` as a floor for quiet clients (defaults 20 % + 10/s over 10 s). A
503 storm therefore cannot turn into a retry storm: once the budget is spent, failures are
returned to the caller instead of being retried.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RetryBudget"]

_SLOT = 0.1  # seconds per accounting slot: bounded memory whatever the request rate


@dataclass
class _Slot:
    start: float
    requests: int = 0
    retries: int = 0


class RetryBudget:
    """Thread-safe sliding-window budget: ``record_request()`` per first attempt,
    ``try_withdraw()`` before each retry (False means: do not retry)."""

    def __init__(
        self,
        retry_ratio: float = 0.2,
        min_retries_per_second: float = 10.0,
        ttl: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= retry_ratio <= 1000:
            raise ValueError("retry_ratio must be between 0 and 1000")
        if min_retries_per_second < 0 or ttl <= 0:
            raise ValueError("min_retries_per_second must be >= 0 and ttl > 0")
        self.retry_ratio = retry_ratio
        self.min_retries_per_second = min_retries_per_second
        self.ttl = ttl
        self._clock = clock
        self._slots: deque[_Slot] = deque()
        self._lock = threading.Lock()

    def __reduce__(self) -> tuple[type[RetryBudget], tuple[float, float, float]]:
        """Pickles as its settings: a copy (in an executor) starts with an empty window."""
        return RetryBudget, (self.retry_ratio, self.min_retries_per_second, self.ttl)

    def _current(self, now: float) -> _Slot:
        horizon = now - self.ttl
        while self._slots and self._slots[0].start <= horizon:
            self._slots.popleft()
        if not self._slots or now - self._slots[-1].start >= _SLOT:
            self._slots.append(_Slot(start=now - (now % _SLOT)))
        return self._slots[-1]

    def record_request(self) -> None:
        with self._lock:
            self._current(self._clock()).requests += 1

    def try_withdraw(self) -> bool:
        """Spend one retry if the budget allows it."""
        with self._lock:
            slot = self._current(self._clock())
            requests = sum(s.requests for s in self._slots)
            retries = sum(s.retries for s in self._slots)
            allowed = self.retry_ratio * requests + self.min_retries_per_second * self.ttl
            if retries + 1 > allowed:
                return False
            slot.retries += 1
            return True

    def snapshot(self) -> dict[str, float]:
        """Requests and retries in the current window (for tests and metrics)."""
        with self._lock:
            self._current(self._clock())
            requests = sum(s.requests for s in self._slots)
            retries = sum(s.retries for s in self._slots)
        return {
            "requests": requests,
            "retries": retries,
            "allowed": self.retry_ratio * requests + self.min_retries_per_second * self.ttl,
        }

    def __repr__(self) -> str:
        return (f"RetryBudget(retry_ratio={self.retry_ratio}, min_retries_per_second={self.min_retries_per_second}, "
                f"ttl={self.ttl})")
