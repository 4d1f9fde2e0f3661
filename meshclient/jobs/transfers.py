"""``meshclient-push-artifacts`` and ``meshclient-push-results``: the CLI's ``push`` commands as
wheel-task entry points. A named-parameters task cannot pass a positional argument, so the
payload may also be given as ``--path=...`` (artifacts) or ``--file=...`` (results).
``meshclient-push-results --table=NAME`` (or ``--input-path=PARQUET``) pushes a Spark table exactly
once through ``meshclient.spark.write_results`` instead of a file.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..cli.main import main as cli_main

__all__ = ["push_artifacts_main", "push_results_main", "positional_from"]


def positional_from(argv: Sequence[str], option: str) -> list[str]:
    """``argv`` with ``--option=X`` / ``--option X`` turned into the positional ``X`` (first)."""
    out: list[str] = []
    value: str | None = None
    args = list(argv)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
        elif arg == option and i + 1 < len(args):
            value = args[i + 1]
            i += 1
        else:
            out.append(arg)
        i += 1
    return ([value] if value is not None else []) + out


def push_artifacts_main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    return cli_main(["push", "artifacts", *positional_from(args, "--path"), *_quiet(args)])


def push_results_main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("--table", "--input-path") or a.startswith(("--table=", "--input-path=")) for a in args):
        from .results_table import main as table_main

        return table_main(args)
    return cli_main(["push", "results", *positional_from(args, "--file"), *_quiet(args)])


def _quiet(args: Sequence[str]) -> list[str]:
    """Job logs are not terminals: no progress bar (the CLI only draws one on a terminal anyway)."""
    return [] if "--no-progress" in args else ["--no-progress"]
