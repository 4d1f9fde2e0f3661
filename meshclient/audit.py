"""Audit events: one structured record per request, for SOC 2 / GDPR review.

An event names both verified identities, what was done and how it went — never a token, key,
secret or query value (the URL keeps query *names* only). Sinks: Python logging as JSON lines,
an append-only file, or any callable (``MeshClient(audit=print)``).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
import re
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["AuditEvent", "AuditSink", "LoggingAuditSink", "FileAuditSink", "as_audit_sink", "TraceContext"]

AuditSink = Callable[["AuditEvent"], None]
_TRACEPARENT = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")


@dataclass(frozen=True)
class TraceContext:
    """W3C trace context: propagated from an incoming ``traceparent`` or created."""

    trace_id: str
    parent_id: str
    flags: str = "01"

    @classmethod
    def from_headers(cls, headers: Mapping[str, str] | None) -> TraceContext:
        value = (headers or {}).get("traceparent") if headers else None
        if value:
            m = _TRACEPARENT.match(value.strip().lower())
            if m and m.group(2) != "0" * 32 and m.group(3) != "0" * 16:
                return cls(trace_id=m.group(2), parent_id=secrets.token_hex(8), flags=m.group(4))
        return cls(trace_id=secrets.token_hex(16), parent_id=secrets.token_hex(8))

    @property
    def header(self) -> str:
        return f"00-{self.trace_id}-{self.parent_id}-{self.flags}"


@dataclass(frozen=True)
class AuditEvent:
    """One request, as the audit log records it."""

    time: str
    client_identity: str
    server_identity: str
    verified_server_identity: str | None
    token_subject: str | None
    method: str
    url: str
    status: int | None
    bytes_sent: int | None
    bytes_received: int | None
    duration_ms: float
    attempts: int
    idempotency_key: str | None
    trace_id: str
    outcome: str
    error: str | None = None
    endpoint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    @staticmethod
    def now() -> str:
        return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class LoggingAuditSink:
    """JSON lines on a Python logger (``meshclient.audit`` by default, level INFO)."""

    def __init__(self, logger: logging.Logger | str = "meshclient.audit", level: int = logging.INFO) -> None:
        self.logger = logging.getLogger(logger) if isinstance(logger, str) else logger
        self.level = level

    def __call__(self, event: AuditEvent) -> None:
        self.logger.log(self.level, event.to_json())


class FileAuditSink:
    """Appends JSON lines to a file (created 0600), one write per event, thread-safe."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._lock = threading.Lock()
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._fh = os.fdopen(fd, "a", encoding="utf-8")

    def __call__(self, event: AuditEvent) -> None:
        line = event.to_json() + "\n"
        with self._lock:
            self._fh.write(line)
            self._fh.flush()

    def close(self) -> None:
        with self._lock:
            self._fh.close()

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["path"])  # type: ignore[misc]


def as_audit_sink(audit: AuditSink | str | os.PathLike[str] | logging.Logger | bool | None) -> AuditSink | None:
    """``MeshClient(audit=...)``: a callable, ``True``/``"logging"`` (the ``meshclient.audit`` logger),
    a ``logging.Logger``, or a file path."""
    if audit is None or audit is False:
        return None
    if audit is True or audit == "logging":
        return LoggingAuditSink()
    if isinstance(audit, logging.Logger):
        return LoggingAuditSink(audit)
    if isinstance(audit, (str, os.PathLike)):
        return FileAuditSink(audit)
    if callable(audit):
        return audit
    raise TypeError("audit must be a callable, True, a logging.Logger or a file path")
