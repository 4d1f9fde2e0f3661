"""Ship a client's configuration to executors once, build one client per Python worker.

On the driver::

    mesh = meshclient.spark.share(client)          # no key or token in clear in any plan

In a UDF / ``mapInPandas`` / ``rdd.mapPartitions`` / ``foreachPartition``::

    resp = mesh.client().post(url, server_identity=..., json=...)

Why: ``dbutils`` and notebook auth exist only on the driver, so executors need the material
itself. Each Python worker builds one ``MeshClient`` from it and keeps it (worker reuse is
Spark's default), so TLS contexts, pooled connections and the bearer token are shared by every
task that worker runs.

How, by where the job runs (``SharedClient.mode``):

* ``broadcast`` — classic Spark (a ``SparkContext``): the config, sealed with a fresh
  AES-256-GCM key, goes into one broadcast; the key travels in the task closure, which
  classic Spark keeps in memory. Without ``spark.io.encryption.enabled`` PySpark writes
  broadcast values to local files: those hold ciphertext only.
* ``sealed`` — Spark Connect (Databricks serverless, standard access mode): there is no
  broadcast, and task closures are part of the *plan* the server receives and keeps. The
  config is sealed with the **cluster seal key** (from ``MESHCLIENT_SEAL_KEY``, set on the
  cluster from a secret reference); the plan carries ciphertext and a key id, never the key.
* ``local`` — no Spark at all (plain Python, tests): the config itself travels with the handle.

The threat model (who can read a plan, for how long, what they could do with it) is in
``docs/spark-executors.md``.
"""

from __future__ import annotations

import logging
import pickle
import threading
from typing import Any

from ..client import MeshClient
from ..config import ClientConfig
from ..credentials.sources import IdentitySource
from ..errors import ConfigurationError
from ..worker_cache import client_for
from .sealing import SEAL_KEY_ENV, cluster_key, dumps_config, fresh_key, key_id, seal, unseal

__all__ = ["SharedClient", "share", "is_spark_connect"]

log = logging.getLogger("meshclient.spark")

#: Configs opened on this process, by config key: decrypt and validate once per process.
_opened: dict[str, ClientConfig] = {}
_opened_lock = threading.Lock()


def _load(payload: bytes) -> ClientConfig:
    config = pickle.loads(payload)
    if not isinstance(config, ClientConfig):
        raise ConfigurationError("The shared value is not a meshclient ClientConfig.",
                                 hint="Build handles with meshclient.spark.share(client).")
    return config


class SharedClient:
    """A small picklable handle to a shared client configuration; ``.client()`` gives the
    worker's client. What a pickled handle carries depends on :attr:`mode` (see the module)."""

    def __init__(self, *, config: ClientConfig, mode: str, broadcast: Any = None, seal_key: bytes | None = None,
                 sealed: bytes | None = None, cluster_key_id: str | None = None) -> None:
        self._config: ClientConfig | None = config  # the driver's; dropped from the pickle unless local
        self._mode = mode
        self._broadcast = broadcast
        self._seal_key = seal_key  # broadcast mode only: a fresh key for this share
        self._sealed = sealed  # sealed mode only: ciphertext under the cluster seal key
        self._cluster_key_id = cluster_key_id
        self._config_key = config.key

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._mode != "local":
            state["_config"] = None  # executors open the broadcast or the sealed blob
        return state

    @property
    def mode(self) -> str:
        """``broadcast`` (classic Spark), ``sealed`` (Spark Connect) or ``local`` (no Spark)."""
        return self._mode

    @property
    def config(self) -> ClientConfig:
        """The shared config (on executors: opened once per process)."""
        if self._config is not None:
            return self._config
        cached = _opened.get(self._config_key)
        if cached is not None:
            return cached
        with _opened_lock:
            config = _opened.get(self._config_key)
            if config is None:
                config = self._open()
                _opened[config.key] = config
        return config

    def _open(self) -> ClientConfig:
        if self._mode == "broadcast":
            value = self._broadcast.value
            if self._seal_key is None or not isinstance(value, bytes):
                raise ConfigurationError("The broadcast does not hold a sealed meshclient configuration.",
                                         hint="Build handles with meshclient.spark.share(client).")
            return _load(unseal(self._seal_key, value, where="this handle's key"))
        if self._mode == "sealed":
            key = cluster_key()  # from this executor's environment
            if key_id(key) != self._cluster_key_id:
                raise ConfigurationError(
                    f"This executor's {SEAL_KEY_ENV} is not the key the driver sealed the configuration with "
                    f"(key id {key_id(key)}, expected {self._cluster_key_id}).",
                    hint=f"Set the same {SEAL_KEY_ENV} (one secret reference) for the driver and the executors.",
                )
            assert self._sealed is not None
            return _load(unseal(key, self._sealed, where=f"the cluster seal key ({SEAL_KEY_ENV})"))
        raise ConfigurationError("This handle has lost its configuration.",
                                 hint="Build handles with meshclient.spark.share(client).")

    def client(self) -> MeshClient:
        """This Python process's ``MeshClient`` for the shared config, built on first use."""
        return client_for(self.config)

    def unpersist(self) -> None:
        """Drop the broadcast from executors (the driver keeps working)."""
        if self._broadcast is not None:
            self._broadcast.unpersist()

    def destroy(self) -> None:
        """Remove the broadcast everywhere, its driver-side file included; the handle is then
        unusable in tasks (the driver keeps its config)."""
        if self._broadcast is not None:
            self._broadcast.destroy()

    def __repr__(self) -> str:
        try:
            creds = self.config.credentials
            who = creds.description if isinstance(creds, IdentitySource) else f"identity='{creds.identity}'"
        except Exception:  # repr must never fail (e.g. an unpersisted broadcast, no seal key here)
            who = "identity=?"
        return f"SharedClient({self.mode}, {who})"


