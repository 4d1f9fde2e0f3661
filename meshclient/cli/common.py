"""Material options and error reporting shared by every ``meshclient`` subcommand.

Every subcommand finds the workload's certificate, key and trust anchors the same way:
``--cert/--key/--trust-anchors`` paths first, then ``MESHCLIENT_CERT``, ``MESHCLIENT_KEY``,
``MESHCLIENT_TRUST_ANCHORS`` (each a path or the PEM text itself). Resolution is done per
item here (not with ``Credentials.from_env``) so that ``doctor`` can report each one.
"""

from __future__ import annotations

import argparse
import os
import stat
import sys
import textwrap
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from ..credentials import Credentials, SameSubjectIssuerWarning
from ..credentials.loaders import ENV_CERT, ENV_KEY, ENV_KEY_PASSWORD, ENV_TRUST_ANCHORS, read_file
from ..errors import EncryptedKeyError, MaterialNotFoundError, MeshError

__all__ = [
    "EXIT_OK",
    "EXIT_ERROR",
    "EXIT_USAGE",
    "EXIT_HTTP",
    "MaterialItem",
    "CERT",
    "KEY",
    "TRUST_ANCHORS",
    "Found",
    "add_material_options",
    "add_debug_option",
    "resolve",
    "key_password",
    "load_credentials",
    "report_error",
    "report_warning",
    "MATERIAL_HELP",
    "UsageError",
    "HelpFormatter",
    "for_command_line",
    "group_or_world_readable",
]

EXIT_OK = 0
EXIT_ERROR = 1  # material, connection, TLS or identity problems; doctor failures
EXIT_USAGE = 2  # argparse's code for bad command lines
EXIT_HTTP = 22  # the server answered, but not with 2xx (like ``curl -f``)


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps identities, URLs and hyphenated names whole when wrapping option help."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        return textwrap.wrap(" ".join(text.split()), width, break_long_words=False, break_on_hyphens=False)


class UsageError(Exception):
    """A command line that parses but makes no sense (exit 2, like argparse's own errors)."""


@dataclass(frozen=True)
class MaterialItem:
    """One of the three pieces of mesh material and where a user can give it."""

    what: str  # "certificate", used in messages
    dest: str  # argparse attribute
    option: str  # command-line option
    env: str  # environment variable


CERT = MaterialItem("certificate", "cert", "--cert", ENV_CERT)
KEY = MaterialItem("private key", "key", "--key", ENV_KEY)
TRUST_ANCHORS = MaterialItem("trust anchors", "trust_anchors", "--trust-anchors", ENV_TRUST_ANCHORS)

MATERIAL_HELP = f"""\
mesh material:
  Without --cert/--key/--trust-anchors, meshclient reads {ENV_CERT}, {ENV_KEY} and
  {ENV_TRUST_ANCHORS}: each is a file path or the PEM text itself. An encrypted key's
  password is read from {ENV_KEY_PASSWORD} (never from the command line, where other
  users could see it in the process list). Key material is never printed.
"""


@dataclass(frozen=True)
class Found:
    """Bytes of one material item and a printable description of where they came from."""

    data: bytes
    where: str  # e.g. "--cert /w/tls.crt", "$MESHCLIENT_KEY=/w/tls.key" or "PEM text in $MESHCLIENT_KEY"
    path: Path | None = None

    def __repr__(self) -> str:  # never show the bytes (they may be a key)
        return f"Found(where={self.where!r})"


def add_material_options(parser: argparse.ArgumentParser) -> None:
    """The ``--cert/--key/--trust-anchors`` options every subcommand takes."""
    group = parser.add_argument_group("mesh material (default: the MESHCLIENT_* environment variables)")
    group.add_argument("--cert", metavar="PATH",
                       help=f"this workload's certificate chain: the leaf, then its issuer (tls.crt) [${ENV_CERT}]")
    group.add_argument("--key", metavar="PATH", help=f"the private key of that leaf (tls.key) [${ENV_KEY}]")
    group.add_argument("--trust-anchors", metavar="PATH",
                       help=f"the mesh trust anchors (ca.crt / Linkerd's ca-bundle.crt) [${ENV_TRUST_ANCHORS}]")


def add_debug_option(parser: argparse.ArgumentParser, *, default: object = False) -> None:
    parser.add_argument("--debug", action="store_true", default=default,
                        help="show Python tracebacks for errors (for bug reports)")


def resolve(item: MaterialItem, args: argparse.Namespace, environ: Mapping[str, str]) -> Found:
    """Find one item: the command-line path, else the environment variable (path or PEM text)."""
    path_arg: str | None = getattr(args, item.dest, None)
    if path_arg:
        path = Path(path_arg)
        return Found(read_file(path, f"{item.what} ({item.option})"), f"{item.option} {path}", path)
    value = environ.get(item.env)
    if value is None or not value.strip():
        raise MaterialNotFoundError(
            f"No {item.what} given: neither {item.option} nor ${item.env} is set.",
            hint=f"Pass {item.option} PATH, or set {item.env} to the file's path or to its PEM text "
            f"(all three: {ENV_CERT}, {ENV_KEY}, {ENV_TRUST_ANCHORS}).",
        )
    if "-----BEGIN" in value:
        return Found(value.encode("utf-8"), f"PEM text in ${item.env}")
    path = Path(value.strip())
    return Found(read_file(path, f"{item.what} (${item.env})"), f"${item.env}={path}", path)


def for_command_line(err: MeshError) -> MeshError:
    """The same error with a fix a command-line user can apply (library hints name Python arguments)."""
    if isinstance(err, EncryptedKeyError):
        return EncryptedKeyError(err.message, hint=f"Set {ENV_KEY_PASSWORD} to the key's password (it is never read "
                                 "from the command line), or store the key unencrypted in a secret store.")
    return err


def key_password(environ: Mapping[str, str]) -> str | None:
    return environ.get(ENV_KEY_PASSWORD) or None


def group_or_world_readable(path: Path) -> int | None:
    """The file mode if others than the owner may read ``path``, else ``None``."""
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return None
    return mode if mode & 0o077 else None


def load_credentials(args: argparse.Namespace, environ: Mapping[str, str] | None = None,
                     *, stderr: TextIO | None = None) -> Credentials:
    """A validated :class:`Credentials` snapshot from the options or the environment.

    Soft warnings (profile deviations, the same-DN issuer workaround) go to stderr as
    ``meshclient: warning: ...`` lines instead of Python's warnings machinery.
    """
    env = os.environ if environ is None else environ
    cert = resolve(CERT, args, env)
    key = resolve(KEY, args, env)
    anchors = resolve(TRUST_ANCHORS, args, env)
    source = f"certificate {cert.where}, key {key.where}, trust anchors {anchors.where}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SameSubjectIssuerWarning)
            creds = Credentials.from_pem(cert.data, key.data, anchors.data, password=key_password(env), source=source)
    except MeshError as err:
        converted = for_command_line(err)
        if converted is err:
            raise
        raise converted from None
    for note in creds.warnings:
        report_warning(note, stderr)
    return creds


def report_error(err: MeshError, stream: TextIO | None = None) -> None:
    """``meshclient: error: <message>`` and the fix on the next line."""
    out = stream or sys.stderr
    print(f"meshclient: error: {err.message}", file=out)
    if err.hint:
        print(f"  fix: {err.hint}", file=out)


def report_warning(text: str, stream: TextIO | None = None) -> None:
    print(f"meshclient: warning: {text}", file=stream or sys.stderr)
