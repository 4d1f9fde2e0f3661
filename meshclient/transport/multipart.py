"""``files=`` as a streamed ``multipart/form-data`` body, in constant memory.

``requests`` builds a multipart body in memory (a 1 GiB file costs 2 GiB of RSS). This body
reads each file in chunks as it is sent, knows its length up front when every part's size is
known (files on disk, bytes), and rewinds for a retry by putting every file back where it
started. It accepts the shapes ``requests`` documents for ``files=``: a mapping or a list of
``(field, value)`` where value is a file, bytes or str, or a tuple
``(filename, file_or_bytes[, content_type[, headers]])``; ``data=`` mapping fields come first.
"""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError

__all__ = ["MultipartBody"]

_CHUNK = 1 << 20


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', "%22").replace("\r", "%0D").replace("\n", "%0A")


@dataclass
class _Part:
    head: bytes
    data: bytes | None = None  #: in-memory value
    stream: Any = None  #: a file object, read in chunks
    start: int = 0  #: the stream's position when the body was built
    size: int | None = None  #: bytes of data or of the stream from ``start`` (None: unknown)


def _stream_size(stream: Any) -> tuple[int, int | None]:
    try:
        start = stream.tell()
    except (AttributeError, OSError, ValueError):
        return 0, None
    try:
        return start, os.fstat(stream.fileno()).st_size - start
    except (AttributeError, OSError, ValueError, io.UnsupportedOperation):
        pass
    try:
        end = stream.seek(0, io.SEEK_END)
        stream.seek(start)
        return start, end - start
    except (AttributeError, OSError, ValueError):
        return start, None


def _items(value: Any, what: str) -> list[tuple[Any, Any]]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        return list(value.items())
    if isinstance(value, (list, tuple)) and all(isinstance(i, (list, tuple)) and len(i) == 2 for i in value):
        return [tuple(i) for i in value]  # type: ignore[misc]
    raise ConfigurationError(f"{what}= must be a mapping or a list of (field, value) pairs for a multipart body.",
                             hint='Write files={"model": open("model.pkl", "rb")}.')


class MultipartBody(io.RawIOBase):
    """A readable, rewindable multipart body; ``len()`` is its exact size when every part's is known."""

    def __init__(self, data: Any, files: Any) -> None:
        super().__init__()
        self.boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        self._parts: list[_Part] = []
        for name, value in _items(data, "data"):
            for item in value if isinstance(value, list) else [value]:
                self._add(str(name), None, str(item).encode() if not isinstance(item, bytes) else item, None, {})
        for name, spec in _items(files, "files"):
            filename: str | None = getattr(spec, "name", None) if not isinstance(spec, (bytes, str, tuple)) else None
            content_type: str | None = None
            headers: Mapping[str, str] = {}
            value = spec
            if isinstance(spec, tuple):
                filename, value = spec[0], spec[1]
                content_type = spec[2] if len(spec) > 2 else None
                headers = spec[3] if len(spec) > 3 else {}
            if isinstance(filename, str):
                filename = os.path.basename(filename)
            self._add(str(name), filename, value, content_type, headers)
        self._parts.append(_Part(f"--{self.boundary}--\r\n".encode(), data=b""))
        self._index = 0
        self._offset = 0  # within the current part: head bytes, then its data
        self._position = 0

    def _add(self, name: str, filename: str | None, value: Any, content_type: str | None,
             headers: Mapping[str, str]) -> None:
        disposition = f'form-data; name="{_quote(name)}"'
        if filename:
            disposition += f'; filename="{_quote(filename)}"'
        lines = [f"--{self.boundary}", f"Content-Disposition: {disposition}"]
        if content_type:
            lines.append(f"Content-Type: {content_type}")
        lines.extend(f"{k}: {v}" for k, v in headers.items())
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")
        if isinstance(value, str):
            value = value.encode("utf-8")
        if isinstance(value, (bytes, bytearray)):
            self._parts.append(_Part(head, data=bytes(value) + b"\r\n", size=len(value) + 2))
        elif callable(getattr(value, "read", None)):
            start, size = _stream_size(value)
            self._parts.append(_Part(head, stream=value, start=start, size=None if size is None else size))
            self._parts.append(_Part(b"", data=b"\r\n"))
        else:
            raise ConfigurationError(
                f"files= part {name!r} is a {type(value).__name__}; parts are files opened 'rb', bytes or str.",
                hint=f'Write files={{"{name}": open(path, "rb")}}.')

    # -- size and rewinding -----------------------------------------------------------------
    def __len__(self) -> int:
        total = 0
        for part in self._parts:
            if part.stream is not None:
                if part.size is None:
                    raise TypeError("the size of a streamed part is unknown")
                total += len(part.head) + part.size
            else:
                total += len(part.head) + len(part.data or b"")
        return total

    def known_length(self) -> int | None:
        try:
            return len(self)
        except TypeError:
            return None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if offset != 0 or whence != io.SEEK_SET:
            raise OSError("a multipart body can only be rewound to its start")
        for part in self._parts:
            if part.stream is not None:
                part.stream.seek(part.start)
        self._index = self._offset = self._position = 0
        return 0

    # -- reading ------------------------------------------------------------------------------
    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def read(self, size: int | None = -1) -> bytes:
        want = _CHUNK if size is None or size < 0 else size
        out = bytearray()
        while len(out) < want and self._index < len(self._parts):
            part = self._parts[self._index]
            if self._offset < len(part.head):
                piece = part.head[self._offset: self._offset + want - len(out)]
            elif part.stream is not None:
                piece = part.stream.read(want - len(out))
                if isinstance(piece, str):
                    piece = piece.encode("utf-8")
                if not piece:
                    self._index, self._offset = self._index + 1, 0
                    continue
            else:
                data = part.data or b""
                rel = self._offset - len(part.head)
                piece = data[rel: rel + want - len(out)]
                if not piece:
                    self._index, self._offset = self._index + 1, 0
                    continue
            out += piece
            self._offset += len(piece)
        self._position += len(out)
        return bytes(out)

    def __iter__(self) -> Iterator[bytes]:
        while chunk := self.read(_CHUNK):
            yield chunk
