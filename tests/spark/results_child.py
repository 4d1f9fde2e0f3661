"""Run by test_spark_results.py in a fresh process (its own JVM: ``local[2,4]``, retries allowed,
speculation on), writing to the parent's sandbox results receiver with failures injected
upstream of the writer. The parent asserts on the receiver.

argv: sandbox.json, control directory, mode:

* ``batch VIA``: the batch scenarios through ``write_results`` (VIA ``ds``: the data source;
  ``mia``: ``mapInArrow`` + a driver-side commit); one ``<scenario>-<via>.json`` each.
* ``stream-killed VIA``: a streaming query (VIA ``ds``: the data source; ``feb``: foreachBatch) that blocks in micro-batch 1 until the parent kills it.
* ``stream-restart VIA``: the same query restarted from its checkpoint until every file is done;
  then its last commit-log entry removed (a crash after the sink's commit, before Spark's log)
  and restarted again.

Control files (``ctl/``): markers the injected functions and the parent exchange.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

ROWS = 4000
PARTITIONS = 4
STREAM_FILES = 5
STREAM_ROWS = 500
WAIT = 240.0  # a bound on every wait for a marker (a broken run fails instead of hanging)


def wait_for(path: Path, timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


def staged_files(info: dict[str, Any], dataset: str) -> int:
    """Batches staged and not (yet) committed, read from the receiver's files."""
    root = Path(info["trust_anchors"]).parent.parent / "data" / "results" / "datasets" / dataset
    data = len(list((root / "batches").glob("*.data"))) if (root / "batches").is_dir() else 0
    try:
        committed = len(json.loads((root / "manifest.json").read_text())["batches"])
    except (OSError, ValueError):
        committed = 0
    return data - committed


def staged_of(info: dict[str, Any], dataset: str, partition: int) -> int:
    """Batch files of ``partition`` on the receiver (staged or committed)."""
    root = Path(info["trust_anchors"]).parent.parent / "data" / "results" / "datasets" / dataset / "batches"
    return len(list(root.glob(f"p{partition}-*.data"))) if root.is_dir() else 0


def until_staged(info: dict[str, Any], dataset: str, timeout: float = WAIT) -> None:
    end = time.monotonic() + timeout
    while staged_files(info, dataset) <= 0 and time.monotonic() < end:
        time.sleep(0.05)


def injector(scenario: str, dataset: str, ctl: Path, info: dict[str, Any]) -> Any:
    """The upstream ``mapInArrow`` function that fails, stalls or waits as ``scenario`` says."""

    def run(batches: Any) -> Any:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        part, attempt = ctx.partitionId(), ctx.attemptNumber()
        (ctl / f"{scenario}-p{part}-a{attempt}.started").touch()
        for n, batch in enumerate(batches):
            if scenario == "retry" and part == 1 and attempt == 0 and n == 5:
                # die once this attempt has staged some of its partition (rows are padded so Spark
                # hands them on before the partition ends), so the retry must not duplicate them
                end = time.monotonic() + 30
                while not staged_of(info, dataset, 1) and time.monotonic() < end:
                    time.sleep(0.05)
                (ctl / "retry-dead-staged.txt").write_text(str(staged_of(info, dataset, 1)))
                raise RuntimeError("injected: the first attempt of partition 1 dies midway")
            if scenario == "failed" and part == 3 and n == 1:
                seen = staged_files(info, dataset)
                (ctl / f"failed-staged-{attempt}.txt").write_text(str(seen))
                raise RuntimeError("injected: partition 3 fails on every attempt")
            if scenario == "restart" and part == 1 and n == 3:  # any attempt (a speculative copy waits too)
                until_staged(info, dataset)  # something staged before the restart
                (ctl / "restart-mid").touch()
                wait_for(ctl / "restart-done")
            if scenario == "speculation" and part == 0 and attempt == 0 and n == 2:
                stage_losing_copy(info, dataset, ctl)
            yield batch

    return run


