"""``FileBody``: one file as a request body that streams from disk and can be sent again.

The transport retries a ``PUT`` after a broken connection only when its body can be rewound
(:class:`meshclient.transport.body.Replay`: ``seek``/``tell``); a plain generator cannot be.
``FileBody`` reopens the file on every pass, so a retry resends it from the first byte with
memory bounded by a few chunks, and it stops with :class:`ArtifactChangedError` instead of
sending a different length than announced when the file was changed underneath.

With ``hash_inline`` a reader thread reads and hashes the file while the sending thread puts
the previous chunks on the wire (hashlib, file reads and TLS writes all release the GIL), so a
large file is read once and hashing costs no extra pass; ``sha256`` is the digest of the last
complete pass.
"""

from __future__ import annotations

import hashlib
import os
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

from .digest import CHUNK
from .errors import ArtifactChangedError

__all__ = ["FileBody"]

_READ_AHEAD = 4  # chunks queued between the reader and the sender (memory: this many CHUNKs)
_END = object()


class FileBody:
    """An iterable body of exactly ``size`` bytes read from ``path`` in ``CHUNK`` pieces.

    ``len()`` gives ``requests`` the ``Content-Length``; ``seek(0)``/``tell()`` make it replayable.
    It deliberately has no ``read``: urllib3 would then read 8-16 KiB at a time.
    """

    def __init__(self, path: Path, size: int, rel: str, *, hash_inline: bool = False) -> None:
        self.path = path
        self.size = size
        self.rel = rel
        self.hash_inline = hash_inline
        self.sha256: str | None = None
        self._position = 0
        self.passes = 0
        self._last_stop: threading.Event | None = None  # the previous pass's reader, if it is still around

    def __len__(self) -> int:
        return self.size

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence != os.SEEK_SET or offset != 0:
            raise OSError("FileBody can only be rewound to its start")
        self._position = 0
        return 0

    def __iter__(self) -> Iterator[bytes]:
        self.passes += 1
        self.sha256 = None
        source = self._read_ahead() if self.hash_inline else self._chunks(None)
        for piece in source:
            self._position += len(piece)
            yield piece

    def _chunks(self, hasher: hashlib._Hash | None) -> Iterator[bytes]:
        left = self.size
        with open(self.path, "rb", buffering=0) as fh:
            if os.fstat(fh.fileno()).st_size != self.size:
                raise self._changed()
            while left > 0:
                piece = fh.read(min(CHUNK, left))
                if not piece:
                    raise self._changed()
                if hasher is not None:
                    hasher.update(piece)
                left -= len(piece)
                yield piece
        if hasher is not None:
            self.sha256 = hasher.hexdigest()

    def _read_ahead(self) -> Iterator[bytes]:
        """Chunks read and hashed by a helper thread, a few chunks ahead of the sender."""
        q: queue.Queue[object] = queue.Queue(maxsize=_READ_AHEAD)
        stop = threading.Event()
        if self._last_stop is not None:  # a cut pass whose generator was never closed: end its reader now
            self._last_stop.set()
        self._last_stop = stop

        def reader() -> None:
            try:
                for piece in self._chunks(hashlib.sha256()):
                    while not stop.is_set():
                        try:
                            q.put(piece, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
                q.put(_END)
            except BaseException as exc:  # handed to the sender, raised there
                q.put(exc)

        thread = threading.Thread(target=reader, name="meshclient-push-read", daemon=True)
        thread.start()
        try:
            while True:
                item = q.get()
                if item is _END:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, bytes)
                yield item
        finally:  # also when the send was cut: stop the reader and let it exit
            stop.set()
            while thread.is_alive():
                try:
                    q.get(timeout=0.1)
                except queue.Empty:
                    pass
            thread.join()

    def _changed(self) -> ArtifactChangedError:
        return ArtifactChangedError(
            f"{self.rel}: the file changed while it was being pushed (now not {self.size} bytes).",
            hint="Push a directory nothing writes to any more (e.g. after the run finished).",
        )
