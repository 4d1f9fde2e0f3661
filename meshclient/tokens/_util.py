"""Small helpers shared by the token providers: time, JWT peeking, redaction, URL checks."""

from __future__ import annotations

import datetime as _dt
import ipaddress
from typing import Any
from urllib.parse import urlsplit

from ..errors import ConfigurationError

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


def is_loopback_host(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_endpoint_url(url: str, what: str) -> str:
    """Refuse anything but https (plain http only on loopback, for local test issuers)."""
    if not isinstance(url, str) or not url:
        raise ConfigurationError(f"{what} must be a URL, got {url!r}.")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(
            f"{what} {url!r} is not an http(s) URL.",
            hint="Use the issuer's token endpoint, e.g. https://login.example.com/oauth2/v1/token.",
        )
    if parts.username or parts.password:
        raise ConfigurationError(f"{what} must not carry credentials in the URL.")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"{what} {url!r} uses plain http: client secrets and tokens would cross the network in clear.",
            hint="Use https (plain http is accepted for loopback test issuers only).",
        )
    return url
