"""Request and response bodies as the retry loop sees them: can this body be sent again, and how big.

Bytes can always be resent; a seekable file is rewound to where it started (the Databricks
SDK's rule: rewind before every retry); a generator or other stream never can, so a request
with one is sent once.
"""

from __future__ import annotations

from typing import Any

import requests

__all__ = ["Replay", "body_size", "received_size"]


class Replay:
    """Whether (and how) a prepared body can be sent again."""

    def __init__(self, prepared: requests.PreparedRequest) -> None:
        self.body: Any = prepared.body
        self.position: int | None = getattr(prepared, "_body_position", None)  # set by requests for files
        if self.body is None or isinstance(self.body, (bytes, str, bytearray)):
            self.possible = True
        else:
            seek = getattr(self.body, "seek", None)
            tell = getattr(self.body, "tell", None)
            if self.position is None and callable(tell):
                try:
                    self.position = tell()
                except OSError:
                    self.position = None
            self.possible = callable(seek) and isinstance(self.position, int)

    def rewind(self) -> bool:
        """Put the body back where it started; ``False`` if it cannot be sent again."""
        if not self.possible:
            return False
        if self.body is not None and not isinstance(self.body, (bytes, str, bytearray)):
            try:
                self.body.seek(self.position)
            except (OSError, ValueError):
                return False
        return True


def body_size(prepared: requests.PreparedRequest) -> int | None:
    """Bytes in the request body (``None`` for a stream of unknown length)."""
    body = prepared.body
    if body is None:
        return 0
    if isinstance(body, (bytes, bytearray)):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8"))
    length = prepared.headers.get("Content-Length")
    return int(length) if length and length.isascii() and length.isdigit() else None


def received_size(response: requests.Response | None) -> int | None:
    """Bytes of the response body: exact once read, else its Content-Length."""
    if response is None:
        return None
    if getattr(response, "_content_consumed", False) and isinstance(getattr(response, "_content", None), bytes):
        return len(response.content)
    length = response.headers.get("Content-Length")
    return int(length) if length and length.isascii() and length.isdigit() else None
