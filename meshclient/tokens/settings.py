"""The lifecycle knobs every token provider shares, as one value passed as ``refresh=``.

One small frozen object instead of the same five keywords on every provider: a provider's
constructor then lists only what identifies its source (URL, client id, file, variable...),
plus ``refresh=`` and, for providers that call an issuer themselves, ``outbound=``
(:class:`meshclient.outbound.OutboundSettings`). It pickles with the provider, so an executor
refreshes the way the driver was told to.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["RefreshSettings", "Clock", "Sleep", "DEFAULT_REFRESH_MARGIN", "DEFAULT_REFRESH_FRACTION"]

#: A token turns stale this long before expiry at most (seconds): the Databricks SDK's
#: 5 minutes, which covers 99.99 % monthly availability of an issuer.
DEFAULT_REFRESH_MARGIN = 300.0
#: ... or this fraction of its lifetime, if smaller, so short-lived tokens are not stale at birth.
DEFAULT_REFRESH_FRACTION = 0.2

#: Seconds since the epoch.
Clock = Callable[[], float]
#: Waits the given seconds (between retries of a token request).
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class RefreshSettings:
    """When a provider refreshes its token, and the clock and sleep it does it with.

    Args:
        margin, fraction: a token turns stale ``min(margin, fraction * lifetime)`` before
            expiry; callers keep using it while one refresh runs aside.
        background: keep a daemon thread that refreshes each token when it turns stale, so
            requests never see a stale one (stopped by ``close()``).
        clock: seconds since the epoch (default ``time.time``); tests inject a fake one.
        sleep: how to wait between token-request retries (default: a wait that ``close()``
            interrupts); tests inject one that records instead of waiting.
    """

    margin: float = DEFAULT_REFRESH_MARGIN
    fraction: float = DEFAULT_REFRESH_FRACTION
    background: bool = False
    clock: Clock | None = None
    sleep: Sleep | None = None

    def __post_init__(self) -> None:
        if self.margin < 0 or not 0 <= self.fraction < 1:
            raise ValueError("RefreshSettings.margin must be >= 0 and RefreshSettings.fraction in [0, 1)")
