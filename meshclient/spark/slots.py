"""A host-wide bound on requests in flight: ``n`` slot files under a temp directory, ``flock``'d.

Spark runs one Python worker process per concurrent task, and a semaphore inside a UDF
bounds one task, not the executor (openaivec issue 189). Every worker process on a host that
scores with the same job key opens the same slot files, so at most ``n`` requests are in
flight per host (= per executor) whatever the number of tasks and threads. ``flock`` locks
belong to the open file description: threads of one process exclude each other too, and a
crashed worker's locks vanish with its file descriptors.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import os
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["HostSlots"]

_next = itertools.count()


class HostSlots:
    """At most ``n`` holders at once across every process on this host using the same ``key``."""

    def __init__(self, key: str, n: int, directory: str | None = None) -> None:
        if not key.replace("-", "").isalnum():
            raise ValueError("the slot key must be alphanumeric")
        self.key, self.n = key, n
        self.directory = Path(directory or tempfile.gettempdir()) / "meshclient-slots" / key
        self._made = threading.Lock()

    def _paths(self) -> list[Path]:
        with self._made:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return [self.directory / f"slot-{i}" for i in range(self.n)]

    @contextlib.contextmanager
    def slot(self) -> Iterator[int]:
        """Hold one slot for the ``with`` block (blocks while all ``n`` are held); yields its number."""
        paths = self._paths()
        start = next(_next) % self.n
        order = [(start + i) % self.n for i in range(self.n)]
        fd = -1
        held = -1
        for i in order:  # a free slot if there is one
            candidate = os.open(paths[i], os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(candidate, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(candidate)
                continue
            fd, held = candidate, i
            break
        if fd < 0:  # all busy: queue on one of them
            held = order[0]
            fd = os.open(paths[held], os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except BaseException:
                os.close(fd)
                raise
        try:
            yield held
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def __call__(self) -> contextlib.AbstractContextManager[int]:
        """A gate for :class:`~meshclient.scoring.Scorer` (``gate=slots``)."""
        return self.slot()

    def __reduce__(self) -> tuple[object, ...]:
        return (HostSlots, (self.key, self.n, str(self.directory.parent.parent)))
