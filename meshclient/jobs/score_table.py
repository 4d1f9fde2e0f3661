"""``meshclient-score-table``: score a Spark table against a meshed model server and write the
scores to a table (or a Parquet path), from a Databricks wheel task.

Example task (``bundle/databricks.yml``)::

    python_wheel_task:
      package_name: meshclient
      entry_point: meshclient-score-table
      named_parameters:
        table: main.ml.features
        endpoint: https://fraud-model.ml-serving.svc.cluster.local:8080
        server-identity: fraud-model.ml-serving.serviceaccount.identity.linkerd.cluster.local
        output-table: main.ml.fraud_scores
        secret-scope: ml-mesh
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..cli.common import EXIT_OK, UsageError, positive_int
from .runner import run_job, say
from .spark_job import client_from, job_parser, read_input, spark_session

__all__ = ["main"]

PROG = "meshclient-score-table"


def _parser() -> argparse.ArgumentParser:
    p = job_parser(PROG, "Score a Spark table against a model server in the Linkerd mesh (MLflow /invocations "
                         "or the Open Inference Protocol) and write the scores.")
    p.add_argument("--table", metavar="NAME", help="the input table (catalog.schema.table)")
    p.add_argument("--input-path", metavar="PATH", help="or a Parquet path to read")
    p.add_argument("--endpoint", metavar="URL", required=True, help="the model server's https:// URL")
    p.add_argument("--server-identity", metavar="ID", required=True, help="the identity the server must prove")
    p.add_argument("--protocol", choices=("mlflow", "v2"), default="mlflow")
    p.add_argument("--model", metavar="NAME", help="the model name (Open Inference Protocol)")
    p.add_argument("--input-cols", metavar="A,B,...", help="columns sent to the model (default: all)")
    p.add_argument("--output-col", metavar="NAME", default="prediction")
    p.add_argument("--output-table", metavar="NAME", help="write the scored table here")
    p.add_argument("--output-path", metavar="PATH", help="or write Parquet here")
    p.add_argument("--mode", choices=("overwrite", "append", "error"), default="error",
                   help="when the output exists (default: error)")
    p.add_argument("--batch-size", metavar="ROWS", type=positive_int, default=1000)
    p.add_argument("--max-in-flight", metavar="N", type=positive_int, default=4,
                   help="requests in flight per executor (default 4)")
    p.add_argument("--on-error", choices=("raise", "null"), default="raise")
    return p


def _run(args: argparse.Namespace) -> int:
    import meshclient.spark as mspark

    if bool(args.output_table) == bool(args.output_path):
        raise UsageError("give exactly one of --output-table and --output-path")
    client = client_from(args)
    say(f"identity: {client.identity}")
    spark = spark_session()
    df = read_input(spark, args.table, args.input_path)
    cols = [c.strip() for c in args.input_cols.split(",")] if args.input_cols else None
    say(f"scoring {args.table or args.input_path} against {args.endpoint} ({args.server_identity}), "
        f"protocol {args.protocol}, batches of {args.batch_size}, {args.max_in_flight} in flight per executor")
    job = mspark.ScoringJob()
    scored = mspark.score(df, endpoint=args.endpoint, server_identity=args.server_identity, client=client,
                          protocol=args.protocol, model=args.model, input_cols=cols, output_col=args.output_col,
                          batch_size=args.batch_size, max_in_flight=args.max_in_flight, on_error=args.on_error,
                          job=job)
    writer = scored.write.mode(args.mode)
    if args.output_table:
        writer.saveAsTable(args.output_table)
    else:
        writer.parquet(args.output_path)
    stats = job.report()
    say(f"wrote {args.output_table or args.output_path}: {stats}")
    client.close()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(PROG, _parser(), _run, argv)
