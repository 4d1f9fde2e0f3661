"""The recording app: remembers every request whole (headers and body) and echoes it back.

For the peers that stand in for a Linkerd proxy (stunnel, nginx) in tests that must see exactly
what crossed the terminator, including the headers the sandbox's :class:`~.echo.EchoApp` keeps
out of its answer. It runs on the same app server as every other sandbox app (:mod:`._base`).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Any

from ._base import App, Request

__all__ = ["RecordedRequest", "RecordingApp"]

MAX_BODY = 64 * 1024 * 1024


@dataclass(frozen=True)
class RecordedRequest:
    """One request the app received (behind the TLS terminator)."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    client_port: int  # the terminator's side of the plain-HTTP connection

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "path": self.path, "headers": self.headers,
                "body": self.body.decode("utf-8", "replace"), "body_len": len(self.body),
                "client_port": self.client_port}


class RecordingApp(App):
    """Answers every request with its own JSON description and keeps it in :attr:`requests`."""

    name = "recording"

    def __init__(self, host: str = "127.0.0.1", **kwargs: Any) -> None:
        super().__init__(host=host, **kwargs)
        self._seen: list[RecordedRequest] = []
        self._lock = threading.Lock()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._seen)

    def handle(self, request: Request) -> None:
        target = request.path + (f"?{request.query}" if request.query else "")
        seen = RecordedRequest(request.method, target, dict(request.headers.items()),
                               request.body.read_all(MAX_BODY), request.client_port)
        with self._lock:
            self._seen.append(seen)
        request.send_bytes(200, json.dumps(seen.to_json()).encode(), "application/json")  # HEAD: headers only
