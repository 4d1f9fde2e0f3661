"""One ``MeshClient`` per Python process and config: what Spark workers use.

Every copy of one config (a broadcast read by many tasks of a worker) has the same
:attr:`~meshclient.config.ClientConfig.key`, so all of them get the same client — its pools,
TLS contexts and bearer token. A forked child (PySpark's worker daemon forks) starts with an
empty cache: the parent's clients hold the parent's sockets and threads.
"""

from __future__ import annotations

import os
import threading

from .client import MeshClient
from .config import ClientConfig

__all__ = ["client_for", "clear_cache"]

_cache: dict[str, MeshClient] = {}
_cache_lock = threading.Lock()


def client_for(config: ClientConfig) -> MeshClient:
    """This process's cached client for ``config`` (built on first use)."""
    cached = _cache.get(config.key)
    if cached is not None:
        return cached
    with _cache_lock:
        cached = _cache.get(config.key)
        if cached is None:
            cached = MeshClient.from_config(config)
            _cache[config.key] = cached
        return cached


def clear_cache() -> None:
    """Close and forget every cached client of this process (tests, notebook re-runs)."""
    with _cache_lock:
        clients = list(_cache.values())
        _cache.clear()
    for c in clients:
        c.close()


def _forget_after_fork() -> None:
    """In a forked child the parent's clients are dropped, not closed (closing would shut
    sockets the parent still uses)."""
    global _cache_lock
    _cache.clear()
    _cache_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)
