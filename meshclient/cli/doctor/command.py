"""``meshclient doctor``: the command line, and every check in order."""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from collections.abc import Mapping
from typing import TextIO

from ...identity import Identity
from ...tokens import BaseTokenProvider
from ..common import (
    ENV_OIDC_CLIENT_SECRET,
    EXIT_ERROR,
    EXIT_OK,
    MATERIAL_HELP,
    HelpFormatter,
    UsageError,
    add_debug_option,
    add_material_options,
    add_token_options,
    positive_seconds,
    secret_scope_spec,
    token_source,
)
from .live import LiveChecks
from .material import MaterialChecks
from .report import Report
from .secret_scope import SecretScopeChecks
from .token_checks import TokenChecks

__all__ = ["register", "run", "examine", "Checkup"]

_HELP = "check this workload's mesh material and, with --target, a live mTLS handshake"
_DESCRIPTION = """\
Check the mesh material (certificate, key, trust anchors) one item at a time and print one
line per check: [ok], [warn] or [FAIL], with the fix under each failure. With --secret-scope,
first the workspace and each secret read (scope, key, size; never the content). With a token
option, the issuer, the token's subject, audience and expiry (never the token). With --target
and --server-identity, also make a live TLS handshake (showing the verified server identity,
TLS version and cipher) and one GET request, which carries the token if one was named. Exits
1 if any check failed, 0 otherwise (warnings do not fail)."""
_EPILOG = f"""\
examples:
  meshclient doctor --cert tls.crt --key tls.key --trust-anchors ca.crt
  meshclient doctor --target https://10.0.3.7:8080/health \\
      --server-identity echo.ml-platform.serviceaccount.identity.linkerd.cluster.local
  DATABRICKS_HOST=... DATABRICKS_TOKEN=... meshclient doctor --secret-scope ml-mesh
  {ENV_OIDC_CLIENT_SECRET}=... meshclient doctor --secret-scope ml-mesh \\
      --oidc-token-url https://login.example.com/oauth2/token --oidc-client-id ml-pipeline \\
      --oidc-audience mesh-services --target URL --server-identity ID

{MATERIAL_HELP}"""


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("doctor", help=_HELP, description=_DESCRIPTION, epilog=_EPILOG,
                       formatter_class=HelpFormatter)
    p.add_argument("--target", metavar="URL",
                   help="an https:// URL served by a meshed workload, e.g. https://10.0.3.7:8080/health")
    p.add_argument("--server-identity", metavar="ID",
                   help="the mesh identity that must serve --target: "
                   "<sa>.<ns>.serviceaccount.identity.linkerd.cluster.local or a spiffe:// ID")
    p.add_argument("--server-name", metavar="NAME",
                   help="TLS server name (SNI) to send instead of the identity; needed for spiffe:// identities")
    p.add_argument("--timeout", metavar="SECONDS", type=positive_seconds, default=10.0,
                   help="give up connecting, handshaking or waiting for the answer after this long (default 10)")
    add_material_options(p)
    add_token_options(p)
    add_debug_option(p, default=argparse.SUPPRESS)
    p.set_defaults(func=run)


class Checkup(SecretScopeChecks, MaterialChecks, TokenChecks, LiveChecks):
    """All of doctor's checks over one state (each group lives in its own module)."""


def run(args: argparse.Namespace, environ: Mapping[str, str] | None = None, out: TextIO | None = None) -> int:
    """Every check in order (material, then the live peer); 1 if any failed, warnings never fail."""
    report = Report(out or sys.stdout)
    examine(args, os.environ if environ is None else environ, report)
    print(report.summary(), file=report.out)
    if not args.target and not report.failed:
        print("(add --target URL --server-identity ID to check a live mTLS handshake with a meshed service)",
              file=report.out)
    return EXIT_ERROR if report.failed else EXIT_OK


def examine(args: argparse.Namespace, environ: Mapping[str, str], report: Report) -> None:
    """Run every check the options ask for into ``report`` (also :func:`meshclient.doctor`'s engine)."""
    if bool(args.target) != bool(args.server_identity):
        raise UsageError("--target and --server-identity go together: the live check needs the URL and the "
                         "identity that must serve it, e.g. --target https://10.0.3.7:8080/health "
                         "--server-identity echo.ml-platform.serviceaccount.identity.linkerd.cluster.local")
    expected = Identity.parse(args.server_identity) if args.server_identity else None
    spec = secret_scope_spec(args)
    token_kind = token_source(args)
    doc = Checkup(args, environ, report, _dt.datetime.now(_dt.timezone.utc))
    if spec is not None:
        doc.secret_scope(spec)
    doc.material()
    doc.identity_check()
    doc.key_match()
    doc.expiry()
    doc.chain()
    doc.profile()
    doc.anchor_validity()
    built = doc.tls_context()
    if token_kind is not None:
        doc.tokens(token_kind)
    try:
        if expected is not None:
            handshake_ok = doc.handshake(built[1] if built else None, expected)
            if handshake_ok and built:
                doc.request(built[0], expected)
            else:
                report.skip("request", "needs a verified handshake")
                doc.skip_token_sent("needs a verified handshake")
    finally:
        if isinstance(doc.token_provider, BaseTokenProvider):
            doc.token_provider.close()
