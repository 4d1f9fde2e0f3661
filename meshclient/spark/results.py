"""``meshclient.spark.write_results``: a DataFrame's rows into a results dataset, exactly once,
on every Spark >= 3.5 (``docs/results-protocol.md``).

Where Spark has Python data sources (Spark 4, Databricks Runtime >= 15.4) this is the
``meshclient-results`` data source (:mod:`meshclient.spark.results_source`): ``write()`` stages
each partition's batches on the executors, Spark's commit coordinator keeps one attempt per
partition, and ``commit()`` on the driver publishes them in one job-keyed commit (``abort()``
discards them). Elsewhere (OSS Spark 3.5) ``mapInArrow`` stages the batches and the driver
commits the ids of the one result Spark keeps per partition, or aborts the job if the action
failed: the same guarantees.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..client import MeshClient
from ..config import ClientConfig
from ..errors import ConfigurationError
from ..results.partition import DEFAULT_BATCH_ROWS, StagedPart, Target, finish_job, stage_part
from .share import SharedClient, share
from .tasks import EnvClient, Handle, executor_handle, task_coordinates

__all__ = ["write_results", "write_results_stream", "stream_job_prefix", "WriteReport", "has_data_source",
           # re-exported from .tasks (where writers and the data source share them)
           "EnvClient", "Handle", "executor_handle", "task_coordinates"]

log = logging.getLogger("meshclient.spark")

def has_data_source() -> bool:
    """Whether this pyspark has Python data sources with an Arrow writer (Spark >= 4.0)."""
    try:
        from pyspark.sql.datasource import DataSourceArrowWriter  # noqa: F401
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class WriteReport:
    """What a ``write_results`` left on the receiver."""

    dataset: str
    job: str
    version: int
    batches: int
    #: rows staged by the attempts that were committed (``None`` through the data source)
    rows: int | None
    #: the job was already committed (re-running a finished job with the same ``job``): nothing new
    replayed: bool
    via: str  # "data source" or "mapInArrow"


def _parts_function(handle: Handle, target: Target, job: str) -> Any:
    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        partition, attempt, _, _, _ = task_coordinates()
        part = stage_part(handle.client(), target, batches, job=job, partition=partition, attempt=attempt)
        yield pa.RecordBatch.from_pylist([{"partition": part.partition, "attempt": part.attempt, "rows": part.rows,
                                           "batch_ids": part.batch_ids, "already_committed": part.already_committed}],
                                         schema=_parts_schema())

    return run


def _parts_schema() -> Any:
    import pyarrow as pa

    return pa.schema([("partition", pa.int32()), ("attempt", pa.int64()), ("rows", pa.int64()),
                      ("batch_ids", pa.list_(pa.string())), ("already_committed", pa.bool_())])


def _via_map_in_arrow(df: Any, handle: Handle, target: Target, job: str, driver: MeshClient) -> WriteReport:
    ddl = "partition int, attempt long, rows long, batch_ids array<string>, already_committed boolean"
    try:
        rows = df.mapInArrow(_parts_function(handle, target, job), ddl).collect()
    except BaseException:
        try:
            finish_job(driver, target, job, [], succeeded=False)
        except Exception as cleanup:  # the job's failure is the error to show; the cleanup's is logged
            log.warning("aborting results job %s failed: %s", job, type(cleanup).__name__)
        raise
    parts = [StagedPart(job=job, partition=r["partition"], attempt=r["attempt"], batch_ids=list(r["batch_ids"]),
                        rows=r["rows"], already_committed=r["already_committed"]) for r in rows]
    manifest = finish_job(driver, target, job, parts, succeeded=True) or {}
    record = manifest.get("jobs", {}).get(job, {})
    return WriteReport(dataset=target.dataset, job=job, version=int(record.get("version", manifest.get("version", 0))),
                       batches=int(record.get("batches", 0)), rows=sum(p.rows for p in parts),
                       replayed=bool(manifest.get("replayed")), via="mapInArrow")


def _via_data_source(df: Any, client: Any, target: Target, job: str, driver: MeshClient) -> WriteReport:
    from ..results.push import _base, _fail
    from .results_source import FORMAT_NAME, register

    manifest_url = f"{_base(target.url)}/v1/datasets/{target.dataset}"
    before = driver.get(manifest_url, server_identity=target.server_identity)
    # the job already committed (a re-run task): the write below stages and publishes nothing
    replayed = before.status_code == 200 and job in (before.json().get("jobs") or {})
    register(df.sparkSession, client)
    (df.write.format(FORMAT_NAME).mode("append")
     .option("url", target.url).option("server_identity", target.server_identity).option("dataset", target.dataset)
     .option("format", target.format).option("batch_rows", str(target.batch_rows)).option("job", job).save())
    resp = driver.get(manifest_url, server_identity=target.server_identity)
    if resp.status_code != 200:
        raise _fail(f"Reading the manifest of dataset {target.dataset!r} after job {job!r}", resp)
    record = resp.json().get("jobs", {}).get(job, {})
    return WriteReport(dataset=target.dataset, job=job, version=int(record.get("version", 0)),
                       batches=int(record.get("batches", 0)), rows=None, replayed=replayed, via="data source")


def write_results(df: Any, *, url: str, server_identity: str, dataset: str,
                  client: MeshClient | ClientConfig | SharedClient | None = None, format: str = "arrow",
                  batch_rows: int = DEFAULT_BATCH_ROWS, job: str | None = None,
                  use_data_source: bool | None = None) -> WriteReport:
    """Write ``df``'s rows to ``dataset`` exactly once; returns when they are committed (visible).

    ``client``: the driver's ``MeshClient`` (shared with executors here), a handle from
    :func:`meshclient.spark.share`, or ``None`` (executors build theirs from ``MESHCLIENT_*``).
    ``job`` names the write (default: a fresh id): re-running a write that committed under the same
    ``job`` commits nothing again. ``use_data_source``: force (True) or avoid (False) the
    ``meshclient-results`` data source; by default it is used where Spark has it (Spark >= 4.0).
    A failed action aborts the job: none of its rows become visible.
    """
    target = Target(url=url, server_identity=str(server_identity), dataset=dataset, format=format,
                    batch_rows=batch_rows)
    job = job or f"w-{uuid.uuid4().hex}"
    spark = df.sparkSession
    if isinstance(client, MeshClient):
        driver = client
    elif client is None:
        driver = EnvClient().client()
    else:
        driver = (client if isinstance(client, SharedClient) else share(client, None)).client()
    direct = has_data_source() if use_data_source is None else use_data_source
    if direct:
        return _via_data_source(df, client, target, job, driver)
    return _via_map_in_arrow(df, executor_handle(client, spark, in_data_source=False), target, job, driver)


def stream_job_prefix(checkpoint_location: str, query: str | None = None) -> str:
    """The job-id prefix of a streaming write's micro-batches (job ``{prefix}.b{batchId}``):
    ``query`` if given, else derived from the checkpoint location, which a restarted query must
    reuse anyway, so a restart recognises the micro-batches it already published."""
    if query:
        return query
    return "q-" + hashlib.sha256(checkpoint_location.encode()).hexdigest()[:24]


def write_results_stream(df: Any, *, url: str, server_identity: str, dataset: str, checkpoint_location: str,
                         client: MeshClient | ClientConfig | SharedClient | None = None, query: str | None = None,
                         format: str = "arrow", batch_rows: int = DEFAULT_BATCH_ROWS, trigger: dict[str, Any] | None = None,
                         use_data_source: bool | None = None) -> Any:
    """Start a streaming query that writes each micro-batch of ``df`` to ``dataset`` exactly once;
    returns the ``StreamingQuery``.

    Each micro-batch is the job ``{query}.b{batchId}``: a query restarted from
    ``checkpoint_location`` re-runs unfinished micro-batches under the same job, and the receiver
    publishes a job once. Where Spark has Python data sources (>= 4.0) this is
    ``writeStream.format("meshclient-results")`` (``query`` defaults to Spark's query id, kept in the
    checkpoint); elsewhere ``foreachBatch`` with :func:`write_results` per micro-batch (``query``
    defaults to a name derived from the checkpoint location). ``trigger``: keyword arguments of
    ``DataStreamWriter.trigger`` (e.g. ``{"availableNow": True}``).
    """
    Target(url=url, server_identity=str(server_identity), dataset=dataset, format=format, batch_rows=batch_rows)
    if not checkpoint_location:
        raise ConfigurationError("A streaming results write needs a checkpoint location.",
                                 hint="Pass checkpoint_location=, a path that survives the job (a UC volume).")
    spark = df.sparkSession
    direct = has_data_source() if use_data_source is None else use_data_source
    if direct:
        from .results_source import FORMAT_NAME, register

        register(spark, client)
        writer = (df.writeStream.format(FORMAT_NAME).option("url", url).option("server_identity", str(server_identity))
                  .option("dataset", dataset).option("format", format).option("batch_rows", str(batch_rows)))
        if query:
            writer = writer.option("query", query)
    else:
        prefix = stream_job_prefix(checkpoint_location, query)
        # shared once for the query's life (not a broadcast per micro-batch); on Spark Connect the
        # function is pickled to the server, so the handle is sealed there
        handle: Any = client
        if client is not None and not isinstance(client, SharedClient):
            handle = share(client.config() if isinstance(client, MeshClient) else client, spark)

        def each(batch_df: Any, batch_id: int) -> None:
            write_results(batch_df, url=url, server_identity=str(server_identity), dataset=dataset, client=handle,
                          format=format, batch_rows=batch_rows, job=f"{prefix}.b{batch_id}", use_data_source=False)

        writer = df.writeStream.foreachBatch(each)
    writer = writer.option("checkpointLocation", checkpoint_location)
    if trigger:
        writer = writer.trigger(**trigger)
    return writer.start()
