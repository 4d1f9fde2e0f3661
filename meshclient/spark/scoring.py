"""``meshclient.spark.score``: score a Spark DataFrame against a meshed model server.

Arrow end to end (``mapInArrow``): each Arrow batch of a partition becomes requests of at most
``batch_size`` rows through the Python worker's one client (``share`` + the worker cache:
TLS contexts, pooled connections and the token survive across tasks). Requests in flight are
bounded **per executor**, not per task: every worker process on a host takes a slot from the
same ``flock``'d slot files (:class:`~meshclient.spark.slots.HostSlots`) before sending. The
result column is typed from the model's v2 metadata, from a one-row sample scored on the
driver (MLflow), or from ``return_type``. Figures (rows, requests, retries, p50/p99) travel
back in an accumulator: :class:`ScoringJob` reads them on the driver after an action.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from ..audit import as_audit_sink
from ..client import MeshClient
from ..config import ClientConfig
from ..errors import ConfigurationError, ScoringError
from ..redaction import redact_url
from ..scoring.scorer import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_BYTES, Scorer
from ..scoring.stats import ScoringAuditEvent, ScoringStats
from .share import SharedClient, share
from .slots import HostSlots

__all__ = ["score", "ScoringJob"]

log = logging.getLogger("meshclient.spark")


class _StatsParam:
    """An accumulator param (pyspark calls ``zero`` and ``addInPlace``; no pyspark import needed)."""

    def zero(self, value: ScoringStats) -> ScoringStats:
        return ScoringStats()

    def addInPlace(self, a: ScoringStats, b: ScoringStats) -> ScoringStats:
        return a.merge(b)


class ScoringJob:
    """The figures of one ``meshclient.spark.score`` job, read on the driver after an action.

    ``job = ScoringJob(); scored = mspark.score(df, ..., job=job); scored.write...; job.report()``.
    Spark adds a task's figures when it finishes (a retried task's figures count again, its
    rows too: they were scored again). Without a SparkContext (Spark Connect) figures are not collected.
    """

    def __init__(self) -> None:
        self._acc: Any = None
        self._started = time.monotonic()
        self._audit: Any = None
        self._client_identity = ""
        self._server_identity = ""
        self._url = ""

    @property
    def stats(self) -> ScoringStats:
        """The figures so far (empty before an action; all of them after it)."""
        return self._acc.value if self._acc is not None else ScoringStats()

    def report(self) -> ScoringStats:
        """Log the figures (``meshclient.spark`` at INFO) and write a ``SCORE`` event to the client's audit sink."""
        stats = self.stats
        log.info("scored %s: %s", self._url, stats)
        if self._audit is not None:
            self._audit(ScoringAuditEvent.of(stats, client_identity=self._client_identity,
                                             server_identity=self._server_identity, url=self._url,
                                             seconds=time.monotonic() - self._started))
        return stats


def _spark_context(df: Any) -> Any:
    try:
        return df.sparkSession.sparkContext
    except Exception:  # Spark Connect: no SparkContext on this side
        return None


def _result_type(scorer: Scorer, df: Any, input_cols: Sequence[str], return_type: Any) -> Any:
    from . import types

    if return_type is not None:
        return types.parse_return_type(return_type)
    if scorer.protocol == "v2":
        metadata = scorer.metadata()
        if metadata is not None and metadata.outputs:
            return types.type_from_metadata(metadata)
    sample = df.select(*input_cols).limit(1).toPandas()
    if len(sample) == 0:
        return types.parse_return_type("double")
    predictions, _ = scorer.predict(sample)
    return types.type_from_sample(predictions)


def _to_arrow(predictions: Any, arrow_type: Any) -> Any:
    import pyarrow as pa

    try:
        if isinstance(predictions, dict):
            fields = list(arrow_type)
            arrays = [pa.array(predictions.get(f.name, [None] * _length(predictions)), type=f.type) for f in fields]
            return pa.StructArray.from_arrays(arrays, fields=fields)
        return pa.array(predictions, type=arrow_type)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, AttributeError) as exc:
        raise ScoringError(f"The predictions do not fit the result type {arrow_type}: {type(exc).__name__}.",
                           hint="Pass return_type= matching what the model returns.") from None


def _length(predictions: Mapping[str, list[Any]]) -> int:
    return len(next(iter(predictions.values()))) if predictions else 0


