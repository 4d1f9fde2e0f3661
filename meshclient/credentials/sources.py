"""Rotating identity sources, shaped like py-spiffe's ``X509Source``.

A source holds one :class:`~meshclient.Credentials` snapshot at a time and replaces it
atomically when the material changes or is due for renewal:

* the first fetch blocks (with a timeout) so a source is usable as soon as it is built;
* :meth:`IdentitySource.current` returns the whole snapshot at once (never a new certificate
  with an old key: a half-written update fails validation and is not used);
* subscribers are called after each swap, outside the lock;
* renewal follows Linkerd's proxy: at 70 % of the remaining lifetime (min 10 s, max 24 h),
  plus change detection for files and secret scopes;
* a failed refresh keeps the current snapshot, retries with backoff and warns loudly as
  expiry nears; once the snapshot has expired, :meth:`current` raises a clear error;
* :meth:`close` stops the background thread.

Sources are picklable: a pickled source carries its settings (paths, scope names, issuer
settings), and the copy in a Spark worker starts its own refresh thread on first use.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
import random
import threading
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ..errors import (
    CertificateValidityError,
    CredentialsError,
    KeyMismatchError,
    MaterialFormatError,
    MaterialNotFoundError,
    MeshError,
)
from .snapshot import Credentials, SameSubjectIssuerWarning

__all__ = ["IdentitySource", "StaticSource", "FileSource", "SecretScopeSource", "SourceStatus", "refresh_delay",
           "MIN_REFRESH", "MAX_REFRESH"]

log = logging.getLogger("meshclient.rotation")
_S = TypeVar("_S", bound="IdentitySource")

MIN_REFRESH = 10.0  # seconds (LINKERD2_PROXY_IDENTITY_MIN_REFRESH)
#: the same renewal problem is logged at its level at most this often (seconds); DEBUG between
REPEAT_LOG_INTERVAL = 300.0
MAX_REFRESH = 24 * 3600.0  # seconds (LINKERD2_PROXY_IDENTITY_MAX_REFRESH)


def refresh_delay(remaining: float, *, min_refresh: float = MIN_REFRESH, max_refresh: float = MAX_REFRESH) -> float:
    """Seconds until renewal: 70 % of the remaining lifetime, clamped like Linkerd's proxy."""
    return max(min_refresh, min(max_refresh, 0.7 * max(0.0, remaining)))


