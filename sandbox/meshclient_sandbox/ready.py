"""Wait for a sandbox started elsewhere (``meshclient sandbox --workdir D &``) to be ready.

Ready means: ``D/sandbox.pid`` names a live process (the sandbox writes it after ``sandbox.json``
and ``env.sh``, each atomically, and removes it when it stops) and every service in
``sandbox.json`` accepts TCP connections. So ``meshclient sandbox wait D && source D/env.sh``
never reads a half-written or stale file.
"""

from __future__ import annotations

import json
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from meshclient.errors import MeshError

from .runner import READY_FILE

__all__ = ["SandboxNotReady", "wait_ready"]


class SandboxNotReady(MeshError):
    """The sandbox did not become ready in time (the message says what was missing)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _answers(url: str) -> bool:
    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname or "127.0.0.1", parts.port or 443), timeout=1.0):
            return True
    except OSError:
        return False


def _state(workdir: Path) -> tuple[dict[str, Any] | None, str]:
    """(info, what is missing): info when ready, else None and the reason."""
    try:
        pid = int((workdir / READY_FILE).read_text().strip())
    except (OSError, ValueError):
        return None, f"no running sandbox has written {workdir / READY_FILE} yet"
    if not _alive(pid):
        return None, f"the sandbox that wrote {workdir / READY_FILE} (pid {pid}) is not running"
    try:
        info: dict[str, Any] = json.loads((workdir / "sandbox.json").read_text())
    except (OSError, ValueError):
        return None, f"{workdir / 'sandbox.json'} is missing or unreadable"
    silent = [name for name, svc in info.get("services", {}).items() if not _answers(svc["url"])]
    if silent:
        return None, f"service(s) {', '.join(silent)} do not accept connections yet"
    return info, ""


def wait_ready(workdir: str | os.PathLike[str], timeout: float = 60.0, *, poll: float = 0.2,
               clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep,
               ) -> dict[str, Any]:
    """Block until the sandbox in ``workdir`` is ready; return its ``sandbox.json`` document."""
    directory = Path(workdir).expanduser()
    deadline = clock() + timeout
    while True:
        info, missing = _state(directory)
        if info is not None:
            return info
        if clock() >= deadline:
            raise SandboxNotReady(f"The sandbox in {directory} was not ready after {timeout:g} s: {missing}.",
                                  hint=f"Start it first (meshclient sandbox --workdir {directory} &) and check its "
                                  "output; a slow machine may need a longer --timeout.")
        sleep(poll)
