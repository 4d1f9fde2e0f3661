"""The ``meshclient`` command: parser, dispatch, and the one place errors become exit codes."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from collections.abc import Sequence

from .._version import __version__
from ..errors import MeshError
from ..redaction import redact_text
from . import doctor, plugins, request, score, transfer
from .common import (
    EXIT_ERROR,
    EXIT_USAGE,
    MATERIAL_HELP,
    HelpFormatter,
    UsageError,
    add_debug_option,
    report_error,
)

__all__ = ["main", "build_parser"]

_DESCRIPTION = """\
Speak mutual TLS to services meshed by Linkerd, without a proxy: this workload proves its
identity with its mesh certificate, and every server must prove the identity you expect
(--server-identity) before a single request byte is sent."""


def _epilog() -> str:
    return (
        f"{MATERIAL_HELP}\n"
        "exit status:\n  0 success; 1 an error (material, connection, TLS, identity) or a failed doctor check;\n"
        "  2 a bad command line; 22 request: the server answered, but not with 2xx.\n\n"
        "Start with: meshclient doctor   (then: meshclient doctor --target URL --server-identity ID)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="meshclient",
        description=_DESCRIPTION,
        epilog=_epilog(),
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"meshclient {__version__}")
    add_debug_option(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    sub.required = True
    doctor.register(sub)
    request.register(sub)
    transfer.register(sub)
    score.register(sub)
    plugins.register_plugins(sub)  # sandbox, demo: from meshclient-sandbox when installed
    return parser


def _silence_broken_stdout() -> None:
    """After ``meshclient request ... | head``: no second BrokenPipeError at interpreter exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``meshclient`` with ``argv`` (default ``sys.argv[1:]``) and return the exit status."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    missing = plugins.missing_plugin_command(args_list)
    if missing is not None:
        return missing
    try:
        args = parser.parse_args(args_list)
    except SystemExit as exc:  # --help, --version, usage errors: keep main() returning an int
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    try:
        status: int = args.func(args)
        return status
    except UsageError as err:
        print(f"meshclient {args.command}: error: {err}", file=sys.stderr)
        print(f"  see: meshclient {args.command} --help", file=sys.stderr)
        return EXIT_USAGE
    except MeshError as err:
        if debug:
            traceback.print_exc()
        report_error(err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("meshclient: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        _silence_broken_stdout()
        return EXIT_ERROR
    except Exception as exc:  # a bug: say so plainly, traceback only on request
        if debug:
            traceback.print_exc()
        print(f"meshclient: internal error: {type(exc).__name__}: {redact_text(str(exc))}", file=sys.stderr)
        print("  fix: this is a meshclient bug; rerun with --debug and report the traceback.", file=sys.stderr)
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