def is_spark_connect(spark: Any = None) -> bool:
    """Whether ``spark`` (default: the active session) is a Spark Connect session."""
    if spark is not None:
        return type(spark).__module__.startswith("pyspark.sql.connect")
    try:
        from pyspark.sql.utils import is_remote
    except ImportError:
        return False
    return bool(is_remote())


def _spark_context(spark: Any) -> Any | None:
    """The SparkContext to broadcast with: ``spark``'s, else the process's active one.

    ``SparkSession.getActiveSession()`` is per thread; the process-wide active context is not,
    so a handle shared from a helper thread still becomes a broadcast. Spark Connect sessions
    have no SparkContext (``None``).
    """
    if spark is not None:
        if hasattr(spark, "broadcast"):  # a SparkContext
            return spark
        if is_spark_connect(spark):
            return None
        try:
            return spark.sparkContext
        except Exception:  # Databricks shared clusters refuse sparkContext
            return None
    try:
        from pyspark import SparkContext
    except ImportError:
        return None
    return SparkContext._active_spark_context


def share(client: MeshClient | ClientConfig, spark: Any = None, *, seal_key: str | None = None) -> SharedClient:
    """Share ``client``'s configuration with executors; returns a handle to use inside tasks.

    ``spark`` is a SparkSession or SparkContext (default: the active one). On Spark Connect the
    configuration is sealed with the cluster seal key: ``seal_key`` or, by default, the
    ``MESHCLIENT_SEAL_KEY`` environment variable (executors always read that variable). Without
    one, sharing on Spark Connect fails instead of putting the private key in the plan.
    """
    config = client.config() if isinstance(client, MeshClient) else client
    if not isinstance(config, ClientConfig):
        raise ConfigurationError("share() takes a MeshClient or a ClientConfig.",
                                 hint="Pass the client you use on the driver: meshclient.spark.share(client).")
    payload = dumps_config(config)
    sc = _spark_context(spark)
    if sc is not None:
        key = fresh_key()
        return SharedClient(config=config, mode="broadcast", broadcast=sc.broadcast(seal(key, payload)), seal_key=key)
    if is_spark_connect(spark) or seal_key is not None:
        key = cluster_key(seal_key)
        log.debug("Spark Connect: the client configuration is sealed with the cluster seal key (%r)", config)
        return SharedClient(config=config, mode="sealed", sealed=seal(key, payload), cluster_key_id=key_id(key))
    log.debug("no Spark session: the client configuration travels with the handle (%r)", config)
    return SharedClient(config=config, mode="local")
