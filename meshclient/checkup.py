"""``meshclient.doctor()``: the ``meshclient doctor`` checks from Python, with the result as a value.

In a notebook the command line is awkward (``%sh`` has no ``dbutils``, so it cannot read a secret
scope the notebook's way); this runs the very same checks in-process, prints the same lines as
they happen, and returns a :class:`DoctorReport` that a notebook shows as a table and a job can
act on (``report.ok``, ``report.raise_for_failure()``). No secret, key or token text is in any line.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
from collections.abc import Mapping

from .doctor_report import DoctorCheck, DoctorReport
from .errors import ArgumentTypeError, ConfigurationError
from .identity import Identity

__all__ = ["doctor", "DoctorCheck", "DoctorReport"]

_PATH_OPTIONS = ("cert", "key", "trust_anchors", "token_file")
_TEXT_OPTIONS = ("target", "server_name", "secret_scope", "token_env", "oidc_token_url", "oidc_issuer",
                 "oidc_client_id", "oidc_audience", "oidc_scope")


def doctor(*, target: str | None = None, server_identity: str | Identity | None = None,
           server_name: str | None = None, secret_scope: str | None = None,
           secret_keys: tuple[str, str, str] | None = None, cert: str | os.PathLike[str] | None = None,
           key: str | os.PathLike[str] | None = None, trust_anchors: str | os.PathLike[str] | None = None,
           token_env: str | None = None, token_file: str | os.PathLike[str] | None = None,
           oidc_token_url: str | None = None, oidc_issuer: str | None = None, oidc_client_id: str | None = None,
           oidc_audience: str | None = None, oidc_scope: str | None = None, databricks_oauth: bool = False,
           timeout: float = 10.0, echo: bool = True, environ: Mapping[str, str] | None = None) -> DoctorReport:
    """Run ``meshclient doctor``'s checks here and return them; the options are the command's.

    The material comes from ``cert``/``key``/``trust_anchors``, else ``secret_scope`` (``dbutils``
    in a notebook, else databricks-sdk), else the ``MESHCLIENT_*`` variables of ``environ``
    (default: the process environment). With ``target`` and ``server_identity`` it also makes a live
    handshake and one GET. A token option adds the token checks (its secret only ever from the
    environment). ``echo`` prints each line as it happens. Failing checks do not raise: look at
    ``report.ok`` or call ``report.raise_for_failure()``; options that make no sense raise
    :class:`~meshclient.ConfigurationError`.
    """
    from .cli.common import UsageError
    from .cli.doctor import command
    from .cli.doctor.report import Report

    argv = ["doctor", *_options(locals())]
    parser = argparse.ArgumentParser(prog="meshclient")  # doctor's options only: no plugin command is loaded
    command.register(parser.add_subparsers(dest="command"))
    complaint = io.StringIO()
    try:
        with contextlib.redirect_stderr(complaint):
            args = parser.parse_args(argv)
    except SystemExit:  # argparse's own refusal (e.g. two token sources): say it in Python's terms
        said = complaint.getvalue().strip().splitlines()
        raise ConfigurationError(f"meshclient.doctor(): {_python_terms(said[-1] if said else 'bad options')}.",
                                 hint="Pass at most one token source, and target with server_identity.") from None
    report = Report(sys.stdout if echo else io.StringIO())
    try:
        command.examine(args, os.environ if environ is None else environ, report)
    except UsageError as err:
        raise ConfigurationError(f"meshclient.doctor(): {_python_terms(str(err))}") from None
    summary = report.summary()
    if echo:
        print(summary, flush=True)
    return DoctorReport(tuple(report.checks), summary)


def _options(given: Mapping[str, object]) -> list[str]:
    """The keyword arguments as doctor's command-line options, each value's type checked first."""
    argv: list[str] = []
    for name in (*_TEXT_OPTIONS, *_PATH_OPTIONS):
        value = given[name]
        if value is None:
            continue
        if name in _PATH_OPTIONS and isinstance(value, os.PathLike):
            value = os.fspath(value)
        if not isinstance(value, str):
            raise ArgumentTypeError(f"doctor({name}=...) must be a str, got {type(value).__name__}.")
        argv.append(f"--{name.replace('_', '-')}={value}")  # one token: a value starting with "-" stays a value
    identity = given["server_identity"]
    if identity is not None:
        if not isinstance(identity, (str, Identity)):
            raise ArgumentTypeError(f"doctor(server_identity=...) must be a str or Identity, "
                                    f"got {type(identity).__name__}.")
        argv.append(f"--server-identity={identity}")
    keys = given["secret_keys"]
    if keys is not None:
        if (not isinstance(keys, (tuple, list)) or len(keys) != 3
                or not all(isinstance(k, str) and k and "," not in k for k in keys)):
            raise ArgumentTypeError("doctor(secret_keys=...) must be three key names (certificate, key, anchors), "
                                    "e.g. ('tls.crt', 'tls.key', 'ca.crt').")
        argv.append(f"--secret-keys={','.join(keys)}")
    if given["databricks_oauth"]:
        argv.append("--databricks-oauth")
    timeout = given["timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not 0 < timeout <= 3600:
        raise ConfigurationError(f"doctor(timeout=...) must be seconds between 0 and 3600, got {timeout!r:.20}.")
    argv += ["--timeout", str(float(timeout))]
    return argv


def _python_terms(text: str) -> str:
    """A command-line complaint with ``--some-option`` written as the keyword ``some_option=``."""
    text = text.removeprefix("meshclient doctor: error: ").removeprefix("meshclient: error: ")
    words = []
    for word in text.split(" "):
        if word.startswith("--") and len(word) > 2:
            core = word[2:].rstrip(",.:;")
            word = core.replace("-", "_") + "=" + word[2 + len(core):]
        words.append(word)
    return " ".join(words)
