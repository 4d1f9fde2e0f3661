"""``meshclient sandbox`` (run the local Linkerd-like mesh in the foreground) and
``meshclient sandbox wait DIR`` (block until one started elsewhere is ready).

Registered with the library's CLI through the ``meshclient.commands`` entry point."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from meshclient.cli.common import EXIT_OK, HelpFormatter, UsageError, add_debug_option, positive_seconds

from .services import DEFAULT_SERVICES, SERVICES, missing_for

_HELP = "run the local Linkerd-like mesh in the foreground (writes DIR/sandbox.json)"
_DESCRIPTION = """\
Start a local mesh on loopback: three meshed services (echo, results, artifacts), each behind
a Linkerd-like inbound proxy that terminates mTLS for its own identity, enforces a policy and
serves Linkerd's direct mode; an OIDC issuer; and a Databricks workspace emulator whose secret
scope holds a client identity. Writes DIR/sandbox.json (addresses, identities, material) and
DIR/env.sh (MESHCLIENT_* and DATABRICKS_* exports). Stops cleanly on Ctrl-C or SIGTERM.
The material is sandbox-only: never trust its CA for anything real."""

_EPILOG = """\
examples:
  meshclient sandbox --workdir /tmp/mesh &
  meshclient sandbox wait /tmp/mesh && source /tmp/mesh/env.sh
  meshclient request -i GET https://127.0.0.1:PORT/hello \\
      --server-identity echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"""

POLICIES = ("deny", "all-authenticated", "all-unauthenticated")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("sandbox", help=_HELP, description=_DESCRIPTION, epilog=_EPILOG,
                       formatter_class=HelpFormatter)
    p.add_argument("--workdir", metavar="DIR", default="meshclient-sandbox",
                   help="where material, data, sandbox.json and env.sh go (default: ./meshclient-sandbox); "
                   "reusing it keeps the PKI and the stored results")
    p.add_argument("--allow", metavar="PATTERN", action="append",
                   help="client identities the services authorize (exact, *.suffix or spiffe://...); repeat for "
                   "more (default: *.ml-team.serviceaccount.identity.linkerd.cluster.local)")
    p.add_argument("--default-policy", choices=POLICIES, default="deny",
                   help="what the services do with identities outside --allow (default: deny, answered with "
                   "403 and l5d-proxy-error)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    p.add_argument("--service", metavar="NAME", action="append", default=[],
                   help="also run this service behind its own inbound proxy; repeat for more. Known: "
                   + "; ".join(f"{spec.name}: {spec.summary}" for spec in SERVICES.values()
                               if spec.name not in DEFAULT_SERVICES))
    p.add_argument("--with-mlflow", action="store_true", help="the same as --service mlflow")
    add_debug_option(p, default=argparse.SUPPRESS)
    p.set_defaults(func=run)
    actions = p.add_subparsers(dest="sandbox_action", metavar="{wait}")
    w = actions.add_parser("wait", help="block until the sandbox in DIR (started elsewhere) is ready",
                           description="Block until a sandbox started with --workdir DIR has written sandbox.json "
                           "and env.sh and its services accept connections; exit 1 on timeout.",
                           formatter_class=HelpFormatter)
    w.add_argument("dir", metavar="DIR", help="the --workdir of the sandbox to wait for")
    w.add_argument("--timeout", type=positive_seconds, default=60.0, metavar="S",
                   help="give up after S seconds (default: 60)")
    w.set_defaults(func=run_wait)


def run_wait(args: argparse.Namespace) -> int:
    from .ready import wait_ready

    info = wait_ready(args.dir, args.timeout)
    print(f"sandbox ready: {len(info.get('services', {}))} services; source {Path(args.dir) / 'env.sh'}")
    return EXIT_OK


def _usable_workdir(text: str) -> Path:
    """The workdir, created and writable, or a usage error that says why (never a traceback)."""
    path = Path(text).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / f".write-test-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--workdir {text!r} cannot be used: {exc.strerror or type(exc).__name__}. "
                         "Give a directory this user can create and write (e.g. --workdir /tmp/mesh).") from None
    return path


def run(args: argparse.Namespace) -> int:
    from .runner import DEFAULT_ALLOW, SandboxSettings, run_foreground

    if not args.host.startswith("127.") and args.host not in ("::1", "localhost"):
        raise UsageError("the sandbox only listens on loopback (127.0.0.0/8 or ::1).")
    services: tuple[str, ...] = SandboxSettings.services
    for name in [*args.service, *(["mlflow"] if args.with_mlflow else [])]:
        if name not in SERVICES:
            raise UsageError(f"--service {name!r} is not a sandbox service (known: {', '.join(SERVICES)}).")
        missing = missing_for(name)
        if missing:
            raise UsageError(f"service {name!r} needs {', '.join(missing)} installed here "
                             f"({SERVICES[name].install_hint}).")
        if name not in services:
            services = (*services, name)
    settings = SandboxSettings(
        workdir=_usable_workdir(args.workdir),
        allow=tuple(args.allow) if args.allow else DEFAULT_ALLOW,
        default_policy=args.default_policy,
        host=args.host,
        services=services,
    )
    run_foreground(settings)
    return EXIT_OK
