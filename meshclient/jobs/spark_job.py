"""What the Spark-backed job entry points share: the parameters every one takes (identity,
token), the active SparkSession and reading the input table (the exit-status contract is
``runner.run_job``)."""

from __future__ import annotations

import argparse
from typing import Any

from ..cli.common import (
    HelpFormatter,
    UsageError,
    add_debug_option,
    add_material_options,
    add_token_options,
    load_credentials,
)

__all__ = ["job_parser", "client_from", "spark_session", "read_input"]


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    add_token_options(parser)
    add_material_options(parser)
    add_debug_option(parser)
    return parser


def client_from(args: argparse.Namespace) -> Any:
    """The job's ``MeshClient``: identity from --secret-scope, --cert/--key/--trust-anchors or
    ``MESHCLIENT_*``; a token from the token options if any."""
    from ..cli.request import token_provider
    from ..client import MeshClient

    creds = load_credentials(args, timeout=None)
    return MeshClient(creds, token=token_provider(args, None, None))


def spark_session() -> Any:
    """The job cluster's session (a wheel task runs in the driver, where one exists)."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise UsageError("this entry point runs on a Spark cluster (pyspark is not installed here)") from None
    return SparkSession.builder.getOrCreate()


def read_input(spark: Any, table: str | None, path: str | None) -> Any:
    if bool(table) == bool(path):
        raise UsageError("give exactly one of --table (a table name) and --input-path (a Parquet path)")
    return spark.table(table) if table else spark.read.parquet(path)
