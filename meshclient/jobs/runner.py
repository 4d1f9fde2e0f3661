"""The contract every job entry point keeps with the Databricks job run page: parameters parsed
from ``sys.argv`` (a task's ``parameters`` list, or its ``named_parameters`` as ``--name=value``),
one flushed line per step on stdout, and an exit status a job can act on: 0 done, 1 failed
(``meshclient: error: ...`` and the fix on stderr, never a secret), 2 a bad parameter, named."""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Callable, Sequence

from ..cli.common import EXIT_ERROR, EXIT_USAGE, UsageError, report_error
from ..errors import MeshError
from ..redaction import redact_text

__all__ = ["run_job", "say"]


def say(text: str) -> None:
    """One line on the job run page (stdout, flushed: the page shows it while the job runs)."""
    print(text, flush=True)


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
        if getattr(args, "debug", False):
            traceback.print_exc()
        report_error(err)
        return EXIT_ERROR
    except Exception as exc:  # Spark's own errors (a missing table, a failed stage): say what failed
        if getattr(args, "debug", False):
            traceback.print_exc()
        print(f"{prog}: error: {type(exc).__name__}: {redact_text(str(exc))[:2000]}", file=sys.stderr)
        return EXIT_ERROR