@dataclass(frozen=True)
class SourceStatus:
    """A source's health, for dashboards and ``meshclient doctor`` (no secret in it)."""

    description: str
    identity: str | None  #: the identity in use
    not_after: _dt.datetime | None
    rotations: int
    failures: int  #: consecutive failed renewals
    last_error: str | None  #: the last failure's message
    refused_identity: str | None  #: material for another identity was found and not adopted

    @property
    def healthy(self) -> bool:
        return self.failures == 0 and self.refused_identity is None


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class IdentitySource(ABC):
    """Base of rotating sources: a snapshot, a refresh thread, subscribers.

    Subclasses implement :meth:`_fetch` (build a fresh, validated snapshot) and may implement
    :meth:`_changed` (cheap change detection, polled every ``poll_interval`` seconds).
    """

    def __init__(self, *, poll_interval: float | None = 5.0, timeout: float = 30.0,
                 min_refresh: float = MIN_REFRESH, max_refresh: float = MAX_REFRESH,
                 start: bool = True, allow_identity_change: bool = False) -> None:
        #: adopt material for another identity (off: a rotation to another workload's
        #: certificate is refused, the current one kept, and the refusal logged and shown in status)
        self.allow_identity_change = allow_identity_change
        self.poll_interval = poll_interval
        self.timeout = timeout
        self.min_refresh = min_refresh
        self.max_refresh = max_refresh
        self._init_runtime()
        if start:
            self._start()

    # -- runtime state (rebuilt after unpickling) -----------------------------------------
    def _init_runtime(self) -> None:
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[Credentials], None]] = []
        self._snapshot: Credentials | None = None
        self._last_error: BaseException | None = None
        self._failures = 0
        self._next_refresh = 0.0
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._rotations = 0
        self._refused_identity: str | None = None
        self._logged: tuple[str, float] | None = None  # (what, when) of the last renewal problem logged

    def __getstate__(self) -> dict[str, Any]:
        runtime = {"_lock", "_subscribers", "_snapshot", "_last_error", "_failures", "_next_refresh", "_wake",
                   "_closed", "_thread", "_started", "_rotations", "_refused_identity", "_logged"}
        return {k: v for k, v in self.__dict__.items() if k not in runtime}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._init_runtime()  # started lazily by current()

    def _start(self) -> None:
        """First fetch (blocking, with the timeout), then the refresh thread."""
        with self._lock:
            if self._started:
                return
            self._started = True
        deadline = time.monotonic() + self.timeout
        delay = 0.2
        while True:
            try:
                snapshot = self._fetch()
                break
            except MeshError as exc:
                if time.monotonic() + delay > deadline or not self._retry_first_fetch(exc):
                    self._started = False
                    raise
                log.warning("%s: first fetch failed (%s); retrying", self.description, type(exc).__name__)
                time.sleep(delay)
                delay = min(delay * 2, 5.0)
        self._install(snapshot, initial=True)
        self._thread = threading.Thread(target=self._run, name=f"meshclient-rotation:{self.description}",
                                        daemon=True)
        self._thread.start()

    def _retry_first_fetch(self, exc: MeshError) -> bool:
        """Whether a failed first fetch may succeed soon (files mid-rotation, issuer blips).

        Not for expired or not-yet-valid material: waiting out the timeout would only delay
        the clear error the caller needs.
        """
        return not isinstance(exc, CertificateValidityError)

    # -- public API -----------------------------------------------------------------------
    @property
    @abstractmethod
    def description(self) -> str:
        """Where the material comes from (for logs and errors; no secrets)."""

    def current(self) -> Credentials:
        """The current snapshot. Raises when it has expired and renewal keeps failing."""
        if self._closed.is_set():
            raise CredentialsError(f"The identity source {self.description} is closed.",
                                   hint="Create a new source, or keep it open while clients use it.")
        if not self._started:
            self._start()
        snapshot = self._snapshot
        assert snapshot is not None
        if snapshot.not_after <= _utcnow():
            self._wake.set()
            last = f" The last renewal attempt failed: {self._last_error}" if self._last_error else ""
            raise CertificateValidityError(
                f"The mesh certificate for '{snapshot.identity}' from {self.description} expired at "
                f"{snapshot.not_after:%Y-%m-%d %H:%M:%S} UTC and no renewed certificate could be obtained.{last}",
                hint="Fix the renewal (issuer reachable, files being rotated, secret updated); requests resume "
                "as soon as a valid certificate arrives.",
            )
        return snapshot

    @property
    def generation(self) -> int:
        return self.current().generation

    @property
    def rotations(self) -> int:
        """How many times the snapshot was replaced since the first fetch."""
        return self._rotations

    def status(self) -> SourceStatus:
        """Health at a glance: the identity in use, failures, a refused identity change."""
        snap = self._snapshot
        err = self._last_error
        return SourceStatus(
            description=self.description,
            identity=str(snap.identity) if snap is not None else None,
            not_after=snap.not_after if snap is not None else None,
            rotations=self._rotations,
            failures=self._failures,
            last_error=(getattr(err, "message", None) or type(err).__name__) if err is not None else None,
            refused_identity=self._refused_identity,
        )

    def subscribe(self, callback: Callable[[Credentials], None]) -> None:
        """Call ``callback(new_snapshot)`` after every swap (on the refresh thread)."""
        with self._lock:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Callable[[Credentials], None]) -> None:
        with self._lock:
            if callback in self._subscribers:
                self._subscribers.remove(callback)

    def refresh_now(self) -> bool:
        """Fetch now (outside the schedule); True when a new snapshot was installed."""
        try:
            snapshot = self._fetch()
        except MeshError as exc:
            self._record_failure(exc)
            return False
        return self._install(snapshot)

    def close(self) -> None:
        self._closed.set()
        self._wake.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5)

    def __enter__(self: _S) -> _S:
        if not self._started:
            self._start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        snap = self._snapshot
        who = f"identity='{snap.identity}', not_after='{snap.not_after:%Y-%m-%dT%H:%M:%SZ}'" if snap else "not started"
        return f"{type(self).__name__}({self.description}, {who})"

    # -- subclass hooks -------------------------------------------------------------------
    @abstractmethod
    def _fetch(self) -> Credentials:
        """Build and validate a fresh snapshot (raise a MeshError on any problem)."""

    def _changed(self) -> bool:
        """Cheap change detection between renewals (False: no detection)."""
        return False

    # -- machinery --------------------------------------------------------------------------
    def _install(self, snapshot: Credentials, *, initial: bool = False) -> bool:
        old_snapshot = self._snapshot
        if (not initial and old_snapshot is not None and snapshot.identity != old_snapshot.identity
                and not self.allow_identity_change):
            self._refused_identity = str(snapshot.identity)
            self._record_failure(CredentialsError(
                f"{self.description} now holds a certificate for '{snapshot.identity}', not '{old_snapshot.identity}'; "
                "the change of identity was refused and the current certificate is kept.",
                hint="If the workload's identity really changed, build the source with allow_identity_change=True "
                "(servers authorize identities: expect 403s until their policies allow the new one).",
            ), level=logging.ERROR)
            return False
        with self._lock:
            self._refused_identity = None
            old = self._snapshot
            same = old is not None and old.fingerprint == snapshot.fingerprint and \
                old.trust_anchors_pem == snapshot.trust_anchors_pem
            if not same:
                self._snapshot = snapshot
                if not initial:
                    self._rotations += 1
            self._failures = 0
            self._last_error = None
            self._logged = None
            remaining = (self._snapshot.not_after - _utcnow()).total_seconds()  # type: ignore[union-attr]
            self._next_refresh = time.monotonic() + refresh_delay(remaining, min_refresh=self.min_refresh,
                                                                  max_refresh=self.max_refresh)
            subscribers = list(self._subscribers) if not same and not initial else []
        if not same and not initial:
            log.info("%s: rotated to '%s' (serial %x, valid until %s)", self.description, snapshot.identity,
                     snapshot.serial, f"{snapshot.not_after:%Y-%m-%d %H:%M:%S} UTC")
        for callback in subscribers:
            try:
                callback(snapshot)
            except Exception:  # a subscriber's bug must not stop rotation
                log.exception("%s: an update subscriber raised", self.description)
        return not same

    def _record_failure(self, exc: BaseException, *, level: int | None = None) -> None:
        with self._lock:
            self._failures += 1
            self._last_error = exc
            failures = self._failures
            snapshot = self._snapshot
            backoff = min(self.min_refresh * (2 ** min(failures - 1, 8)), 300.0)
            if snapshot is not None:
                # Never sleep past expiry; once expired, retry every min_refresh like Linkerd's
                # proxy, so requests resume soon after the issuer (or the files) come back.
                left = (snapshot.not_after - _utcnow()).total_seconds()
                backoff = self.min_refresh if left <= 0 else min(backoff, max(self.min_refresh, left / 2))
            self._next_refresh = time.monotonic() + backoff * random.uniform(0.8, 1.2)
        if snapshot is None:
            return
        remaining = (snapshot.not_after - _utcnow()).total_seconds()
        lifetime = max(1.0, (snapshot.not_after - snapshot.not_before).total_seconds())
        if level is None and remaining < 0.2 * lifetime:
            level = logging.ERROR  # loud: the current certificate is running out
        elif level is None and isinstance(exc, (KeyMismatchError, MaterialFormatError)) and failures <= 3:
            level = logging.INFO  # most likely files mid-rotation: wait for a consistent pair
        elif level is None:
            level = logging.WARNING
        message = str(getattr(exc, "message", exc))
        now = time.monotonic()
        logged = self._logged
        if level < logging.ERROR or remaining >= 0.2 * lifetime:
            # the same problem, every poll, is one line per REPEAT_LOG_INTERVAL (DEBUG in between)
            if logged is not None and logged[0] == message and now - logged[1] < REPEAT_LOG_INTERVAL:
                level = logging.DEBUG
            else:
                self._logged = (message, now)
        log.log(level, "%s: renewal failed (%s: %s); still using '%s' until %s (%.0f s left), retrying",
                self.description, type(exc).__name__, exc, snapshot.identity,
                f"{snapshot.not_after:%H:%M:%S} UTC", remaining)

    def _run(self) -> None:
        next_poll = time.monotonic() + (self.poll_interval or 3600.0)
        while not self._closed.is_set():
            now = time.monotonic()
            wait = max(0.0, min(self._next_refresh, next_poll) - now)
            self._wake.wait(wait)
            self._wake.clear()
            if self._closed.is_set():
                return
            now = time.monotonic()
            due = now >= self._next_refresh
            if not due and self.poll_interval is not None and now >= next_poll:
                next_poll = now + self.poll_interval
                try:
                    due = self._changed()
                except OSError:
                    due = True  # e.g. a file was deleted: the fetch says which, and it is logged
            if not due:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", SameSubjectIssuerWarning)
                    snapshot = self._fetch()
            except MeshError as exc:
                self._record_failure(exc)
                continue
            except Exception as exc:  # never let the refresh thread die
                log.exception("%s: unexpected error while refreshing", self.description)
                self._record_failure(exc)
                continue
            self._install(snapshot)


