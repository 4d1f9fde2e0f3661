"""What the Spark-backed job entry points share: the parameters every one takes (identity,
token), the active SparkSession, reading the input table, and the exit-status contract."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from ..cli.common import (
    EXIT_ERROR,
    EXIT_USAGE,
    HelpFormatter,
    UsageError,
    add_debug_option,
    add_material_options,
    add_token_options,
    load_credentials,
    report_error,
)
from ..errors import MeshError
from ..redaction import redact_text

__all__ = ["job_parser", "run_job", "client_from", "spark_session", "read_input", "say"]


def say(text: str) -> None:
    """One line on the job run page (stdout, flushed: the page shows it while the job runs)."""
    print(text, flush=True)


def job_parser(prog: str, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    add_token_options(parser)
    add_material_options(parser)
    add_debug_option(parser)
    return parser


def run_job(prog: str, parser: argparse.ArgumentParser, body: Callable[[argparse.Namespace], int],
            argv: Sequence[str] | None) -> int:
    """Parse ``argv`` (``--name=value`` and ``--name value`` alike), run ``body``, map failures to
    exit statuses: 2 for bad parameters, 1 for a failure (``MeshError``: message and fix)."""
    try:
        args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return body(args)
    except UsageError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except MeshError as err:
        if args.debug:
            traceback.print_exc()
        report_error(err)
        return EXIT_ERROR
    except Exception as exc:  # Spark's own errors (a missing table, a failed stage): say what failed
        if args.debug:
            traceback.print_exc()
        print(f"{prog}: error: {type(exc).__name__}: {redact_text(str(exc))[:2000]}", file=sys.stderr)
        return EXIT_ERROR


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
