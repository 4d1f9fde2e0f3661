"""What a token says about itself, unverified: its JWT claims and their epoch timestamps.

Only for expiry and display (refresh timing, a subject in a log line); nothing here verifies a
signature, so nothing here may decide whom to trust.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

__all__ = ["utc_from_ts", "ts_from_dt", "fmt_ts", "peek_jwt", "claim_str", "claim_exp"]

_UTC = _dt.timezone.utc


def utc_from_ts(ts: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ts, _UTC)


def ts_from_dt(value: _dt.datetime) -> float:
    """Epoch seconds; a naive datetime is taken as UTC (that is what token endpoints mean)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_UTC)
    return value.timestamp()


def fmt_ts(ts: float | None) -> str:
    if ts is None:
        return "never"
    try:
        return utc_from_ts(ts).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f}"


def peek_jwt(value: str) -> dict[str, Any] | None:
    """The claims of a JWT, unverified (for expiry and display only), or ``None``."""
    if value.count(".") != 2 or not value.startswith("eyJ"):
        return None
    from .. import jose  # local: jose imports cryptography, only needed for JWT-shaped tokens

    try:
        return jose.unverified_claims(value)
    except (jose.JWTError, ValueError):
        return None


def claim_str(claims: dict[str, Any] | None, name: str) -> str | None:
    """A string claim; a list (``aud``) is joined with spaces."""
    if not claims:
        return None
    value = claims.get(name)
    if isinstance(value, str):
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return " ".join(value)
    return None


def claim_exp(claims: dict[str, Any] | None) -> float | None:
    if not claims:
        return None
    exp = claims.get("exp")
    if isinstance(exp, bool) or not isinstance(exp, (int, float)):
        return None
    return float(exp)
