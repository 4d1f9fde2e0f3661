"""The one lifecycle every token provider shares (the value types are in :mod:`.token`).

Modelled on google-auth's ``token_state`` (fresh / stale / invalid) and the Databricks SDK's
``Refreshable`` (one lock, re-check after taking it), with what both lack for a client used
by many threads and shipped to Spark executors:

* **single flight**: however many threads ask, one refresh runs at a time. A thread holding a
  still-valid *stale* token never waits (the refresh runs on a helper thread); a thread whose
  token is *expired* waits for that one refresh, and if it fails gets its error instead of
  starting another (so an outage is not hammered by every waiting thread).
* **refresh ahead**: a token turns stale ``min(5 min, 20 % of its lifetime)`` before expiry.
* **outage tolerance**: a failed refresh keeps the cached token while it is valid, and turns
  into a :class:`~meshclient.tokens.TokenExpiredError` only when it has really expired.
* **401 handling**: :meth:`BaseTokenProvider.on_unauthorized` drops the rejected token (only
  if it is still the current one, so N concurrent 401s cause one refresh) and fetches anew.
* **pickling**: locks, threads, sessions and cached tokens are dropped and rebuilt on arrival.
* **fork**: PySpark's worker daemon forks; a child gets new locks (one held by another thread
  at fork time would deadlock it), no threads, and new HTTP sessions, and keeps the token.
"""

from __future__ import annotations

import abc
import logging
import os
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from ..redaction import redact_text
from .claims import fmt_ts
from .errors import TokenError, TokenExpiredError, TokenUnavailableError
from .settings import DEFAULT_REFRESH_FRACTION, DEFAULT_REFRESH_MARGIN, Clock, RefreshSettings, Sleep
from .token import Token, TokenProvider, TokenState

__all__ = [
    "BaseTokenProvider",
    "RefreshSettings",
    "Token",
    "TokenState",
    "TokenProvider",
    "DEFAULT_REFRESH_MARGIN",
    "DEFAULT_REFRESH_FRACTION",
    "Clock",
    "Sleep",
]

log = logging.getLogger("meshclient.tokens")


@dataclass(frozen=True)
class _Cached:
    token: Token
    obtained: float
    refresh_at: float | None
    expires: float | None

    def state(self, now: float) -> TokenState:
        if self.expires is not None and now >= self.expires:
            return TokenState.EXPIRED
        if self.refresh_at is not None and now >= self.refresh_at:
            return TokenState.STALE
        return TokenState.FRESH


