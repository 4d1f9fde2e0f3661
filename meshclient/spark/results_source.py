"""The ``meshclient-results`` Python data source (Spark >= 4.0, Databricks Runtime >= 15.4).

``meshclient.spark.register(spark, client)``, then::

    df.write.format("meshclient-results").option("url", URL).option("server_identity", ID) \\
        .option("dataset", "scores").mode("append").save()
    df.writeStream.format("meshclient-results").option(...).option("checkpointLocation", DIR).start()

Why this shape (``docs/results-protocol.md``): Spark runs ``write()`` on executors *before* its
commit coordination, so retried and speculative attempts all run it. ``write()`` therefore only
stages (under the job and its own attempt's ids, invisible) and returns the ids as its commit
message; Spark hands the driver one message per partition, and ``commit()`` publishes exactly
those in one job-keyed commit, which also discards the other attempts' batches; ``abort()``
discards the whole job. A streaming micro-batch is the job ``{query id}.b{batchId}``: a query
restarted from its checkpoint re-runs the micro-batch under the same job, which the receiver
knows is committed, so nothing is staged or published twice.

This module imports pyspark at import time; ``meshclient.spark`` loads it only when asked.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyspark.sql.datasource import DataSource, DataSourceArrowWriter, DataSourceStreamWriter, WriterCommitMessage

from ..errors import ConfigurationError
from ..results.partition import DEFAULT_BATCH_ROWS, StagedPart, Target, finish_job, stage_part
from .tasks import Handle, executor_handle, task_coordinates

try:  # Spark >= 4.1: the stream writer gets Arrow batches too
    from pyspark.sql.datasource import DataSourceStreamArrowWriter as _StreamBase
    _STREAM_ARROW = True
except ImportError:  # Spark 4.0: rows, converted to Arrow here
    _StreamBase = DataSourceStreamWriter  # type: ignore[misc,assignment]
    _STREAM_ARROW = False

__all__ = ["FORMAT_NAME", "ResultsDataSource", "ResultsCommitMessage", "register"]

FORMAT_NAME = "meshclient-results"
_ROWS_PER_ARROW_BATCH = 10_000


@dataclass
class ResultsCommitMessage(WriterCommitMessage):
    """One task attempt's staged batches, for the driver's commit."""

    part: StagedPart


def _target(options: Any) -> Target:
    missing = [k for k in ("url", "server_identity", "dataset") if not options.get(k)]
    if missing:
        raise ConfigurationError(f"The {FORMAT_NAME} data source needs the option(s) {', '.join(missing)}.",
                                 hint='.option("url", "https://HOST:PORT").option("server_identity", ID)'
                                      '.option("dataset", NAME)')
    rows = options.get("batch_rows") or str(DEFAULT_BATCH_ROWS)
    if not rows.isdigit():
        raise ConfigurationError(f"The option batch_rows must be a positive integer, got {rows!r}.")
    return Target(url=options["url"], server_identity=options["server_identity"], dataset=options["dataset"],
                  format=options.get("format") or "arrow", batch_rows=int(rows))


def _parts(messages: list[Any]) -> list[StagedPart | None]:
    return [m.part if isinstance(m, ResultsCommitMessage) else None for m in messages]


class _BatchWriter(DataSourceArrowWriter):
    def __init__(self, handle: Handle, target: Target, job: str) -> None:
        self.handle, self.target, self.job = handle, target, job

    def write(self, iterator: Iterator[Any]) -> ResultsCommitMessage:
        partition, attempt, _, _, _ = task_coordinates()
        return ResultsCommitMessage(stage_part(self.handle.client(), self.target, iterator, job=self.job,
                                               partition=partition, attempt=attempt))

    def commit(self, messages: list[Any]) -> None:
        finish_job(self.handle.client(), self.target, self.job, _parts(messages), succeeded=True)

    def abort(self, messages: list[Any]) -> None:
        finish_job(self.handle.client(), self.target, self.job, _parts(messages), succeeded=False)


def _row_batches(rows: Iterator[Any], schema: Any) -> Iterator[Any]:
    """Arrow record batches from Spark ``Row``s (Spark 4.0's stream writer gets rows)."""
    import pyarrow as pa
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema)
    chunk: list[dict[str, Any]] = []
    for row in rows:
        chunk.append(row.asDict(recursive=True))
        if len(chunk) == _ROWS_PER_ARROW_BATCH:
            yield pa.RecordBatch.from_pylist(chunk, schema=arrow_schema)
            chunk = []
    if chunk:
        yield pa.RecordBatch.from_pylist(chunk, schema=arrow_schema)


