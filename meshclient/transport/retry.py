"""What may be retried, and how long to wait: the rules of one request's retry loop.

A failure before the request was sent (connection refused, TLS handshake dropped) is retried
whatever the method: nothing reached the server. Anything else is retried only when sending it
twice cannot do harm — an idempotent method or an ``Idempotency-Key`` header — and the failure
is worth another attempt (502/503/504/429, a reset or a timeout while waiting for the answer).
The body must be replayable (bytes, or a seekable file rewound to where it started); streams
never are. A plain POST is never sent twice. Every attempt shares one deadline, and every retry is paid for from
the client's :class:`~meshclient.transport.budget.RetryBudget`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from ..retry_after import parse_retry_after

__all__ = ["RetryPolicy", "parse_retry_after", "IDEMPOTENT_METHODS", "RETRYABLE_STATUSES"]

IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
RETRY_AFTER_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """Retry settings for a client (Linkerd's numbers by default).

    Args:
        max_attempts: attempts per request including the first (the budget usually binds first).
        min_backoff / max_backoff: full-jitter exponential backoff bounds, in seconds.
        max_retry_after: the longest ``Retry-After`` honoured; longer answers are returned as they are.
        retry_statuses: statuses worth another attempt.
    """

    max_attempts: int = 3
    min_backoff: float = 0.025
    max_backoff: float = 0.25
    max_retry_after: float = 10.0
    retry_statuses: frozenset[int] = field(default=RETRYABLE_STATUSES)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        if not 0 <= self.min_backoff <= self.max_backoff:
            raise ValueError("need 0 <= min_backoff <= max_backoff")

    @classmethod
    def disabled(cls) -> RetryPolicy:
        return cls(max_attempts=1)

    def backoff(self, retry_number: int, rng: random.Random | None = None) -> float:
        """Full jitter: uniform in [0, min(max_backoff, min_backoff * 2**n)], at least min_backoff / 2."""
        cap = min(self.max_backoff, self.min_backoff * (2 ** min(max(0, retry_number), 32)))
        r = (rng or random).uniform(0.0, cap)
        return max(self.min_backoff / 2, r)

    def method_allows_retry(self, method: str, headers: object) -> bool:
        if method.upper() in IDEMPOTENT_METHODS:
            return True
        get = getattr(headers, "get", None)
        return bool(get and get("Idempotency-Key"))
