"""``meshclient-push-results --table=NAME``: a Spark table's rows pushed to a meshed results
receiver exactly once (``meshclient.spark.write_results``), from a wheel task. ``--job`` names the
write: re-running a task that already committed commits nothing again."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from ..cli.common import EXIT_OK, positive_int
from ..results.partition import DEFAULT_BATCH_ROWS
from .runner import run_job, say
from .spark_job import client_from, job_parser, read_input, spark_session

__all__ = ["main"]

PROG = "meshclient-push-results"


def _parser() -> argparse.ArgumentParser:
    p = job_parser(PROG, "Push a Spark table's rows to a results receiver in the Linkerd mesh, exactly once.")
    p.add_argument("--table", metavar="NAME", help="the table to push (catalog.schema.table)")
    p.add_argument("--input-path", metavar="PATH", help="or a Parquet path to read")
    p.add_argument("--to", metavar="URL", required=True, help="the receiver's https:// base URL")
    p.add_argument("--server-identity", metavar="ID", required=True, help="the identity the receiver must prove")
    p.add_argument("--dataset", metavar="NAME", required=True, help="the dataset the rows go to")
    p.add_argument("--job", metavar="ID", help="name the write (a re-run with the same id commits nothing again)")
    p.add_argument("--format", choices=("arrow", "parquet", "jsonl"), default="arrow")
    p.add_argument("--batch-rows", metavar="N", type=positive_int, default=DEFAULT_BATCH_ROWS)
    return p


def _run(args: argparse.Namespace) -> int:
    import meshclient.spark as mspark

    client = client_from(args)
    say(f"identity: {client.identity}")
    df = read_input(spark_session(), args.table, args.input_path)
    say(f"pushing {args.table or args.input_path} to {args.to} ({args.server_identity}), dataset {args.dataset}")
    report = mspark.write_results(df, url=args.to, server_identity=args.server_identity, dataset=args.dataset,
                                  client=client, format=args.format, batch_rows=args.batch_rows, job=args.job)
    again = " (already committed by an earlier run: nothing new)" if report.replayed else ""
    say(f"committed job {report.job} to dataset {report.dataset}: version {report.version}, "
        f"{report.batches} batches via {report.via}{again}")
    client.close()
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    return run_job(PROG, _parser(), _run, argv)
