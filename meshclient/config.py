"""A picklable description of a ``MeshClient``, for shipping to Spark executors.

``dbutils`` and notebook auth exist only on the driver, so executors get the client's
*settings* — credentials material, token provider settings, policy, retry and timeout knobs —
never its SSL contexts, pools, locks or threads. Each Python worker process builds one
``MeshClient`` from a config and caches it (:meth:`ClientConfig.client`).
"""

from __future__ import annotations

import os
import threading
import uuid
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .credentials import Credentials
from .credentials.sources import IdentitySource
from .policy import EgressPolicy
from .transport.retry import RetryPolicy

if TYPE_CHECKING:
    from .client import MeshClient
    from .tokens import TokenProvider

__all__ = ["ClientConfig"]

_cache: dict[str, MeshClient] = {}
_cache_lock = threading.Lock()


def _forget_after_fork() -> None:
    """In a forked child: the parent's clients hold its pooled sockets and threads; build anew.

    They are dropped, not closed (closing would shut sockets the parent still uses).
    """
    global _cache_lock
    _cache.clear()
    _cache_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_after_fork)


@dataclass(frozen=True, repr=False)
class ClientConfig:
    """Everything needed to rebuild an equivalent ``MeshClient`` in another process.

    Pickling a config pickles the credentials (certificate chain, key and anchors as PEM) and
    the token provider's settings: ship it the way secrets are shipped on Databricks — in a
    broadcast (``meshclient.spark.share``), never in a printed plan or a log. ``repr`` shows
    only the identity.
    """

    credentials: Credentials | IdentitySource
    token: TokenProvider | None = None
    policy: EgressPolicy | None = None
    audit: Any = None
    retries: RetryPolicy | None = None
    retry_budget: tuple[float, float, float] | None = None  # (ratio, min per second, ttl)
    timeout: tuple[float, float] | None = None
    deadline: float | None = None
    allow_tls12: bool = False
    pool_maxsize: int = 10
    headers: tuple[tuple[str, str], ...] = ()
    key: str = field(default_factory=lambda: uuid.uuid4().hex)

    def build(self) -> MeshClient:
        """A new ``MeshClient`` from these settings (usually you want :meth:`client`)."""
        from .client import MeshClient
        from .transport.budget import RetryBudget

        kwargs: dict[str, Any] = {}
        if self.timeout is not None:
            kwargs["timeout"] = self.timeout
        return MeshClient(
            self.credentials,
            token=self.token,
            policy=self.policy,
            audit=self.audit,
            retries=self.retries,
            retry_budget=RetryBudget(*self.retry_budget) if self.retry_budget else None,
            deadline=self.deadline,
            allow_tls12=self.allow_tls12,
            pool_maxsize=self.pool_maxsize,
            headers=dict(self.headers) or None,
            **kwargs,
        )

    def client(self) -> MeshClient:
        """This process's cached ``MeshClient`` for this config (one per Python worker).

        Keyed by :attr:`key`, which survives pickling: every copy of one config (a broadcast
        read by many tasks of a worker) gets the same client, its pools and its token.
        """
        cached = _cache.get(self.key)
        if cached is not None:
            return cached
        with _cache_lock:
            cached = _cache.get(self.key)
            if cached is None:
                cached = self.build()
                _cache[self.key] = cached
            return cached

    def with_credentials(self, credentials: Credentials | IdentitySource) -> ClientConfig:
        return replace(self, credentials=credentials, key=uuid.uuid4().hex)

    def __repr__(self) -> str:
        creds = self.credentials
        who = creds.description if isinstance(creds, IdentitySource) else f"identity='{creds.identity}'"
        return f"ClientConfig({who}, key={self.key[:8]!r})"


def clear_cache() -> None:
    """Close and forget every cached client of this process (tests, notebook re-runs)."""
    with _cache_lock:
        clients = list(_cache.values())
        _cache.clear()
    for c in clients:
        c.close()