class BaseTokenProvider(abc.ABC):
    """The shared lifecycle. Subclasses implement :meth:`_fetch` (and :meth:`_describe`).

    ``refresh`` (:class:`~meshclient.tokens.RefreshSettings`) says when a token turns stale,
    whether a background thread refreshes ahead, and which clock and sleep to use.
    """

    #: longest single wait of the background thread, so it notices a changed clock or close().
    _bg_tick: ClassVar[float] = 5.0
    #: attributes a subclass rebuilds after unpickling (sessions, SDK clients, parsed keys).
    _transient: ClassVar[tuple[str, ...]] = ()
    _runtime: ClassVar[tuple[str, ...]] = (
        "_cond",
        "_cached",
        "_refreshing",
        "_attempts",
        "_last_error",
        "_retry_not_before",
        "_async_thread",
        "_bg_thread",
        "_stop",
        "_closed",
        "_warned_for",
    )

    _cond: threading.Condition
    _cached: _Cached | None
    _refreshing: bool
    _attempts: int
    _last_error: TokenError | None
    _retry_not_before: float
    _async_thread: threading.Thread | None
    _bg_thread: threading.Thread | None
    _stop: threading.Event
    _closed: bool
    _warned_for: _Cached | None

    def __init__(self, *, refresh: RefreshSettings | None = None) -> None:
        self.refresh_settings = refresh or RefreshSettings()
        self._init_runtime()

    # ---- subclass hooks -------------------------------------------------------------------
    @abc.abstractmethod
    def _fetch(self) -> Token:
        """Get a new token from the source (one call; may raise)."""

    def _describe(self) -> str:
        """Names the source in messages (URL, client id, file, variable; never a secret)."""
        return type(self).__name__

    def _secrets(self) -> Iterable[str | None]:
        """Values that must never appear in a message (masked by :func:`~meshclient.redaction.redact_text`)."""
        return ()

    def _outdated(self, token: Token) -> bool:
        """Cheap check, on every :meth:`token` call, that the source now holds something else."""
        return False

    def _refresh_at(self, token: Token, obtained: float) -> float | None:
        exp = token.expires_ts
        if exp is None:
            return None
        lifetime = max(0.0, exp - obtained)
        return exp - min(self.refresh_settings.margin, self.refresh_settings.fraction * lifetime)

    def _rebuild(self) -> None:  # noqa: B027 - optional hook
        """Recreate what :attr:`_transient` dropped (called after unpickling)."""

    def _release(self) -> None:  # noqa: B027 - optional hook
        """Close sessions and the like (called by :meth:`close`)."""

    def _forked(self) -> None:  # noqa: B027 - optional hook
        """Drop what a forked child must not share with its parent (pooled connections)."""

    # ---- public API -----------------------------------------------------------------------
    def token(self) -> Token:
        """A valid token: the cached one while fresh, else after (at most) one refresh."""
        if self._closed:
            raise TokenError(f"{self._describe()} is closed.", hint="Create a new provider.")
        if self.refresh_settings.background and self._bg_thread is None:
            self._start_background()
        now = self._now()
        cached = self._cached
        if cached is not None:
            state = cached.state(now)
            if not self._is_outdated(cached.token):
                if state is TokenState.FRESH:
                    return cached.token
                if state is TokenState.STALE:
                    self._refresh_async(cached, now)
                    return cached.token
            elif state is not TokenState.EXPIRED:
                # The source changed (file swapped, variable reset): take the new token now,
                # but a broken new one (half-written file) must not break a valid cached one.
                try:
                    return self._refresh_blocking(cached)
                except TokenError as exc:
                    if self._warned_for is not cached:
                        self._warned_for = cached
                        log.warning("%s: keeping the cached token: %s", self._describe(), exc.message)
                    return cached.token
        return self._refresh_blocking(cached)

    def authorization_header(self) -> str:
        """``"Bearer <token>"`` for the ``Authorization`` header of a mesh request."""
        return self.token().authorization

    def invalidate(self, token: Token | None = None) -> None:
        """Forget the cached token so the next :meth:`token` fetches a new one.

        With ``token``, only if it is still the cached one: concurrent callers that saw the
        same rejected token cause one refresh, not one each.
        """
        with self._cond:
            cached = self._cached
            if cached is None:
                return
            if token is None or cached.token.value == token.value:
                self._cached = None
                log.debug("%s: token %s invalidated", self._describe(), cached.token.fingerprint)

    def on_unauthorized(self, authorization: str | None = None) -> bool:
        """Call after a 401 answer to a request that carried ``authorization``.

        Drops that token if it is still current, gets a new one and returns whether a retry
        is worth it (the new token differs from the rejected one). Raises
        :class:`~meshclient.tokens.TokenError` when no new token can be had.
        """
        cached = self._cached
        if authorization is not None and cached is not None and cached.token.authorization != authorization:
            return True  # someone already replaced it
        rejected = cached.token if cached is not None else None
        if rejected is not None:
            self.invalidate(rejected)
        fresh = self.token()
        if authorization is not None:
            return fresh.authorization != authorization
        return rejected is None or fresh.value != rejected.value

    @property
    def state(self) -> TokenState:
        """State of the cached token now (``EXPIRED`` when there is none)."""
        cached = self._cached
        return TokenState.EXPIRED if cached is None else cached.state(self._now())

    def close(self) -> None:
        """Stop the background thread (if any) and release connections. Idempotent."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._stop.set()
        t = self._bg_thread
        if t is not None and t is not threading.current_thread():
            t.join(timeout=10)
        self._release()

    def __enter__(self) -> BaseTokenProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return self._describe()

    # ---- pickling -------------------------------------------------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for name in (*self._runtime, *self._transient):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        for name in self._transient:
            setattr(self, name, None)
        self._init_runtime()
        self._rebuild()

    # ---- lifecycle internals -------------------------------------------------------------
    def _init_runtime(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._cached = None
        self._refreshing = False
        self._attempts = 0
        self._last_error = None
        self._retry_not_before = 0.0
        self._async_thread = None
        self._bg_thread = None
        self._stop = threading.Event()
        self._closed = False
        self._warned_for = None
        _LIVE.add(self)

    def _reset_after_fork(self) -> None:
        """In a forked child: fresh locks and no threads; the cached token stays valid."""
        self._cond = threading.Condition(threading.Lock())
        self._refreshing = False
        self._async_thread = None
        self._bg_thread = None
        self._stop = threading.Event()
        if self._closed:
            self._stop.set()
        self._forked()

    def _now(self) -> float:
        return (self.refresh_settings.clock or time.time)()

    def _sleep(self, seconds: float) -> bool:
        """Wait ``seconds``; ``False`` if the provider was closed meanwhile (stop retrying)."""
        if self.refresh_settings.sleep is not None:
            self.refresh_settings.sleep(seconds)
            return not self._stop.is_set()
        return not self._stop.wait(seconds)

    def _is_outdated(self, token: Token) -> bool:
        try:
            return self._outdated(token)
        except Exception:  # the refresh reports the problem properly
            return True

    def _wrap(self, exc: Exception) -> TokenError:
        if isinstance(exc, TokenError):
            return exc
        detail = redact_text(str(exc), self._all_secrets()) or type(exc).__name__
        err = TokenUnavailableError(f"{self._describe()}: could not get a token: {type(exc).__name__}: {detail}")
        err.__cause__ = exc
        return err

    def _all_secrets(self) -> list[str | None]:
        cached = self._cached
        return [*self._secrets(), cached.token.value if cached is not None else None]

    def _refresh_blocking(self, seen: _Cached | None) -> Token:
        with self._cond:
            start = self._attempts
            while True:
                cur = self._cached
                if cur is not None and cur is not seen and cur.state(self._now()) is not TokenState.EXPIRED:
                    return cur.token
                if self._closed:
                    raise TokenError(f"{self._describe()} is closed.", hint="Create a new provider.")
                if self._refreshing:
                    self._cond.wait()
                    continue
                if self._attempts != start and self._last_error is not None:
                    # The refresh we waited for failed: report it instead of starting another.
                    raise self._failure(seen, self._last_error)
                self._refreshing = True
                break
        result = self._run_refresh(seen)
        if isinstance(result, TokenError):
            raise self._failure(seen, result)
        return result

    def _refresh_async(self, seen: _Cached, now: float) -> None:
        with self._cond:
            if self._refreshing or self._closed or now < self._retry_not_before or self._cached is not seen:
                return
            self._refreshing = True
            t = threading.Thread(
                target=self._async_main, args=(seen,), name=f"meshclient-token-refresh-{id(self):x}", daemon=True
            )
            self._async_thread = t
        t.start()

    def _async_main(self, seen: _Cached) -> None:
        result = self._run_refresh(seen)
        if isinstance(result, TokenError):
            self._note_async_failure(seen, result)

    def _note_async_failure(self, seen: _Cached | None, err: TokenError) -> None:
        now = self._now()
        left = (seen.expires - now) if seen is not None and seen.expires is not None else 60.0
        # Try again before expiry, but do not turn every request into a token request.
        self._retry_not_before = now + min(30.0, max(1.0, left / 3))
        if seen is not None and seen.state(now) is not TokenState.EXPIRED:
            log.warning(
                "%s: refreshing the token failed; the cached token stays in use until %s: %s",
                self._describe(),
                fmt_ts(seen.expires),
                err.message,
            )
        else:
            log.warning("%s: getting a token failed: %s", self._describe(), err.message)

    def _run_refresh(self, seen: _Cached | None) -> Token | TokenError:
        """Fetch once (the caller set ``_refreshing``); store the token or the error."""
        token: Token | None = None
        err: TokenError | None = None
        obtained = self._now()
        try:
            try:
                token = self._fetch()
            except Exception as exc:
                err = self._wrap(exc)
            if token is not None:
                exp = token.expires_ts
                if exp is not None and self._now() >= exp:
                    err = TokenExpiredError(
                        f"{self._describe()} handed out a token that expired at {fmt_ts(exp)}.",
                        hint=self._expired_hint(),
                    )
                    token = None
        finally:
            with self._cond:
                self._refreshing = False
                self._attempts += 1
                if token is not None:
                    self._cached = _Cached(token, obtained, self._refresh_at(token, obtained), token.expires_ts)
                    self._last_error = None
                    self._retry_not_before = 0.0
                else:
                    err = err or TokenUnavailableError(f"{self._describe()}: the refresh was interrupted.")
                    self._last_error = err
                self._cond.notify_all()
        if token is None:
            assert err is not None
            return err
        log.debug(
            "%s: new token %s (subject %s) expires %s",
            self._describe(),
            token.fingerprint,
            token.subject,
            fmt_ts(token.expires_ts),
        )
        return token

    def _expired_hint(self) -> str | None:
        return None

    def _failure(self, seen: _Cached | None, err: TokenError) -> TokenError:
        """The error for a caller that needed a token: say so plainly if the cached one expired."""
        if (
            seen is not None
            and seen.expires is not None
            and isinstance(err, TokenUnavailableError)
            and not isinstance(err, TokenExpiredError)
            and self._now() >= seen.expires
        ):
            expired = TokenExpiredError(
                f"The cached token from {self._describe()} expired at {fmt_ts(seen.expires)} and no new one "
                f"could be obtained: {err.message}",
                hint=err.hint or "Check that the token issuer is reachable and healthy.",
            )
            expired.__cause__ = err
            return expired
        return err

    # ---- background refresh --------------------------------------------------------------
    def _start_background(self) -> None:
        with self._cond:
            if self._bg_thread is not None or self._closed:
                return
            t = threading.Thread(target=self._background_main, name=f"meshclient-token-bg-{id(self):x}", daemon=True)
            self._bg_thread = t
        t.start()

    def _background_delay(self) -> float:
        now = self._now()
        cached = self._cached
        wait_until = self._retry_not_before
        if cached is not None:
            if cached.refresh_at is None:
                return 3600.0  # never stale: nothing to do, look again later
            wait_until = max(wait_until, cached.refresh_at)
        return max(0.0, wait_until - now)

    def _background_main(self) -> None:
        while not self._stop.is_set():
            delay = self._background_delay()
            if delay > 0:
                if self._stop.wait(min(delay, self._bg_tick)):
                    return
                continue
            with self._cond:
                if self._closed:
                    return
                if self._refreshing:
                    self._cond.wait(timeout=1.0)
                    continue
                cached = self._cached
                if cached is not None and cached.state(self._now()) is TokenState.FRESH:
                    continue  # someone refreshed meanwhile
                self._refreshing = True
            result = self._run_refresh(cached)
            if isinstance(result, TokenError):
                self._note_async_failure(cached, result)


# Every live provider, so a forked child can reset them all (weak: providers die normally).
_LIVE: weakref.WeakSet[BaseTokenProvider] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for provider in list(_LIVE):
        provider._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
