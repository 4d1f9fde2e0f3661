"""Ship a client's configuration to executors once, build one client per Python worker.

On the driver::

    mesh = meshclient.spark.share(client)          # one broadcast, no secret in any plan

In a UDF / ``mapInPandas`` / ``rdd.mapPartitions`` / ``foreachPartition``::

    resp = mesh.client().post(url, server_identity=..., json=...)

Why a broadcast: ``dbutils`` and notebook auth exist only on the driver, so executors need the
material itself. A broadcast ships it once per executor, outside every query plan and log line.
Each Python worker then builds one ``MeshClient`` and keeps it (worker reuse is Spark's
default), so TLS contexts, pooled connections and the bearer token are shared by every task
that worker runs: a ``ClientCredentials`` token is fetched once per worker process, not once
per task or row.

Why sealed: without ``spark.io.encryption.enabled``, PySpark writes a broadcast's pickled
value to files in the driver's and executors' local directories. The broadcast therefore
holds the config encrypted (AES-256-GCM) and the 32-byte key travels in the handle, i.e. in
task closures, which Spark keeps in memory: no key, token or secret lands on disk in clear.
"""

from __future__ import annotations

import logging
import os
import pickle
import threading
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..client import MeshClient
from ..config import ClientConfig
from ..credentials.sources import IdentitySource
from ..errors import ConfigurationError
from ..worker_cache import client_for

__all__ = ["SharedClient", "share"]

log = logging.getLogger("meshclient.spark")

_AAD = b"meshclient.spark.share/v1"
#: Configs opened from a sealed broadcast, by config key: decrypt and validate once per process.
_opened: dict[str, ClientConfig] = {}
_opened_lock = threading.Lock()


def _seal(payload: bytes) -> tuple[bytes, bytes]:
    """``(key, nonce + ciphertext)`` for ``payload``; a fresh key for every share."""
    key = AESGCM.generate_key(bit_length=256)
    nonce = os.urandom(12)
    return key, nonce + AESGCM(key).encrypt(nonce, payload, _AAD)


def _unseal(key: bytes, blob: bytes) -> ClientConfig:
    try:
        payload = AESGCM(key).decrypt(blob[:12], blob[12:], _AAD)
    except (InvalidTag, ValueError, TypeError):
        raise ConfigurationError("The shared meshclient configuration does not open with this handle's key.",
                                 hint="Use the handle returned by the same meshclient.spark.share() call as "
                                 "the broadcast (share again after re-running the cell).") from None
    config = pickle.loads(payload)
    if not isinstance(config, ClientConfig):
        raise ConfigurationError("The broadcast does not hold a meshclient ClientConfig.",
                                 hint="Build handles with meshclient.spark.share(client).")
    return config


class SharedClient:
    """A small picklable handle: a sealed Spark broadcast of a :class:`ClientConfig` (or the
    config itself when there is no ``SparkContext``). ``.client()`` returns the worker's client.

    Pickling a ``broadcast`` handle pickles the broadcast's id, the config's cache key and the
    seal key; in ``local`` mode (no SparkContext: plain Python, Spark Connect) it pickles the
    config itself, which then travels inside each task.
    """

    def __init__(self, broadcast: Any = None, config: ClientConfig | None = None, *,
                 seal_key: bytes | None = None, config_key: str | None = None) -> None:
        if broadcast is None and config is None:
            raise ConfigurationError("SharedClient takes a broadcast or a config.",
                                     hint="Build handles with meshclient.spark.share(client).")
        self._broadcast = broadcast
        self._config = config  # on the driver always; dropped from the pickle when broadcast
        self._seal_key = seal_key
        self._config_key = config_key or (config.key if config is not None else None)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._broadcast is not None:
            state["_config"] = None  # executors open the broadcast; the closure stays small
        return state

    @property
    def config(self) -> ClientConfig:
        """The shared config (on executors: opened from the broadcast once per process)."""
        if self._config is not None:
            return self._config
        ckey = self._config_key
        if ckey is not None:
            cached = _opened.get(ckey)
            if cached is not None:
                return cached
        value = self._broadcast.value
        if isinstance(value, ClientConfig):  # an unsealed broadcast (handles built by hand)
            return value
        if self._seal_key is None or not isinstance(value, bytes):
            raise ConfigurationError("The broadcast does not hold a meshclient ClientConfig.",
                                     hint="Build handles with meshclient.spark.share(client).")
        with _opened_lock:
            config = _opened.get(ckey) if ckey is not None else None
            if config is None:
                config = _unseal(self._seal_key, value)
                _opened[config.key] = config
        return config

    @property
    def mode(self) -> str:
        """``broadcast`` or ``local`` (the config itself travels with each task)."""
        return "broadcast" if self._broadcast is not None else "local"

    def client(self) -> MeshClient:
        """This Python process's ``MeshClient`` for the shared config, built on first use."""
        return client_for(self.config)

    def unpersist(self) -> None:
        """Drop the broadcast from executors (the driver keeps working)."""
        if self._broadcast is not None:
            self._broadcast.unpersist()

    def destroy(self) -> None:
        """Remove the broadcast everywhere, its driver-side file included; the handle is then unusable
        in tasks (the driver keeps its config)."""
        if self._broadcast is not None:
            self._broadcast.destroy()

    def __repr__(self) -> str:
        try:
            creds = self.config.credentials
            who = creds.description if isinstance(creds, IdentitySource) else f"identity='{creds.identity}'"
        except Exception:  # repr must never fail (e.g. an unpersisted broadcast)
            who = "identity=?"
        return f"SharedClient({self.mode}, {who})"


def _spark_context(spark: Any) -> Any | None:
    """The SparkContext to broadcast with: ``spark``'s, else the process's active one.

    ``SparkSession.getActiveSession()`` is per thread; the process-wide active context is not,
    so a handle shared from a helper thread still becomes a broadcast. Spark Connect sessions
    have no SparkContext (``None``).
    """
    if spark is not None:
        if hasattr(spark, "broadcast"):  # a SparkContext
            return spark
        try:
            return spark.sparkContext
        except Exception:  # Spark Connect: no JVM SparkContext on this side
            return None
    try:
        from pyspark import SparkContext
    except ImportError:
        return None
    return SparkContext._active_spark_context


def share(client: MeshClient | ClientConfig, spark: Any = None) -> SharedClient:
    """Broadcast ``client``'s configuration once; returns a handle to use inside Spark tasks.

    ``spark`` is a SparkSession or SparkContext (default: the active one). Without a
    SparkContext (plain Python, tests, Spark Connect) the handle carries the config directly:
    it then travels pickled inside each task instead of in a broadcast.
    """
    config = client.config() if isinstance(client, MeshClient) else client
    if not isinstance(config, ClientConfig):
        raise ConfigurationError("share() takes a MeshClient or a ClientConfig.",
                                 hint="Pass the client you use on the driver: meshclient.spark.share(client).")
    try:
        payload = pickle.dumps(config, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # name the part that cannot travel, never its content
        raise ConfigurationError(
            f"This client's configuration cannot be shipped to executors: {type(exc).__name__}.",
            hint="Token providers and audit sinks must be picklable: use meshclient.tokens providers and "
            "LoggingAuditSink/FileAuditSink or a module-level function (not a lambda).",
        ) from None
    sc = _spark_context(spark)
    if sc is None:
        log.debug("no SparkContext: the client configuration travels with each task (%r)", config)
        return SharedClient(config=config)
    key, blob = _seal(payload)
    return SharedClient(sc.broadcast(blob), config, seal_key=key, config_key=config.key)