class StaticSource(IdentitySource):
    """A fixed snapshot behind the source interface (no rotation)."""

    def __init__(self, credentials: Credentials) -> None:
        self._credentials = credentials
        super().__init__(poll_interval=None, start=True)

    @property
    def description(self) -> str:
        return self._credentials.source

    def _fetch(self) -> Credentials:
        return self._credentials


class FileSource(IdentitySource):
    """Certificate, key and trust anchors from files, re-read when they change or renewal is due.

    Files replaced one at a time (new certificate, old key) are detected as an inconsistent
    pair and ignored until both are in place; a truncated file likewise. Works with Kubernetes
    secret volumes (``..data`` symlink swaps) and plain rewrites.
    """

    def __init__(self, cert: str | os.PathLike[str], key: str | os.PathLike[str],
                 trust_anchors: str | os.PathLike[str], *, password: bytes | str | None = None,
                 poll_interval: float = 5.0, timeout: float = 30.0, min_refresh: float = MIN_REFRESH,
                 max_refresh: float = MAX_REFRESH, allow_identity_change: bool = False) -> None:
        self.paths = (Path(cert), Path(key), Path(trust_anchors))
        self._password = password
        self._stamp: tuple[Any, ...] | None = None
        super().__init__(poll_interval=poll_interval, timeout=timeout, min_refresh=min_refresh,
                         max_refresh=max_refresh, allow_identity_change=allow_identity_change)

    @property
    def description(self) -> str:
        return "files " + ", ".join(str(p) for p in self.paths)

    def _stat(self) -> tuple[Any, ...]:
        out = []
        for p in self.paths:
            st = os.stat(p)  # follows symlinks: a ..data swap changes the target's inode
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _changed(self) -> bool:
        return self._stat() != self._stamp

    def _fetch(self) -> Credentials:
        missing = [str(p) for p in self.paths if not p.exists()]
        if missing:
            raise MaterialNotFoundError(f"{', '.join(missing)} no longer exist(s).",
                                        hint="Restore the files (a rotation writes new ones in place).")
        stamp = self._stat()
        creds = Credentials.from_files(*self.paths, password=self._password)
        if self._stat() != stamp:  # changed while reading: read again next time
            raise CredentialsError(f"The {self.description} changed while being read.",
                                   hint="meshclient retries automatically.")
        self._stamp = stamp
        return creds

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._stamp = None


