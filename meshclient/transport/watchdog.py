"""Bound a response body's read by the request's deadline.

A server that trickles bytes keeps every single ``recv`` under the read timeout, so only a
watch on the whole read can enforce a deadline: when it passes, the socket is shut down and the
read fails (the pipeline then reports :class:`~meshclient.DeadlineExceededError`). The watch
disarms itself once the body is done: it shuts the socket only while this response still holds
the connection, never a connection already back in the pool serving another request.
"""

from __future__ import annotations

import socket
import threading
from typing import Any

__all__ = ["BodyWatchdog"]


class BodyWatchdog:
    """A timer that shuts down ``raw``'s socket after ``seconds`` unless cancelled first."""

    def __init__(self, raw: Any, seconds: float) -> None:
        self._raw = raw
        self._conn = raw.connection
        self._lock = threading.Lock()
        self._armed = True
        self._timer = threading.Timer(max(0.0, seconds), self._fire)
        self._timer.daemon = True

    @classmethod
    def start(cls, raw: Any, seconds: float | None) -> BodyWatchdog | None:
        """A started watchdog, or ``None`` without a deadline or a live connection."""
        if seconds is None or getattr(raw.connection, "sock", None) is None:
            return None
        dog = cls(raw, seconds)
        dog._timer.start()
        return dog

    def _fire(self) -> None:
        with self._lock:
            if not self._armed or self._raw.connection is not self._conn:  # done, or back in the pool
                return
            sock = getattr(self._conn, "sock", None)
            if sock is None:
                return
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        with self._lock:
            self._armed = False
        self._timer.cancel()
