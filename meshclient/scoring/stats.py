"""Figures of a scoring run: rows, requests, retries and request latency percentiles.

Latencies go into a fixed log-scale histogram (buckets 5 % apart) so figures from many Spark
tasks merge by adding counts, and p50/p99 are within one bucket of the exact value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from ..audit import AuditEvent

__all__ = ["ScoringStats", "ScoringAuditEvent", "bucket_of", "bucket_seconds"]

_RATIO = 1.05
_BASE = 1e-5  # 10 µs: bucket 0


def bucket_of(seconds: float) -> int:
    if seconds <= _BASE:
        return 0
    return 1 + int(math.log(seconds / _BASE, _RATIO))


def bucket_seconds(bucket: int) -> float:
    """The upper edge of ``bucket`` (what a percentile in it reports)."""
    return float(_BASE * _RATIO ** bucket)


@dataclass
class ScoringStats:
    """Counters of one scoring run (or of many, merged)."""

    rows: int = 0
    requests: int = 0  #: scoring requests (one per batch)
    retries: int = 0  #: extra attempts the client made for them
    failed_rows: int = 0  #: rows whose batch failed (``on_error="null"``)
    histogram: dict[int, int] = field(default_factory=dict)

    def record(self, rows: int, seconds: float, attempts: int) -> None:
        self.rows += rows
        self.requests += 1
        self.retries += max(0, attempts - 1)
        b = bucket_of(seconds)
        self.histogram[b] = self.histogram.get(b, 0) + 1

    def merge(self, other: ScoringStats) -> ScoringStats:
        self.rows += other.rows
        self.requests += other.requests
        self.retries += other.retries
        self.failed_rows += other.failed_rows
        for b, n in other.histogram.items():
            self.histogram[b] = self.histogram.get(b, 0) + n
        return self

    def percentile(self, q: float) -> float | None:
        """The ``q`` quantile (0-1) of request latency in seconds (``None`` before any request)."""
        total = sum(self.histogram.values())
        if not total:
            return None
        rank, seen = max(1, math.ceil(q * total)), 0
        for b in sorted(self.histogram):
            seen += self.histogram[b]
            if seen >= rank:
                return bucket_seconds(b)
        return bucket_seconds(max(self.histogram))

    @property
    def p50(self) -> float | None:
        return self.percentile(0.5)

    @property
    def p99(self) -> float | None:
        return self.percentile(0.99)

    def to_dict(self) -> dict[str, Any]:
        return {"rows": self.rows, "requests": self.requests, "retries": self.retries,
                "failed_rows": self.failed_rows, "p50_seconds": self.p50, "p99_seconds": self.p99}

    def __str__(self) -> str:
        def ms(v: float | None) -> str:
            return "-" if v is None else f"{v * 1000:.1f} ms"
        return (f"{self.rows} rows in {self.requests} requests ({self.retries} retries), "
                f"latency p50 {ms(self.p50)}, p99 {ms(self.p99)}"
                + (f", {self.failed_rows} rows failed" if self.failed_rows else ""))


@dataclass(frozen=True)
class ScoringAuditEvent(AuditEvent):
    """A scoring job's summary in the audit log (method ``SCORE``), next to its requests' events."""

    rows: int = 0
    requests: int = 0
    retries: int = 0
    failed_rows: int = 0
    p50_ms: float | None = None
    p99_ms: float | None = None

    @classmethod
    def of(cls, stats: ScoringStats, *, client_identity: str, server_identity: str, url: str,
           seconds: float) -> ScoringAuditEvent:
        def ms(v: float | None) -> float | None:
            return None if v is None else round(v * 1000, 3)

        return cls(time=AuditEvent.now(), client_identity=client_identity, server_identity=server_identity,
                   verified_server_identity=None, token_subject=None, method="SCORE", url=url, status=None,
                   bytes_sent=None, bytes_received=None, duration_ms=round(seconds * 1000, 3),
                   attempts=stats.requests + stats.retries, idempotency_key=None, trace_id="",
                   outcome="partial" if stats.failed_rows else "ok", rows=stats.rows, requests=stats.requests,
                   retries=stats.retries, failed_rows=stats.failed_rows, p50_ms=ms(stats.p50), p99_ms=ms(stats.p99))
