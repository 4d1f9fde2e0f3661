"""One audit event per file of a push or pull (method ``PUSH`` / ``PULL``), next to its requests' events.

The client already records every request (a file's ``PUT`` with its retries as attempts, the
verification ``HEAD``); this event is the file's own line for reviewers: which file, how big,
its sha-256, how it was verified, and whether it made it. It goes to the client's audit sink
(``MeshClient(audit=...)``) and shares the push's trace id with its requests.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..audit import AuditEvent, FileAuditSink, as_audit_sink

__all__ = ["ArtifactAuditEvent", "AuditEmitter"]


@dataclass(frozen=True)
class ArtifactAuditEvent(AuditEvent):
    """A file pushed or pulled: ``path``, ``size``, ``sha256``, ``verified`` (digest, size, read, none)."""

    path: str = ""
    size: int | None = None
    sha256: str | None = None
    verified: str | None = None


class AuditEmitter:
    """Builds and sends the per-file events of one push or pull to the client's audit sink."""

    def __init__(self, client: Any, verb: str, server_identity: str, trace_id: str) -> None:
        config = client.config()
        self._sink: Callable[[AuditEvent], None] | None = as_audit_sink(config.audit)
        # a path in the config: this is our own handle on the file, closed at the end
        self._owned = isinstance(config.audit, (str, os.PathLike)) and isinstance(self._sink, FileAuditSink)
        self.verb = verb
        self.client_identity = str(client.identity)
        self.server_identity = server_identity
        self.trace_id = trace_id

    def file(self, url: str, path: str, *, size: int | None, sha256: str | None, verified: str | None,
             seconds: float, attempts: int, error: str | None = None) -> None:
        if self._sink is None:
            return
        event = ArtifactAuditEvent(
            time=AuditEvent.now(), client_identity=self.client_identity, server_identity=self.server_identity,
            verified_server_identity=None if error else self.server_identity, token_subject=None, method=self.verb,
            url=url, status=None, bytes_sent=size if self.verb == "PUSH" and not error else None,
            bytes_received=size if self.verb == "PULL" and not error else None, duration_ms=round(seconds * 1000, 3),
            attempts=attempts, idempotency_key=None, trace_id=self.trace_id, outcome="failed" if error else "ok",
            error=error, path=path, size=size, sha256=sha256, verified=verified)
        try:
            self._sink(event)
        except Exception:  # the audit sink must not fail a transfer that happened
            import logging

            logging.getLogger("meshclient.artifacts").exception("the audit sink raised")

    def close(self) -> None:
        if self._owned and isinstance(self._sink, FileAuditSink):
            self._sink.close()
