"""``meshclient-push-artifacts`` and ``meshclient-push-results``: the CLI's ``push`` commands as
wheel-task entry points, with the CLI's own options and ``run_push``. A ``named_parameters`` task
cannot pass a positional argument, so the payload is also taken as ``--path=...`` (artifacts) or
``--file=...`` (results), and a missing one is reported under that name. ``meshclient-push-results
--table=NAME`` (or ``--input-path=PARQUET``) pushes a Spark table exactly once through
``meshclient.spark.write_results`` instead of a file (``results_table.py``).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ..cli import artifacts_command, results_command
from ..cli.common import MATERIAL_HELP, HelpFormatter, UsageError
from .runner import run_job, say

__all__ = ["push_artifacts_main", "push_results_main"]

ARTIFACTS = "meshclient-push-artifacts"
RESULTS = "meshclient-push-results"


def _parser(prog: str, description: str, payload: str, what: str,
            add_options: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description, epilog=MATERIAL_HELP,
                                formatter_class=HelpFormatter)
    p.add_argument(payload, nargs="?", metavar=payload.upper(), help=f"{what} (or --{payload})")
    p.add_argument(f"--{payload}", dest=f"{payload}_option", metavar=payload.upper(),
                   help=f"{what}, as a named parameter")
    add_options(p)
    return p


def _payload(args: argparse.Namespace, name: str, what: str) -> str:
    given = [v for v in (getattr(args, name), getattr(args, f"{name}_option")) if v]
    if not given:
        raise UsageError(f"the parameter --{name} is required: {what} (named: --{name}=..., or the first "
                         f"positional parameter)")
    if len(given) > 1:
        raise UsageError(f"{what} is given twice (as --{name} and as a positional parameter): give it once")
    value: str = given[0]
    setattr(args, name, value)
    args.no_progress = True  # a job's log is no terminal
    return value


def _push_artifacts(args: argparse.Namespace) -> int:
    path = _payload(args, "path", "the file or directory to push")
    say(f"pushing {path} to {args.to} (server identity {args.server_identity}, protocol {args.protocol})")
    return artifacts_command.run_push(args)


def _push_results(args: argparse.Namespace) -> int:
    file = _payload(args, "file", "the results file (.parquet, .csv or .jsonl) to push")
    say(f"pushing {file} to {args.to} (server identity {args.server_identity}), dataset {args.dataset}")
    return results_command.run_push(args)


def push_artifacts_main(argv: Sequence[str] | None = None) -> int:
    parser = _parser(ARTIFACTS, "Push a file or a directory tree to an artifact store in the Linkerd mesh, every "
                     "file digest-checked.", "path", "the file or directory to push",
                     artifacts_command.add_push_options)
    return run_job(ARTIFACTS, parser, _push_artifacts, argv)


def push_results_main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("--table", "--input-path") or a.startswith(("--table=", "--input-path=")) for a in args):
        from .results_table import main as table_main

        return table_main(args)
    parser = _parser(RESULTS, "Push a results file to a results receiver in the Linkerd mesh, exactly once "
                     "(or a Spark table: --table NAME).", "file", "the results file (.parquet, .csv or .jsonl)",
                     results_command.add_push_options)
    return run_job(RESULTS, parser, _push_results, args)
