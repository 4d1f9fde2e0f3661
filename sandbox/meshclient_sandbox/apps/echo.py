"""The echo app: tells a client what the server side saw, for demos and tests.

Any request gets JSON with the caller's ``l5d-client-id`` (as set by the proxy), method,
path, a few headers (never ``Authorization`` or ``Cookie``), the bearer token's subject
(never the token) and the body's length and SHA-256, computed as it streams by.
``GET /bytes/<n>`` streams ``n`` deterministic bytes (``?chunked=1`` for chunked framing),
for download tests.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import Any

from ._base import App, AppError, Request

__all__ = ["EchoApp", "pattern_bytes"]

_SELECTED = ("host", "user-agent", "accept", "accept-encoding", "content-type", "content-length",
             "transfer-encoding", "traceparent")
_NEVER = ("authorization", "proxy-authorization", "cookie")
_BYTES = re.compile(r"^/bytes/([0-9]{1,12})$")
_BLOCK = bytes(range(256)) * 4096  # 1 MiB
MAX_GENERATED = 64 * 1024**3


def pattern_bytes(n: int, offset: int = 0) -> Iterator[bytes]:
    """The bytes ``/bytes/<n>`` sends: 0..255 repeating, in pieces of up to 1 MiB."""
    pos = offset % len(_BLOCK)
    while n > 0:
        piece = _BLOCK[pos : pos + n]
        yield piece
        n -= len(piece)
        pos = 0


class EchoApp(App):
    """Echoes the request as JSON (see the module doc). Constructor: see :class:`App`."""

    name = "echo"

    def handle(self, request: Request) -> None:
        match = _BYTES.match(request.path)
        if match and request.method in ("GET", "HEAD"):
            n = int(match.group(1))
            if n > MAX_GENERATED:
                raise AppError(400, "too_large", f"At most {MAX_GENERATED} bytes.")
            chunked = "chunked=1" in request.query.split("&")
            request.send_stream(200, pattern_bytes(n), length=None if chunked else n)
            return
        digest = hashlib.sha256()
        for piece in request.body.chunks():
            digest.update(piece)
        request.send_json(200, self.describe(request, digest.hexdigest(), request.body.received))

    @staticmethod
    def describe(request: Request, sha256: str, length: int) -> dict[str, Any]:
        headers: dict[str, str] = {}
        for name in {k.lower() for k in request.headers.keys()}:
            if name in _NEVER:
                continue
            if name in _SELECTED or name.startswith(("l5d-", "x-")):
                headers[name] = ", ".join(request.headers.get_all(name) or [])
        return {
            "service": "echo",
            "client_id": request.client_id,
            "method": request.method,
            "path": request.path,
            "headers": headers,
            "subject": request.subject,
            "token": request.token,
            "body": {"length": length, "sha256": sha256},
        }
