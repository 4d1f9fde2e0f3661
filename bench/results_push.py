"""Benchmark: batch-inference results pushed as Arrow against the same rows pushed as JSON
records, through the same mesh path, then rows/s of a local Spark job writing them exactly once.

- **Receiver:** the sandbox results service (``meshclient_sandbox``'s ``ResultsSink``) behind
  its inbound mTLS proxy (client certificate verified, SNI = the service identity), so both
  sides pay the same TLS, proxy and receiver costs.
- **arrow:** ``meshclient.results.push(client, table, format="arrow")``: Arrow IPC stream, batches
  of ``--batch-rows`` rows staged under content-derived ids, digest-checked, one commit.
- **json:** the same call with ``format="jsonl"``: JSON records, one object per row (what a
  receiver that takes ``application/x-ndjson`` gets, and what hand-written pushes send).
- **pandas-json:** (for reference) the same rows as JSON records encoded by pandas' C encoder
  (``DataFrame.to_json(orient="records", lines=True)``), staged by hand with ``client.put`` and
  the protocol's headers, then committed: the fastest JSON push a user could hand-write.
- **Protocol:** the same table (``--rows`` rows: id, score, probability, label, model), a
  warm-up push per side, then ``--rounds`` rounds alternating which side goes first. Each push
  goes to a fresh dataset and is read back once at the end to check every row is there.
- **Prints:** rows/s and MB on the wire per side, and the ratio json time / arrow time
  (target: Arrow >= 5x faster). Then, unless ``--spark-rows 0``, rows/s of
  ``meshclient.spark.write_results`` from a ``local[2]`` Spark job (staged per task, one commit).

Usage: ``python bench/results_push.py [--rows 1000000] [--rounds 3] [--batch-rows 100000]
[--spark-rows 1000000]``. Loopback only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa

from meshclient import MeshClient, results
from meshclient_sandbox.runner import Sandbox, SandboxSettings

TARGET = 5.0


def make_table(rows: int) -> Any:
    import numpy as np

    rng = np.random.default_rng(7)
    ids = np.arange(rows, dtype=np.int64)
    score = rng.random(rows)
    labels = np.array(["fraud", "ok", "review"])[rng.integers(0, 3, rows)]
    return pa.table({"id": ids, "score": score, "probability": rng.random(rows), "label": labels,
                     "model": pa.array(["fraud-model/7"] * rows)})


def push_arrow(client: MeshClient, table: Any, sink: dict[str, str], dataset: str, batch_rows: int) -> int:
    receipt = results.push(client, table, url=sink["url"], server_identity=sink["identity"], dataset=dataset,
                           batch_rows=batch_rows, format="arrow")
    return receipt.bytes


def push_json(client: MeshClient, table: Any, sink: dict[str, str], dataset: str, batch_rows: int) -> int:
    receipt = results.push(client, table, url=sink["url"], server_identity=sink["identity"], dataset=dataset,
                           batch_rows=batch_rows, format="jsonl")
    return receipt.bytes


def push_pandas_json(client: MeshClient, table: Any, sink: dict[str, str], dataset: str, batch_rows: int) -> int:
    """JSON records from pandas' C encoder, staged by hand (``client.put`` with the protocol's
    headers), then one commit: the fastest JSON push a user could write."""
    ids, size = [], 0
    for n, offset in enumerate(range(0, table.num_rows, batch_rows)):
        body = table.slice(offset, batch_rows).to_pandas().to_json(orient="records", lines=True).encode()
        digest = hashlib.sha256(body).digest()
        bid = f"pj-{n}-{digest.hex()[:24]}"
        resp = client.put(f"{sink['url']}/v1/datasets/{dataset}/batches/{bid}", data=body,
                          server_identity=sink["identity"],
                          headers={"Content-Type": "application/x-ndjson",
                                   "Idempotency-Key": f"{dataset}:{bid}:{digest.hex()}",
                                   "Content-Digest": f"sha-256=:{base64.b64encode(digest).decode()}:"})
        assert resp.status_code in (200, 201), resp.text[:200]
        ids.append(bid)
        size += len(body)
    results.commit(client, ids, url=sink["url"], server_identity=sink["identity"], dataset=dataset)
    return size


def timed(fn: Any, *args: Any) -> tuple[float, int]:
    start = time.perf_counter()
    size = fn(*args)
    return time.perf_counter() - start, size


def spark_rows_per_second(sandbox: Sandbox, client: MeshClient, rows: int, batch_rows: int) -> None:
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        print("spark: pyspark is not installed, skipped")
        return
    import meshclient.spark as mspark

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    spark = (SparkSession.builder.master("local[2]").appName("meshclient-results-bench")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    sink = sandbox.service("results")
    df = spark.range(0, rows, numPartitions=4).selectExpr(
        "id", "rand(7) AS score", "rand(8) AS probability", "element_at(array('fraud','ok','review'), "
        "cast(id % 3 AS int) + 1) AS label", "'fraud-model/7' AS model")
    df = df.cache()
    df.count()
    try:
        for round_ in range(2):  # the first pays for Python worker start-up
            start = time.perf_counter()
            report = mspark.write_results(df, url=sink["url"], server_identity=sink["identity"],
                                          dataset=f"spark-{uuid.uuid4().hex[:8]}", client=client, batch_rows=batch_rows)
            took = time.perf_counter() - start
            print(f"spark write_results ({report.via}, local[2], 4 partitions) round {round_ + 1}: "
                  f"{rows:,} rows in {took:.2f} s = {rows / took:,.0f} rows/s, {report.batches} batches, one commit")
    finally:
        spark.stop()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--batch-rows", type=int, default=100_000)
    ap.add_argument("--spark-rows", type=int, default=1_000_000)
    args = ap.parse_args()

    table = make_table(args.rows)
    sides = {"arrow": push_arrow, "json": push_json, "pandas-json": push_pandas_json}
    times: dict[str, list[float]] = {k: [] for k in sides}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp, \
            Sandbox(SandboxSettings(Path(tmp), services=("results",))) as sandbox, \
            MeshClient(sandbox.client_credentials()) as client:
        sink = sandbox.service("results")
        print(f"results receiver: {sink['url']} ({sink['identity']}), {args.rows:,} rows, "
              f"batches of {args.batch_rows:,} rows")
        datasets: dict[str, list[str]] = {k: [] for k in sides}
        small = table.slice(0, min(args.rows, 10_000))
        for name, fn in sides.items():  # warm-up
            fn(client, small, sink, f"warm-{name}", args.batch_rows)
        order = list(sides)
        for round_ in range(args.rounds):
            for name in (order if round_ % 2 == 0 else order[::-1]):
                dataset = f"{name}-{round_}"
                took, size = timed(sides[name], client, table, sink, dataset, args.batch_rows)
                times[name].append(took)
                sizes[name] = size
                datasets[name].append(dataset)
        for name, names in datasets.items():  # every row arrived, once
            got = results.read(client, url=sink["url"], server_identity=sink["identity"], dataset=names[-1])
            ids = got.column("id").to_pylist()
            assert len(ids) == args.rows and len(set(ids)) == args.rows, f"{name}: rows missing or twice"
        for name in sides:
            total = sum(times[name])
            print(f"{name:12s} {args.rows * len(times[name]) / total:12,.0f} rows/s  "
                  f"{total / len(times[name]):7.2f} s/push  {sizes[name] / 1e6:8.1f} MB on the wire")
        ratio = sum(times["json"]) / sum(times["arrow"])
        ratio_pd = sum(times["pandas-json"]) / sum(times["arrow"])
        print(f"ratio json/arrow (time): {ratio:.2f}x  (pandas-json/arrow: {ratio_pd:.2f}x)  "
              f"target arrow >= {TARGET:.0f}x faster: {'met' if ratio >= TARGET else 'NOT met'}")
        if args.spark_rows:
            spark_rows_per_second(sandbox, client, args.spark_rows, args.batch_rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
