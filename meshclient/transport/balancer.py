"""Endpoints of one service and how to choose between them.

A service may have several endpoints — a fixed list of addresses, or the A records of a
headless-service name re-resolved periodically — all serving the same identity. The balancer
is Linkerd's: power of two choices over peak-EWMA latency (30 ms default RTT, 10 s decay),
skipping endpoints whose circuit breaker is open.
"""

from __future__ import annotations

import math
import random
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ..errors import ConfigurationError, NoEndpointAvailableError
from .address import parse_address
from .breaker import BreakerSettings, CircuitBreaker

__all__ = ["Endpoint", "PeakEwma", "Balancer", "StaticEndpoints", "DnsEndpoints"]


class PeakEwma:
    """Latency estimate that jumps up to a slow sample at once and decays down slowly."""

    def __init__(self, default_rtt: float = 0.030, decay: float = 10.0, *, clock: Callable[[], float] = time.monotonic):
        self.value = default_rtt
        self.decay = decay
        self._clock = clock
        self._stamp = clock()
        self.pending = 0
        self._lock = threading.Lock()

    def observe(self, rtt: float) -> None:
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._stamp)
            self._stamp = now
            if rtt > self.value:
                self.value = rtt
            else:
                w = math.exp(-elapsed / self.decay)
                self.value = self.value * w + rtt * (1 - w)

    def cost(self) -> float:
        """Decays toward zero while idle (like tower's PeakEwma, an update with rtt 0), so one slow
        answer cannot starve an endpoint forever."""
        with self._lock:
            now = self._clock()
            elapsed = max(0.0, now - self._stamp)
            self._stamp = now
            self.value *= math.exp(-elapsed / self.decay)
            return self.value * (self.pending + 1)

    def start(self) -> None:
        with self._lock:
            self.pending += 1

    def finish(self) -> None:
        with self._lock:
            self.pending = max(0, self.pending - 1)


@dataclass(eq=False)
class Endpoint:
    """One address of a service, with its own latency estimate and breaker."""

    host: str
    port: int
    latency: PeakEwma = field(default_factory=PeakEwma)
    breaker: CircuitBreaker = field(default_factory=CircuitBreaker)

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def __repr__(self) -> str:
        return f"Endpoint({self.address}, state={self.breaker.state})"


class StaticEndpoints:
    """A fixed list of addresses."""

    def __init__(self, addresses: Iterable[str], default_port: int, *,
                 breaker: BreakerSettings | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self._endpoints = [
            Endpoint(h, p, PeakEwma(clock=clock), CircuitBreaker(breaker, clock=clock))
            for h, p in (parse_address(a, default_port, what="endpoint") for a in addresses)
        ]
        if not self._endpoints:
            raise ConfigurationError("A service needs at least one endpoint address.")

    def current(self) -> Sequence[Endpoint]:
        return self._endpoints


class DnsEndpoints:
    """The A/AAAA records of a (headless-service) name, re-resolved every ``refresh`` seconds.

    Endpoints that stay in the answer keep their latency and breaker state; a failed lookup
    keeps the last good answer.
    """

    def __init__(self, name: str, port: int, *, refresh: float = 5.0, breaker: BreakerSettings | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 resolver: Callable[[str, int], list[str]] | None = None) -> None:
        self.name, self.port, self.refresh = name, port, refresh
        self._breaker, self._clock = breaker, clock
        self._resolve = resolver or _resolve
        self._lock = threading.Lock()
        self._endpoints: list[Endpoint] = []
        self._resolved_at = -math.inf

    def current(self) -> Sequence[Endpoint]:
        with self._lock:
            if self._clock() - self._resolved_at >= self.refresh or not self._endpoints:
                try:
                    addresses = self._resolve(self.name, self.port)
                except OSError:
                    addresses = []
                self._resolved_at = self._clock()
                if addresses:
                    known = {e.host: e for e in self._endpoints}
                    self._endpoints = [
                        known.get(a) or Endpoint(a, self.port, PeakEwma(clock=self._clock),
                                                 CircuitBreaker(self._breaker, clock=self._clock))
                        for a in sorted(set(addresses))
                    ]
            if not self._endpoints:
                raise NoEndpointAvailableError(
                    f"The name {self.name} resolves to no address.",
                    hint="Check the headless service name and that it has ready pods.",
                )
            return list(self._endpoints)


def _resolve(name: str, port: int) -> list[str]:
    return [str(info[4][0]) for info in socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)]


class Balancer:
    """Power of two choices over peak-EWMA cost among endpoints whose breaker allows traffic."""

    def __init__(self, endpoints: StaticEndpoints | DnsEndpoints, *, service: str,
                 rng: random.Random | None = None) -> None:
        self.endpoints = endpoints
        self.service = service
        self._rng = rng or random.Random()

    def pick(self, exclude: Endpoint | None = None) -> Endpoint:
        """An endpoint to send to now; prefers not to repeat ``exclude`` (the one that just failed)."""
        for _ in range(4):
            candidates = [e for e in self.endpoints.current() if e.breaker.available()]
            if exclude is not None and len(candidates) > 1:
                candidates = [e for e in candidates if e is not exclude]
            if not candidates:
                break
            if len(candidates) == 1:
                choice = candidates[0]
            else:
                a, b = self._rng.sample(candidates, 2)
                choice = a if a.latency.cost() <= b.latency.cost() else b
            if choice.breaker.acquire():
                return choice
        raise NoEndpointAvailableError(
            f"Every endpoint of {self.service} is failing (circuit open after consecutive failures).",
            hint="The service is unhealthy; requests resume automatically when an endpoint recovers.",
        )