def _partition_function(handle: SharedClient, settings: dict[str, Any], input_cols: list[str], result_arrow: Any,
                        out_names: tuple[str, str], on_error: str, slots: HostSlots, accumulator: Any) -> Any:
    """The ``mapInArrow`` function (a closure: cloudpickle ships it by value with picklable parts)."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        import pyarrow as pa

        try:
            from pyspark import TaskContext

            ctx = TaskContext.get()
            partition = ctx.partitionId() if ctx is not None else 0
        except ImportError:
            partition = 0
        scorer = Scorer(handle.client(), gate=slots, **settings)
        scorer.row_label = f"partition {partition} rows"
        stats, offset = ScoringStats(), 0
        try:
            for batch in batches:
                pdf = pa.Table.from_batches([batch]).select(input_cols).to_pandas()
                predictions, errors = scorer.predict(pdf, start=offset, stats=stats, on_error=on_error)
                offset += batch.num_rows
                columns = [*batch.columns, _to_arrow(predictions, result_arrow)]
                names = [*batch.schema.names, out_names[0]]
                if on_error == "null":
                    columns.append(pa.array(errors if errors is not None else [None] * batch.num_rows,
                                            type=pa.string()))
                    names.append(out_names[1])
                yield pa.RecordBatch.from_arrays(columns, names=names)
        finally:
            if accumulator is not None:
                accumulator.add(stats)

    return run


def score(df: Any, *, endpoint: str, server_identity: str, client: MeshClient | SharedClient | ClientConfig,
          protocol: str = "mlflow", model: str | None = None, version: str | None = None,
          params: Mapping[str, Any] | None = None, input_cols: Sequence[str] | None = None,
          output_col: str = "prediction", error_col: str | None = None, batch_size: int = DEFAULT_BATCH_SIZE,
          max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES, max_in_flight: int = 4, on_error: str = "raise",
          return_type: Any = None, idempotent: bool = True, binary: bool = True, use_metadata: bool = True,
          datatypes: Mapping[str, str] | None = None, timeout: float | tuple[float, float] | None = None,
          job: ScoringJob | None = None, body_format: str = "json") -> Any:
    """``df``'s columns plus ``output_col``, the model's prediction for each row (lazy: a DataFrame).

    ``client`` is the driver's ``MeshClient`` (shared with executors here) or a handle from
    :func:`meshclient.spark.share`. ``input_cols`` (default: every column) are sent to the
    model. At most ``max_in_flight`` requests are in flight per executor host, whatever the
    number of tasks. ``on_error="null"``: a failed batch's rows get a null prediction and the
    error in ``error_col`` (default ``<output_col>_error``) instead of failing the job.
    Scoring POSTs are idempotent and retried within the client's budget (``idempotent=False``
    sends each once). Pass ``job=ScoringJob()`` for the figures after an action. ``body_format="parquet"``
    sends MLflow batches as Parquet instead of ``dataframe_split`` JSON.
    """
    from pyspark.sql import types as T

    if on_error not in ("raise", "null"):
        raise ConfigurationError(f"on_error must be 'raise' or 'null', got {on_error!r}.")
    columns = list(df.columns)
    inputs = list(input_cols) if input_cols is not None else columns
    missing = [c for c in inputs if c not in columns]
    if missing:
        raise ConfigurationError(f"input_cols {missing} are not columns of the DataFrame.")
    error_col = error_col or f"{output_col}_error"
    taken = [c for c in ([output_col] + ([error_col] if on_error == "null" else [])) if c in columns]
    if taken:
        raise ConfigurationError(f"The DataFrame already has a column {taken[0]!r}.",
                                 hint="Pick another output_col / error_col.")
    handle = client if isinstance(client, SharedClient) else share(client, df.sparkSession)
    driver_client = client if isinstance(client, MeshClient) else handle.client()
    settings: dict[str, Any] = dict(endpoint=endpoint, server_identity=server_identity, protocol=protocol, model=model,
                                    version=version, params=params, batch_size=batch_size,
                                    max_batch_bytes=max_batch_bytes, max_in_flight=max_in_flight,
                                    idempotent=idempotent, binary=binary, use_metadata=use_metadata,
                                    datatypes=datatypes, timeout=timeout, body_format=body_format)
    probe = Scorer(driver_client, **settings)
    result_type = _result_type(probe, df, inputs, return_type)
    settings["metadata"] = probe.metadata()
    from .types import arrow_type

    sc = _spark_context(df)
    job = job if job is not None else ScoringJob()
    job._acc = sc.accumulator(ScoringStats(), _StatsParam()) if sc is not None else None
    job._audit = as_audit_sink(handle.config.audit)
    job._client_identity = str(driver_client.identity)
    job._server_identity = str(server_identity)
    job._url = redact_url(probe.endpoint + probe.path)
    slots = HostSlots(uuid.uuid4().hex, max_in_flight)
    fields = [*df.schema.fields, T.StructField(output_col, result_type, True)]
    if on_error == "null":
        fields.append(T.StructField(error_col, T.StringType(), True))
    run = _partition_function(handle, settings, inputs, arrow_type(result_type), (output_col, error_col), on_error,
                              slots, job._acc)
    return df.mapInArrow(run, T.StructType(fields))
