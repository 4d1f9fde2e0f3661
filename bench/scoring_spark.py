"""Benchmark: ``meshclient.spark.score`` against a naive per-row UDF and against the same
batching over plain HTTP, all in one local Spark run (``local[2]``) against one MLflow scoring
server (``mlflow models serve --env-manager local``, a scikit-learn tree on iris).

- **mesh**: ``meshclient.spark.score`` over mTLS through an inbound proxy in front of the
  server: nginx configured like a Linkerd inbound proxy (TLS 1.3, client certificate verified,
  SNI = identity) proxying to the server with keep-alive, or (``--proxy sandbox``, or without
  nginx) the sandbox's Python ``InboundProxy``.
- **naive**: a plain Python UDF doing one ``requests.post`` per row to the server's own port
  (no TLS, a new connection per row): what people write first. Run on ``--naive-rows`` rows
  (it is slow); the figure compared is rows/s. Target: mesh >= 50x naive.
- **plain**: the same batching (same codec, batch size, per-task threads and per-host slots)
  over plain HTTP with a ``requests.Session`` per task to the server's own port, no mesh.
  Target: mesh >= 0.8x plain. The rounds alternate (mesh, plain / plain, mesh).

Then rows/s of ``spark.score`` as ``batch_size`` and ``max_in_flight`` vary.

Usage: ``python bench/scoring_spark.py [--rows 1000000] [--naive-rows 2000] [--rounds 2]
[--scaling-rows 200000] [--proxy auto|nginx|sandbox] [--server-workers 1]``. Needs ``make
model-servers`` (.venv-mlflow), pyspark and Java.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from meshclient import Credentials, MeshClient
from meshclient_sandbox.apps.model_servers import MlflowModelServer, model_dir, venv_python
from meshclient_sandbox.nginx import find_nginx
from meshclient_sandbox.nginx_proxy import ProxyingNginx
from meshclient_sandbox.pki import SandboxPKI
from meshclient_sandbox.proxy import InboundProxy

CLIENT_ID = "scorer.ml-team.serviceaccount.identity.linkerd.cluster.local"
SERVER_ID = "fraud-model.ml-serving.serviceaccount.identity.linkerd.cluster.local"
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
NAIVE_TARGET, PLAIN_TARGET = 50.0, 0.8


@contextlib.contextmanager
def mesh_front(kind: str, pki: SandboxPKI, app_port: int, workdir: Path) -> Iterator[tuple[str, str]]:
    leaf = pki.issue(SERVER_ID)
    if kind == "nginx" or (kind == "auto" and find_nginx() is not None):
        with ProxyingNginx(app_port, cert_chain_pem=leaf.chain_pem, key_pem=leaf.key_pem,
                           client_trust_pem=leaf.trust_anchors_pem, workdir=workdir / "nginx",
                           worker_processes=1) as nginx:
            yield "nginx (like a Linkerd inbound proxy)", nginx.url
        return
    creds = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem)
    with InboundProxy(creds, app_port, policy="all-authenticated") as proxy:
        yield "sandbox InboundProxy (Python)", proxy.url()


def spark_session(workdir: Path) -> Any:
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return (SparkSession.builder.master("local[2]").appName("meshclient-scoring-bench")
            .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
            .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.local.dir", str(workdir / "spark")).config("spark.python.worker.reuse", "true")
            .config("spark.sql.shuffle.partitions", "4").getOrCreate())


def features(spark: Any, rows: int, partitions: int = 4) -> Any:
    from pyspark.sql import functions as F

    lows, spans = [4.3, 2.0, 1.0, 0.1], [3.6, 2.4, 5.9, 2.4]
    cols = [(F.rand(i + 1) * spans[i] + lows[i]).alias(c) for i, c in enumerate(COLUMNS)]
    return spark.range(0, rows, 1, partitions).select("id", *cols).cache()


def timed(action: Callable[[], Any]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def run_noop(df: Any) -> None:
    df.write.format("noop").mode("overwrite").save()


def naive_udf(url: str) -> Any:
    from pyspark.sql import functions as F

    def predict(a: float, b: float, c: float, d: float) -> float:
        import requests

        body = {"dataframe_split": {"columns": COLUMNS, "data": [[a, b, c, d]]}}
        return float(requests.post(url, json=body, timeout=60).json()["predictions"][0])

    return F.udf(predict, "double")


def plain_batches(url: str, batch_size: int, max_in_flight: int, slot_key: str) -> Callable[[Iterator[Any]], Iterator[Any]]:
    """The same batching as spark.score (codec, batch size, threads, per-host slots), over plain HTTP."""

    def run(batches: Iterator[Any]) -> Iterator[Any]:
        from concurrent.futures import ThreadPoolExecutor

        import pyarrow as pa
        import requests

        from meshclient.scoring import invocations
        from meshclient.spark.slots import HostSlots

        slots = HostSlots(slot_key, max_in_flight)
        session = requests.Session()
        session.trust_env = False

        def one(pdf: Any) -> list[Any]:
            body, headers = invocations.encode_request(pdf)
            with slots.slot():
                resp = session.post(url, data=body, headers=headers, timeout=60)
            resp.raise_for_status()
            out = invocations.decode_response(resp.content, len(pdf))
            assert isinstance(out, list)
            return out

        with ThreadPoolExecutor(max_in_flight) as pool:
            for batch in batches:
                pdf = pa.Table.from_batches([batch]).select(COLUMNS).to_pandas()
                parts = pool.map(one, [pdf.iloc[i:i + batch_size] for i in range(0, len(pdf), batch_size)])
                preds = [p for part in parts for p in part]
                yield pa.RecordBatch.from_arrays([*batch.columns, pa.array(preds, pa.float64())],
                                                 names=[*batch.schema.names, "prediction"])
        session.close()

    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--naive-rows", type=int, default=2_000)
    parser.add_argument("--scaling-rows", type=int, default=200_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--max-in-flight", type=int, default=4)
    parser.add_argument("--proxy", choices=["auto", "nginx", "sandbox"], default="auto")
    parser.add_argument("--server-workers", type=int, default=1)
    args = parser.parse_args()
    if venv_python("mlflow") is None:
        print("needs .venv-mlflow: make model-servers", file=sys.stderr)
        return 2
    from pyspark.sql import types as T

    import meshclient.spark as mspark

    with tempfile.TemporaryDirectory(prefix="meshclient-scoring-bench-") as tmp:
        work = Path(tmp)
        pki = SandboxPKI.create()
        leaf = pki.issue(CLIENT_ID)
        server = MlflowModelServer(model_dir("mlflow", work), workers=args.server_workers, log_path=work / "mlflow.log")
        spark = spark_session(work)
        try:
            with contextlib.ExitStack() as stack:
                server.start()
                stack.callback(server.stop)
                front, mesh_url = stack.enter_context(mesh_front(args.proxy, pki, server.port, work))
                client = stack.enter_context(MeshClient(Credentials.from_pem(leaf.chain_pem, leaf.key_pem,
                                                                              leaf.trust_anchors_pem)))
                handle = mspark.share(client, spark)
                plain_url = f"{server.url}/invocations"
                print(f"server: mlflow models serve (workers={args.server_workers}); mesh front: {front}; "
                      f"Spark local[2]; batch_size={args.batch_size}, max_in_flight={args.max_in_flight}")

                def mesh_df(df: Any, batch_size: int, max_in_flight: int) -> Any:
                    return mspark.score(df, endpoint=mesh_url, server_identity=SERVER_ID, client=handle,
                                        input_cols=COLUMNS, batch_size=batch_size, max_in_flight=max_in_flight,
                                        return_type="double")

                def plain_df(df: Any, batch_size: int, max_in_flight: int) -> Any:
                    schema = T.StructType([*df.schema.fields, T.StructField("prediction", T.DoubleType())])
                    return df.mapInArrow(plain_batches(plain_url, batch_size, max_in_flight, uuid.uuid4().hex), schema)

                warm = features(spark, 20_000)
                run_noop(mesh_df(warm, args.batch_size, args.max_in_flight))
                run_noop(plain_df(warm, args.batch_size, args.max_in_flight))

                naive_src = features(spark, args.naive_rows, 2)
                naive_src.count()
                naive = naive_udf(plain_url)
                naive_s = timed(lambda: run_noop(naive_src.withColumn("prediction", naive(*COLUMNS))))
                naive_rate = args.naive_rows / naive_s

                big = features(spark, args.rows)
                big.count()
                mesh_s: list[float] = []
                plain_s: list[float] = []
                for r in range(args.rounds):
                    order = [("mesh", mesh_df), ("plain", plain_df)]
                    for name, make in order if r % 2 == 0 else order[::-1]:
                        t = timed(lambda make=make: run_noop(make(big, args.batch_size, args.max_in_flight)))
                        (mesh_s if name == "mesh" else plain_s).append(t)
                mesh_rate = args.rows * len(mesh_s) / sum(mesh_s)
                plain_rate = args.rows * len(plain_s) / sum(plain_s)
                print(f"naive per-row UDF (plain HTTP): {naive_rate:10,.0f} rows/s  ({args.naive_rows} rows)")
                print(f"same batching, plain HTTP     : {plain_rate:10,.0f} rows/s  ({args.rows} rows x {args.rounds})")
                print(f"meshclient.spark.score (mTLS) : {mesh_rate:10,.0f} rows/s  ({args.rows} rows x {args.rounds})")
                r_naive, r_plain = mesh_rate / naive_rate, mesh_rate / plain_rate
                print(f"ratio spark.score/naive: {r_naive:.1f}x (target >= {NAIVE_TARGET:g}x: "
                      f"{'met' if r_naive >= NAIVE_TARGET else 'NOT met'})")
                print(f"ratio spark.score/plain: {r_plain:.3f}x (target >= {PLAIN_TARGET:g}x: "
                      f"{'met' if r_plain >= PLAIN_TARGET else 'NOT met'})")

                if args.scaling_rows:
                    small = features(spark, args.scaling_rows)
                    small.count()
                    print(f"scaling ({args.scaling_rows} rows, rows/s):")
                    for bs in (100, 500, 2000):
                        cells = []
                        for mif in (1, 2, 4, 8):
                            t = timed(lambda bs=bs, mif=mif: run_noop(mesh_df(small, bs, mif)))
                            cells.append(f"max_in_flight={mif}: {args.scaling_rows / t:9,.0f}")
                        print(f"  batch_size={bs:<5} " + "  ".join(cells))
        finally:
            spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
