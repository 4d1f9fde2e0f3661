"""Progress of a push or pull: a tqdm bar where someone watches, plain log lines elsewhere.

A bar is used when tqdm is installed and the output is a terminal or a notebook (an IPython
kernel); a Databricks job's log gets a line on the ``meshclient.artifacts`` logger every 10 %
of the bytes (and at the end), never a line per chunk.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from typing import Any

__all__ = ["Progress", "make_progress"]

log = logging.getLogger("meshclient.artifacts")


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    get = getattr(shell, "get_ipython", None)
    try:
        ip = get() if callable(get) else None
    except Exception:
        return False
    return ip is not None and type(ip).__name__ in ("ZMQInteractiveShell", "DatabricksShell")


class Progress:
    """Counts files and bytes; thread-safe; ``close()`` prints the last line."""

    def __init__(self, verb: str, total_files: int, total_bytes: int, where: str) -> None:
        self.verb = verb
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.where = where
        self.files = 0
        self.bytes = 0
        self._next_tenth = 1
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def file_done(self, size: int) -> None:
        with self._lock:
            self.files += 1
            self.bytes += size
            self._update(size)

    def _update(self, size: int) -> None:
        share = self.bytes / self.total_bytes if self.total_bytes else self.files / max(1, self.total_files)
        if share * 10 >= self._next_tenth and self.files < self.total_files:
            self._next_tenth = int(share * 10) + 1
            self._line()

    def _line(self) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        log.info("%s %d/%d files, %.1f/%.1f MiB (%.1f MiB/s) %s", self.verb, self.files, self.total_files,
                 self.bytes / 2**20, self.total_bytes / 2**20, self.bytes / 2**20 / elapsed, self.where)

    def close(self) -> None:
        self._line()


class _Bar(Progress):
    def __init__(self, verb: str, total_files: int, total_bytes: int, where: str, tqdm: Any) -> None:
        super().__init__(verb, total_files, total_bytes, where)
        self._bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                         desc=f"{verb} {total_files} file(s)", leave=True)

    def _update(self, size: int) -> None:
        self._bar.update(size)
        self._bar.set_postfix_str(f"{self.files}/{self.total_files} files", refresh=False)

    def close(self) -> None:
        self._bar.close()


def make_progress(verb: str, total_files: int, total_bytes: int, where: str, mode: bool | None) -> Progress:
    """``mode``: ``True`` a bar if tqdm is installed, ``False`` log lines only, ``None`` decide by the output."""
    isatty = getattr(sys.stderr, "isatty", None)
    want_bar = mode if mode is not None else (bool(callable(isatty) and isatty()) or _in_notebook())
    if want_bar:
        try:
            if _in_notebook():
                from tqdm.auto import tqdm
            else:
                from tqdm import tqdm
        except ImportError:
            pass
        else:
            return _Bar(verb, total_files, total_bytes, where, tqdm)
    return Progress(verb, total_files, total_bytes, where)
