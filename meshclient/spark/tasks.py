"""What a Spark task needs to write or score through the mesh: the handle it gets its
``MeshClient`` from (built where it runs, never pickled with a live connection), and where in
the job it is (partition, attempt, micro-batch). Shared by ``mapInArrow`` writers and the
``meshclient-results`` data source; imports pyspark only inside a task.
"""

from __future__ import annotations

import threading
from typing import Any

from ..client import MeshClient
from ..config import ClientConfig
from ..errors import ConfigurationError
from .share import SharedClient, is_spark_connect, share

__all__ = ["EnvClient", "Handle", "executor_handle", "task_coordinates"]

_env_lock = threading.Lock()
_env_client: MeshClient | None = None


class EnvClient:
    """Executors build their client from their own environment (``MESHCLIENT_CERT``,
    ``MESHCLIENT_KEY``, ``MESHCLIENT_TRUST_ANCHORS``, set on the cluster from secret references):
    nothing about the identity travels with the job."""

    def client(self) -> MeshClient:
        global _env_client
        with _env_lock:
            if _env_client is None:
                from ..credentials import Credentials

                _env_client = MeshClient(Credentials.from_env())
            return _env_client

    def __repr__(self) -> str:
        return "EnvClient(MESHCLIENT_* environment of each process)"


Handle = SharedClient | EnvClient


def executor_handle(client: MeshClient | ClientConfig | SharedClient | None, spark: Any, *,
                    in_data_source: bool) -> Handle:
    """What tasks use to get their client. A data source is pickled outside the driver's Python
    process, where a broadcast cannot travel: on classic Spark its handle carries the config
    (kept in memory like a task closure); on Spark Connect it is sealed with the cluster seal key."""
    if client is None:
        return EnvClient()
    if isinstance(client, SharedClient):
        if in_data_source and client.mode == "broadcast":
            raise ConfigurationError("A broadcast handle cannot travel with a Spark data source.",
                                     hint="Pass the MeshClient itself to meshclient.spark.register(spark, client).")
        return client
    config = client.config() if isinstance(client, MeshClient) else client
    if not isinstance(config, ClientConfig):
        raise ConfigurationError("client must be a MeshClient, a ClientConfig, a SharedClient or None.")
    if in_data_source and not is_spark_connect(spark):
        return SharedClient(config=config, mode="local")
    return share(config, spark)


def task_coordinates() -> tuple[int, int, int, str, str | None]:
    """(partition, task attempt id, micro-batch id, run id, streaming query id) of the running task."""
    from pyspark import TaskContext

    ctx = TaskContext.get()
    if ctx is None:
        raise ConfigurationError("This runs only inside a Spark task.")
    epoch = ctx.getLocalProperty("streaming.sql.batchId")
    query = ctx.getLocalProperty("sql.streaming.queryId")
    run = ctx.getLocalProperty("spark.jobGroup.id") or "" if query else ""
    return ctx.partitionId(), ctx.taskAttemptId(), int(epoch) if epoch else 0, run, query


