"""``meshclient demo``: the whole story end to end on the sandbox (what ``make demo`` runs)."""

from __future__ import annotations

import argparse

from meshclient.cli.common import HelpFormatter, add_debug_option

_HELP = "the whole story end to end on a local sandbox mesh"


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("demo", help=_HELP, description=_HELP, formatter_class=HelpFormatter)
    p.add_argument("--workdir", metavar="DIR", help="keep the sandbox here (default: a temporary directory)")
    p.add_argument("--mesh-only", action="store_true",
                   help="only the mesh half (no MLflow, Spark or model server needed)")
    add_debug_option(p, default=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .demo import main

    return main(workdir=args.workdir, mesh_only=args.mesh_only)