class _StreamWriter(_StreamBase):  # type: ignore[misc,valid-type]
    def __init__(self, handle: Handle, target: Target, schema: Any, query: str | None) -> None:
        self.handle, self.target, self.schema, self.query = handle, target, schema, query

    def write(self, iterator: Iterator[Any]) -> ResultsCommitMessage:
        partition, attempt, epoch, run, query_id = task_coordinates()
        query = self.query or query_id
        if not query:
            raise ConfigurationError("The streaming writer found no streaming query id in its task.",
                                     hint='Give the query a stable id: .option("query", NAME).')
        batches = iterator if _STREAM_ARROW else _row_batches(iterator, self.schema)
        return ResultsCommitMessage(stage_part(self.handle.client(), self.target, batches, job=f"{query}.b{epoch}",
                                               partition=partition, attempt=attempt, epoch=epoch, run=run))

    def _job(self, messages: list[Any], batch_id: int) -> str | None:
        jobs = {p.job for p in _parts(messages) if p is not None}
        if len(jobs) > 1:
            raise ConfigurationError(f"Micro-batch {batch_id} has messages of several jobs: {sorted(jobs)}.")
        return jobs.pop() if jobs else (f"{self.query}.b{batch_id}" if self.query else None)

    def commit(self, messages: list[Any], batchId: int) -> None:
        job = self._job(messages, batchId)
        if job is not None:
            finish_job(self.handle.client(), self.target, job, _parts(messages), succeeded=True)

    def abort(self, messages: list[Any], batchId: int) -> None:
        job = self._job(messages, batchId)
        if job is not None:
            finish_job(self.handle.client(), self.target, job, _parts(messages), succeeded=False)


class ResultsDataSource(DataSource):
    """``meshclient-results``: append-only, exactly-once writes (batch and streaming).

    Options: ``url``, ``server_identity``, ``dataset`` (required); ``format`` (``arrow``,
    ``parquet``, ``jsonl``); ``batch_rows`` (rows per staged batch); ``job`` (a batch write's id:
    re-running a committed job commits nothing); ``query`` (a streaming query's stable id; by
    default Spark's query id, which survives restarts from the checkpoint).
    """

    #: set on the class :func:`register` makes (how each task gets its client)
    handle: Handle | None = None

    @classmethod
    def name(cls) -> str:
        return FORMAT_NAME

    def _handle(self) -> Handle:
        if self.handle is None:
            raise ConfigurationError("The meshclient-results data source was not registered with a client.",
                                     hint="Call meshclient.spark.register(spark, client) first.")
        return self.handle

    def writer(self, schema: Any, overwrite: bool) -> _BatchWriter:
        if overwrite:
            raise ConfigurationError("Results datasets are append-only: mode('overwrite') is not supported.",
                                     hint="Use .mode('append'), and a new dataset name for a fresh start.")
        return _BatchWriter(self._handle(), _target(self.options), self.options.get("job") or f"w-{uuid.uuid4().hex}")

    def streamWriter(self, schema: Any, overwrite: bool) -> _StreamWriter:
        return _StreamWriter(self._handle(), _target(self.options), schema, self.options.get("query"))


def register(spark: Any, client: Any = None) -> type[ResultsDataSource]:
    """Register ``meshclient-results`` on ``spark`` with ``client`` (a ``MeshClient``, a
    ``ClientConfig``, a sealed handle, or ``None``: executors use their ``MESHCLIENT_*``
    environment); returns the registered class."""
    handle = executor_handle(client, spark, in_data_source=True)
    # A class made here (not importable by name) is pickled by value, with its handle.
    cls = type("RegisteredResultsDataSource", (ResultsDataSource,), {"handle": handle, "__module__": __name__})
    spark.dataSource.register(cls)
    return cls
