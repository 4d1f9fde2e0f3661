"""One writer task's share of a job: stage a stream of Arrow batches under the job, return what
was staged (the task's commit message); then, on the driver, commit or abort the job once.

Spark-free (``meshclient.spark`` calls it from data sources and ``mapInArrow`` tasks), so the same
code serves every Spark version and a plain-Python writer that splits a job.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..client import MeshClient
from ..errors import ConfigurationError, ResultsError
from .encoding import FORMATS
from .push import _check_name, abort, batch_id_for, commit, stage

__all__ = ["Target", "StagedPart", "stage_part", "finish_job", "DEFAULT_BATCH_ROWS"]

log = logging.getLogger("meshclient.results")

#: rows per staged batch: large enough for Arrow to pay off, small enough to retry cheaply
DEFAULT_BATCH_ROWS = 100_000


@dataclass(frozen=True)
class Target:
    """Where a job's results go (picklable: travels to executors)."""

    url: str
    server_identity: str
    dataset: str
    format: str = "arrow"
    batch_rows: int = DEFAULT_BATCH_ROWS

    def __post_init__(self) -> None:
        _check_name(self.dataset, "dataset name")
        if self.format not in FORMATS:
            raise ConfigurationError(f"Unknown results format {self.format!r}.", hint=f"Use one of: {', '.join(FORMATS)}.")
        if not isinstance(self.batch_rows, int) or self.batch_rows < 1:
            raise ConfigurationError(f"batch_rows must be a positive integer, got {self.batch_rows!r}.")

    def where(self) -> dict[str, str]:
        return {"url": self.url, "server_identity": self.server_identity, "dataset": self.dataset}


@dataclass
class StagedPart:
    """What one task attempt staged: the ids its job's commit must list (a task's commit message)."""

    job: str
    partition: int
    attempt: int
    batch_ids: list[str] = field(default_factory=list)
    rows: int = 0
    #: the receiver said the job is already committed (a replayed micro-batch): nothing staged
    already_committed: bool = False


def _chunks(batches: Iterable[Any], rows: int) -> Iterable[Any]:
    """Arrow tables of ``rows`` rows (the last one shorter) from a stream of record batches."""
    import pyarrow as pa

    pending: list[Any] = []
    count = 0
    for batch in batches:
        offset = 0
        while offset < batch.num_rows:
            take = min(rows - count, batch.num_rows - offset)
            pending.append(batch.slice(offset, take))
            count += take
            offset += take
            if count == rows:
                yield pa.Table.from_batches(pending)
                pending, count = [], 0
    if count:
        yield pa.Table.from_batches(pending)


def stage_part(client: MeshClient, target: Target, batches: Iterable[Any], *, job: str, partition: int,
               attempt: int, epoch: int = 0, run: str = "") -> StagedPart:
    """Stage ``batches`` (Arrow record batches) as this attempt's batches of ``job``.

    Each chunk of ``target.batch_rows`` rows is staged as soon as it is full, so memory stays
    bounded; ids come from :func:`~meshclient.results.batch_id_for`, so a re-sent stage is a
    replay and another attempt never collides with this one.
    """
    part = StagedPart(job=job, partition=partition, attempt=attempt)
    for seq, table in enumerate(_chunks(batches, target.batch_rows)):
        bid = batch_id_for(target.dataset, job, partition, epoch, attempt=attempt, seq=seq, run=run)
        try:
            stage(client, table, batch_id=bid, format=target.format, job=job, **target.where())
        except ResultsError as err:
            if err.code == "job_committed":  # a replayed micro-batch: its commit already happened
                part.already_committed = True
                part.batch_ids.clear()
                return part
            raise
        part.batch_ids.append(bid)
        part.rows += table.num_rows
    return part


def finish_job(client: MeshClient, target: Target, job: str, parts: Sequence[StagedPart | None], *,
               succeeded: bool) -> dict[str, Any] | None:
    """The driver's last word on ``job``: commit the ids of ``parts`` (one per partition, as
    Spark delivers them) in one commit, or abort the job. Returns the commit's manifest."""
    if not succeeded:
        discarded = abort(client, job, **target.where())
        log.info("results job %s aborted: %d staged batch(es) discarded", job, len(discarded))
        return None
    ids = [bid for p in parts if p is not None for bid in p.batch_ids]
    manifest = commit(client, ids, job=job, **target.where())
    log.info("results job %s committed to %s: %d batch(es)%s", job, target.dataset, len(ids),
             " (already committed: replayed)" if manifest.get("replayed") else "")
    return manifest
