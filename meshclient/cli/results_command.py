"""``meshclient push results FILE --to URL --server-identity ID --dataset NAME``: a results file
(Parquet, CSV or JSON lines) staged and committed exactly once (``docs/results-protocol.md``)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Mapping

from ..client import DEFAULT_TIMEOUT, MeshClient
from ..errors import ConfigurationError
from ..identity import Identity
from ..results.partition import DEFAULT_BATCH_ROWS
from .common import (
    EXIT_OK,
    MATERIAL_HELP,
    HelpFormatter,
    UsageError,
    add_debug_option,
    add_material_options,
    add_token_options,
    load_credentials,
    positive_int,
    positive_seconds,
)
from .request import token_provider

__all__ = ["add_push", "add_push_options", "run_push"]

_DESCRIPTION = """\
Push the rows of FILE (.parquet, .csv or .jsonl) to the results receiver at --to, which must
prove --server-identity: batches of --batch-rows rows, each staged under an idempotency key
derived from its content, then committed together (atomically). Pushing the same file again
stores nothing twice. On a terminal, progress goes to stderr."""

_EPILOG = f"""\
examples:
  meshclient push results scores.parquet --to https://10.0.3.8:8443 --dataset scores-2026-12 \\
      --server-identity results.ml-platform.serviceaccount.identity.linkerd.cluster.local

exit status: 0 committed; 1 an error (nothing half-visible: a batch is visible only once committed);
2 a bad command line.

{MATERIAL_HELP}"""


def add_push(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("results", help="push a results file to a meshed receiver, exactly once",
                       description=_DESCRIPTION, epilog=_EPILOG, formatter_class=HelpFormatter)
    p.add_argument("file", metavar="FILE", help="a .parquet, .csv or .jsonl file")
    add_push_options(p)
    p.set_defaults(func=run_push)


def add_push_options(p: argparse.ArgumentParser) -> None:
    """Every ``push results`` option but FILE (the wheel-task entry point takes FILE as ``--file`` too)."""
    p.add_argument("--to", metavar="URL", required=True, help="the receiver's https:// base URL")
    p.add_argument("--server-identity", metavar="ID", required=True, help="the mesh identity that must serve it")
    p.add_argument("--dataset", metavar="NAME", required=True, help="the dataset the rows go to")
    p.add_argument("--batch-id", metavar="ID", help="name the batch (default: derived from the content)")
    p.add_argument("--batch-rows", metavar="N", type=positive_int, default=DEFAULT_BATCH_ROWS,
                   help=f"rows per batch (default {DEFAULT_BATCH_ROWS:,})")
    p.add_argument("--no-progress", action="store_true", help="no progress on stderr")
    p.add_argument("--format", choices=("arrow", "parquet", "jsonl"), default="arrow",
                   help="wire format (default arrow: the Arrow IPC stream)")
    p.add_argument("--timeout", metavar="SECONDS", type=positive_seconds,
                   help=f"seconds to connect and between bytes (default {DEFAULT_TIMEOUT[0]:g} / {DEFAULT_TIMEOUT[1]:g})")
    p.add_argument("--json", action="store_true", help="print the receipt as JSON")
    add_token_options(p)
    add_material_options(p)
    add_debug_option(p, default=argparse.SUPPRESS)


def _show_progress(done: int, total: int) -> None:
    print(f"\rstaged {done:,}/{total:,} rows ({100 * done // max(total, 1)} %)", end="", file=sys.stderr, flush=True)


def run_push(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    from ..results import push

    if not os.path.isfile(args.file):
        raise UsageError(f"{args.file} is not a file.")
    try:
        identity = Identity.parse(args.server_identity)
    except (ConfigurationError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    if not args.to.startswith("https://"):
        raise UsageError("--to must be an https:// URL (mesh services speak mutual TLS).")
    timeout = DEFAULT_TIMEOUT if args.timeout is None else (args.timeout, args.timeout)
    creds = load_credentials(args, environ, timeout=args.timeout)
    isatty = getattr(sys.stderr, "isatty", None)
    show = not args.no_progress and callable(isatty) and isatty()
    with MeshClient(creds, timeout=timeout, token=token_provider(args, environ, args.timeout)) as client:
        receipt = push(client, args.file, url=args.to, server_identity=identity, dataset=args.dataset,
                       batch_id=args.batch_id, format=args.format, batch_rows=args.batch_rows,
                       progress=_show_progress if show else None)
    if show:
        print(file=sys.stderr)
    if args.json:
        print(json.dumps(dataclasses.asdict(receipt), indent=1))
    else:
        again = " (already there: stored once)" if receipt.replayed else ""
        what = (f"batch {receipt.batch_id}" if len(receipt.batch_ids) <= 1
                else f"{len(receipt.batch_ids)} batches ({receipt.batch_ids[0]}, ...)")
        print(f"committed {receipt.rows} row(s), {receipt.bytes} bytes as {what} of dataset "
              f"{receipt.dataset} (version {receipt.version}){again}")
    return EXIT_OK
