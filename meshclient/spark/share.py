"""Ship a client's configuration to executors once, build one client per Python worker.

On the driver::

    mesh = meshclient.spark.share(client)          # one broadcast, no secret in any plan

In a UDF / ``mapInPandas`` / ``foreachPartition``::

    resp = mesh.client().post(url, server_identity=..., json=...)
"""

from __future__ import annotations

import pickle
from typing import Any

from ..client import MeshClient
from ..config import ClientConfig
from ..errors import ConfigurationError

__all__ = ["SharedClient", "share"]


class SharedClient:
    """A small picklable handle: a Spark broadcast of a :class:`ClientConfig` (or the config
    itself when no Spark session is active). ``.client()`` returns the worker's cached client."""

    def __init__(self, broadcast: Any = None, config: ClientConfig | None = None) -> None:
        self._broadcast = broadcast
        self._config = config

    @property
    def config(self) -> ClientConfig:
        if self._config is not None:
            return self._config
        value = self._broadcast.value
        if not isinstance(value, ClientConfig):
            raise ConfigurationError("The broadcast does not hold a meshclient ClientConfig.")
        return value

    def client(self) -> MeshClient:
        return self.config.client()

    def unpersist(self) -> None:
        """Drop the broadcast from executors (the driver keeps working)."""
        if self._broadcast is not None:
            self._broadcast.unpersist()

    def __repr__(self) -> str:
        kind = "broadcast" if self._broadcast is not None else "local"
        try:
            identity = self.config.credentials.identity
        except Exception:  # repr must never fail
            identity = "?"  # type: ignore[assignment]
        return f"SharedClient({kind}, identity='{identity}')"


def _active_spark() -> Any | None:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        return None
    return SparkSession.getActiveSession()


def share(client: MeshClient | ClientConfig, spark: Any = None) -> SharedClient:
    """Broadcast ``client``'s configuration once; returns a handle to use inside Spark tasks.

    Without an active Spark session (local runs, tests) the handle carries the config directly.
    """
    config = client.config() if isinstance(client, MeshClient) else client
    if not isinstance(config, ClientConfig):
        raise ConfigurationError("share() takes a MeshClient or a ClientConfig.")
    try:
        pickle.dumps(config)
    except Exception as exc:  # name the part that cannot travel
        raise ConfigurationError(
            f"This client's configuration cannot be shipped to executors: {type(exc).__name__}.",
            hint="Token providers and audit sinks must be picklable: use meshclient.tokens providers and "
            "LoggingAuditSink/FileAuditSink or a module-level function (not a lambda).",
        ) from None
    spark = spark or _active_spark()
    if spark is None:
        return SharedClient(config=config)
    return SharedClient(broadcast=spark.sparkContext.broadcast(config))
