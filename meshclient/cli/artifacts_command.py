"""``meshclient push artifacts`` and ``meshclient pull artifacts``: trees in and out of meshed stores.

Thin wrappers over :func:`meshclient.artifacts.push` / :func:`~meshclient.artifacts.pull`:
material and tokens as every subcommand finds them, a progress bar on a terminal (tqdm when
installed) or a log line every 10 % in a job's log, one summary line on stdout (``--json``:
the whole report, each file's sha-256 included).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import Any

from ..artifacts import PullReport, PushReport, pull, push
from ..artifacts.paths import check_base_url
from ..artifacts.stores import PROTOCOLS
from ..client import DEFAULT_TIMEOUT, MeshClient
from ..errors import ConfigurationError
from ..identity import Identity
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

__all__ = ["add_push", "add_push_options", "add_pull", "run_push", "run_pull"]

_PUSH_DESCRIPTION = """\
Push PATH (a file, or a directory with everything under it) to --to on the server that must
prove --server-identity. Files go up in parallel, streamed from disk, each with its sha-256
in Content-Digest and checked against what the store holds; a manifest listing every file
is written last, only when all of them made it."""
_PULL_DESCRIPTION = """\
Fetch what a push stored at URL into --dest, checking every file's sha-256 against the
manifest (or, without one, against the digest the store answers), file by file: a file that
does not match is not written."""
_EPILOG = f"""\
protocols:
  put     PUT <URL>/<relative path> (nginx WebDAV, the sandbox artifact store)
  mlflow  an MLflow artifact proxy (mlflow server --serve-artifacts); URL is the server's base
          URL plus the artifact path, e.g. https://10.0.3.10:5000/3/<run id>/artifacts

examples:
  meshclient push artifacts model_dir/ --to https://10.0.3.7:8443/runs/42 \\
      --server-identity store.ml-platform.serviceaccount.identity.linkerd.cluster.local
  meshclient pull artifacts https://10.0.3.7:8443/runs/42 --dest restored/ --server-identity ID

exit status: 0 every file stored (pulled) and verified; 1 an error (the files that failed are
named); 2 a bad command line.

{MATERIAL_HELP}"""


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--server-identity", metavar="ID", required=True,
                   help="the mesh identity that must serve the store "
                   "(<sa>.<ns>.serviceaccount.identity.linkerd.cluster.local or spiffe://...)")
    p.add_argument("--protocol", choices=PROTOCOLS, default="put", help="the store's protocol (default put)")
    p.add_argument("--workers", metavar="N", type=positive_int, default=8, help="files transferred at once (default 8)")
    p.add_argument("--timeout", metavar="SECONDS", type=positive_seconds,
                   help=f"seconds to connect and between bytes (default {DEFAULT_TIMEOUT[0]:g} / {DEFAULT_TIMEOUT[1]:g})")
    p.add_argument("--no-progress", action="store_true", help="no progress bar, log lines only")
    p.add_argument("--json", action="store_true", help="print the report as JSON (each file's sha-256 included)")
    add_token_options(p)
    add_material_options(p)
    add_debug_option(p, default=argparse.SUPPRESS)


def add_push(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("artifacts", help="push a file or a directory tree to a meshed store",
                       description=_PUSH_DESCRIPTION, epilog=_EPILOG, formatter_class=HelpFormatter)
    p.add_argument("path", metavar="PATH", help="a file or a directory")
    add_push_options(p)
    p.set_defaults(func=run_push)


def add_push_options(p: argparse.ArgumentParser) -> None:
    """Every ``push artifacts`` option but PATH (the wheel-task entry point takes PATH as ``--path`` too)."""
    p.add_argument("--to", metavar="URL", required=True, help="https:// URL the files go under")
    p.add_argument("--verify", choices=("auto", "read"), default="auto",
                   help="auto: the store's digest, else HEAD/listing sizes; read: read every file back")
    _common(p)


def add_pull(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("artifacts", help="pull a pushed tree from a meshed store",
                       description=_PULL_DESCRIPTION, epilog=_EPILOG, formatter_class=HelpFormatter)
    p.add_argument("url", metavar="URL", help="the https:// URL a push went to")
    p.add_argument("--dest", metavar="DIR", required=True, help="directory to write into (created)")
    _common(p)
    p.set_defaults(func=run_pull)


def _check(args: argparse.Namespace, url: str) -> tuple[Identity, tuple[float, float]]:
    if not 1 <= args.workers <= 256:
        raise UsageError(f"--workers must be between 1 and 256, got {args.workers}.")
    if args.timeout is not None and not args.timeout > 0:
        raise UsageError("--timeout must be a positive number of seconds.")
    try:
        check_base_url(url, "the URL")
        identity = Identity.parse(args.server_identity)
    except (ConfigurationError, ValueError) as exc:
        raise UsageError(str(exc)) from None
    timeout = DEFAULT_TIMEOUT if args.timeout is None else (args.timeout, args.timeout)
    return identity, timeout


def _log_lines() -> None:
    """Progress lines on stderr when there is no bar (a job's log)."""
    logger = logging.getLogger("meshclient.artifacts")
    if not logger.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("meshclient: %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def _client(args: argparse.Namespace, environ: Mapping[str, str] | None, timeout: tuple[float, float]) -> MeshClient:
    creds = load_credentials(args, environ, timeout=args.timeout)
    return MeshClient(creds, timeout=timeout, token=token_provider(args, environ, args.timeout))


def _print(report: PushReport | PullReport, verb: str, where: str, as_json: bool) -> None:
    if as_json:
        doc: dict[str, Any] = {"url": report.url, "files": report.files, "bytes": report.bytes,
                               "seconds": round(report.seconds, 3),
                               "entries": [vars(e) for e in report.entries]}
        print(json.dumps(doc, ensure_ascii=False, indent=1))
        return
    mib = report.bytes / 2**20
    rate = mib / report.seconds if report.seconds > 0 else 0.0
    print(f"{verb} {report.files} file(s), {mib:.1f} MiB in {report.seconds:.2f} s ({rate:.1f} MiB/s) {where}")


def run_push(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    identity, timeout = _check(args, args.to)
    if not os.path.exists(args.path):
        raise UsageError(f"{args.path} does not exist.")
    _log_lines()
    with _client(args, environ, timeout) as client:
        report = push(client, args.path, to=args.to, server_identity=identity, protocol=args.protocol,
                      workers=args.workers, verify=args.verify, progress=False if args.no_progress else None)
    _print(report, "pushed", f"to {report.url}", args.json)
    return EXIT_OK


def run_pull(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> int:
    identity, timeout = _check(args, args.url)
    _log_lines()
    with _client(args, environ, timeout) as client:
        report = pull(client, args.url, dest=args.dest, server_identity=identity, protocol=args.protocol,
                      workers=args.workers, progress=False if args.no_progress else None)
    _print(report, "pulled", f"into {report.dest}", args.json)
    return EXIT_OK