class SecretScopeSource(IdentitySource):
    """The identity in a Databricks secret scope, re-read every ``poll_interval`` seconds and
    at renewal time (a platform job rotates the secret; this picks it up)."""

    def __init__(self, scope: str, *, cert_key: str = "tls.crt", key_key: str = "tls.key",
                 anchors_key: str = "ca.crt", workspace_client: Any | None = None,
                 poll_interval: float = 60.0, timeout: float = 30.0, min_refresh: float = MIN_REFRESH,
                 max_refresh: float = MAX_REFRESH, allow_identity_change: bool = False) -> None:
        self.scope = scope
        self.keys = (cert_key, key_key, anchors_key)
        self._workspace_client = workspace_client
        super().__init__(poll_interval=poll_interval, timeout=timeout, min_refresh=min_refresh,
                         max_refresh=max_refresh, allow_identity_change=allow_identity_change)

    @property
    def description(self) -> str:
        return f"secret scope '{self.scope}'"

    def _changed(self) -> bool:
        return True  # a read is the only way to know; _install ignores an identical snapshot

    def _fetch(self) -> Credentials:
        cert_key, key_key, anchors_key = self.keys
        return Credentials.from_secret_scope(self.scope, cert_key=cert_key, key_key=key_key,
                                             anchors_key=anchors_key, workspace_client=self._workspace_client)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["_workspace_client"] = None  # executors use their own unified-auth configuration
        return state
