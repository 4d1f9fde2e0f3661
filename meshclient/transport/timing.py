"""Time for the request path, injectable: one clock and one sleep, and the request's deadline.

Tests pass a fake :class:`Clock` (``MeshClient(clock=...)``) instead of patching module globals.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Clock", "SYSTEM_CLOCK", "Deadline"]


@dataclass(frozen=True)
class Clock:
    """``monotonic()`` for durations and deadlines, ``sleep()`` for back-off."""

    monotonic: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


SYSTEM_CLOCK = Clock()


@dataclass(frozen=True)
class Deadline:
    """The moment all attempts of one request must be done by (``at`` is ``None``: no deadline)."""

    at: float | None
    clock: Clock = SYSTEM_CLOCK

    @classmethod
    def after(cls, seconds: float | None, clock: Clock = SYSTEM_CLOCK) -> Deadline:
        return cls(None if seconds is None else clock.monotonic() + seconds, clock)

    def remaining(self) -> float | None:
        return None if self.at is None else self.at - self.clock.monotonic()

    def allows(self, seconds: float) -> bool:
        """Whether waiting ``seconds`` still leaves time before the deadline."""
        return self.at is None or self.clock.monotonic() + seconds < self.at

    def passed(self, slack: float = 0.001) -> bool:
        return self.at is not None and self.clock.monotonic() >= self.at - slack
