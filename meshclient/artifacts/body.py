"""``FileBody``: one file as a request body that streams from disk and can be sent again.

The transport retries a ``PUT`` after a broken connection only when its body can be rewound
(:class:`meshclient.transport.body.Replay`: ``seek``/``tell``); a plain generator cannot be.
``FileBody`` reopens the file on every pass, so a retry resends it from the first byte with
memory bounded by one chunk, and it stops with :class:`ArtifactChangedError` instead of
sending a different length than announced when the file was changed underneath.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from .digest import CHUNK
from .errors import ArtifactChangedError

__all__ = ["FileBody"]


class FileBody:
    """An iterable body of exactly ``size`` bytes read from ``path`` in ``CHUNK`` pieces.

    ``len()`` gives ``requests`` the ``Content-Length``; ``seek(0)``/``tell()`` make it replayable.
    It deliberately has no ``read``: urllib3 would then read 8-16 KiB at a time.
    """

    def __init__(self, path: Path, size: int, rel: str) -> None:
        self.path = path
        self.size = size
        self.rel = rel
        self._position = 0
        self.passes = 0

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
        left = self.size
        with open(self.path, "rb", buffering=0) as fh:
            if os.fstat(fh.fileno()).st_size != self.size:
                raise self._changed()
            while left > 0:
                piece = fh.read(min(CHUNK, left))
                if not piece:
                    raise self._changed()
                left -= len(piece)
                self._position += len(piece)
                yield piece

    def _changed(self) -> ArtifactChangedError:
        return ArtifactChangedError(
            f"{self.rel}: the file changed while it was being pushed (now not {self.size} bytes).",
            hint="Push a directory nothing writes to any more (e.g. after the run finished).",
        )
