"""The one ``Retry-After`` parser (RFC 9110 §10.2.3), for mesh and outbound calls alike."""

from __future__ import annotations

import datetime
import email.utils
import re
import time

__all__ = ["parse_retry_after"]

_DELTA_SECONDS = re.compile(r"^[0-9]{1,10}$")  # ASCII digits only: str.isdigit() accepts '²'


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if _DELTA_SECONDS.match(value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # asctime form or "-0000": HTTP dates are always GMT (RFC 9110 §5.6.7)
        when = when.replace(tzinfo=datetime.timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