def stage_losing_copy(info: dict[str, Any], dataset: str, ctl: Path) -> None:
    """What a speculative copy of partition 0 that loses leaves on the receiver: the whole
    partition staged under the job by another attempt, while the original is still running.

    (Spark never starts a speculative copy on a host where an attempt of the task runs, and
    local mode has no speculation at all, so one machine cannot make Spark launch the copy.)
    """
    import pyarrow as pa

    from meshclient.results.partition import Target, stage_part

    sink = info["services"]["results"]
    ids = list(range(ROWS // PARTITIONS))
    table = pa.table({"id": ids, "score": [i * 0.5 for i in ids], "label": [f"r{i}" for i in ids]})
    with client_from(info) as client:
        part = stage_part(client, Target(sink["url"], sink["identity"], dataset, batch_rows=100),
                          table.to_batches(max_chunksize=100), job=f"spec-{dataset}", partition=0, attempt=10**9)
    (ctl / "speculation-copy-staged").write_text(json.dumps(part.batch_ids))


def session(ctl: Path) -> Any:
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master(f"local[2,{4}]").appName("meshclient-results-tests")
            .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.local.dir", str(ctl / "spark-local"))
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.execution.arrow.maxRecordsPerBatch", "100")
            .config("spark.speculation", "true").config("spark.speculation.interval", "100ms")
            .config("spark.speculation.multiplier", "1").config("spark.speculation.quantile", "0.5")
            .config("spark.speculation.minTaskRuntime", "100ms")
            .getOrCreate())


def client_from(info: dict[str, Any]) -> Any:
    from meshclient import Credentials, MeshClient

    c = info["client"]
    return MeshClient(Credentials.from_files(c["cert"], c["key"], info["trust_anchors"]))


def batch(info: dict[str, Any], ctl: Path, via: str) -> None:
    import meshclient.spark as mspark

    spark, client, sink = session(ctl), client_from(info), info["services"]["results"]
    base = spark.range(0, ROWS, numPartitions=PARTITIONS).selectExpr("id", "id * 0.5 AS score", "'r' || id AS label",
                                                                       "repeat('x', 200) AS pad")
    for scenario in ("retry", "speculation", "failed", "restart", "rerun"):
        dataset = f"{scenario}-{via}"
        df = base.mapInArrow(injector(scenario, dataset, ctl, info), base.schema)
        kw: dict[str, Any] = dict(url=sink["url"], server_identity=sink["identity"], dataset=dataset, client=client,
                                  batch_rows=100, use_data_source=(via == "ds"))
        out: dict[str, Any] = {"scenario": scenario, "via": via}
        try:
            if scenario == "speculation":  # the losing copy stages under the job: its id must be known
                kw["job"] = f"spec-{dataset}"
            if scenario == "rerun":  # the same job twice: the second commits nothing
                kw["job"] = f"nightly-{via}"
                out["first"] = mspark.write_results(df, **kw).__dict__
            out["report"] = mspark.write_results(df, **kw).__dict__
        except Exception as exc:
            out["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
        (ctl / f"{scenario}-{via}.json").write_text(json.dumps(out))
    spark.stop()


def stream(info: dict[str, Any], ctl: Path, mode: str, via: str) -> None:
    """VIA ``ds``: ``writeStream.format("meshclient-results")``; ``feb``: ``write_results_stream``
    through ``foreachBatch`` (Spark 3.5's way)."""
    import meshclient.spark as mspark
    from meshclient.spark.results import stream_job_prefix

    spark, client, sink = session(ctl), client_from(info), info["services"]["results"]
    dataset = f"stream-{via}"
    source, checkpoint = ctl / "stream-in", ctl / f"stream-checkpoint-{via}"

    def stall(batches: Any) -> Any:  # run 1: partition 0 of micro-batch 1 (file 1's rows) blocks until killed
        from pyspark import TaskContext

        for batch in batches:
            first = batch.column(0)[0].as_py() if batch.num_rows else -1
            if mode == "stream-killed" and TaskContext.get().partitionId() == 0 and \
                    STREAM_ROWS <= first < 2 * STREAM_ROWS:
                until_staged(info, dataset)  # partition 1 of the micro-batch has staged its batches
                (ctl / f"stream-stalled-{via}").write_text(str(staged_files(info, dataset)))
                wait_for(ctl / "never")
            yield batch

    def run_query() -> None:
        sdf = spark.readStream.schema("id long, score double").option("maxFilesPerTrigger", 1).parquet(str(source))
        sdf = sdf.repartition(2).mapInArrow(stall, sdf.schema)
        if via == "ds":
            mspark.register(spark, client)
            q = (sdf.writeStream.format("meshclient-results").option("url", sink["url"])
                 .option("server_identity", sink["identity"]).option("dataset", dataset).option("batch_rows", "100")
                 .option("checkpointLocation", str(checkpoint)).trigger(availableNow=True).start())
            prefix = str(q.id)
        else:
            q = mspark.write_results_stream(sdf, url=sink["url"], server_identity=sink["identity"], dataset=dataset,
                                            checkpoint_location=str(checkpoint), client=client, batch_rows=100,
                                            trigger={"availableNow": True}, use_data_source=False)
            prefix = stream_job_prefix(str(checkpoint))
        (ctl / f"stream-query-id-{via}").write_text(prefix)
        q.awaitTermination(WAIT)
        q.stop()

    run_query()
    if mode == "stream-restart":  # crash after the sink's commit of the last batch, before Spark logged it
        commits = checkpoint / "commits"
        last = max(int(p.name) for p in commits.iterdir() if p.name.isdigit())
        (commits / str(last)).unlink()
        (commits / f".{last}.crc").unlink(missing_ok=True)
        run_query()
        # Spark re-ran the batch through the sink and logged it again
        (ctl / f"stream-replayed-batch-{via}").write_text(json.dumps([last, (commits / str(last)).exists()]))
    spark.stop()


def main() -> int:
    info = json.loads(Path(sys.argv[1]).read_text())
    ctl, mode = Path(sys.argv[2]), sys.argv[3]
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if mode == "batch":
        batch(info, ctl, sys.argv[4])
    else:
        stream(info, ctl, mode, sys.argv[4])
    (ctl / f"{mode}-{sys.argv[4]}.done").touch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
