"""Find raw mesh material in files, directories and the environment.

These functions only locate and read bytes and record *where* each piece came from, so that
every later message can name the file or variable to fix; :class:`~meshclient.Credentials`
validates the bytes. Values that may be secret (the key, the password, an environment value
that is not a path) are never quoted in messages or logs.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigurationError, MaterialFormatError, MaterialNotFoundError

__all__ = [
    "MaterialOrigin",
    "RawMaterial",
    "read_file",
    "find_in_directory",
    "from_environment",
    "read_env_material",
    "ENV_CERT",
    "ENV_KEY",
    "ENV_TRUST_ANCHORS",
    "ENV_KEY_PASSWORD",
    "CERT_NAMES",
    "KEY_NAMES",
    "ANCHOR_NAMES",
    "MAX_MATERIAL_BYTES",
]

log = logging.getLogger("meshclient.credentials")

ENV_CERT = "MESHCLIENT_CERT"
ENV_KEY = "MESHCLIENT_KEY"
ENV_TRUST_ANCHORS = "MESHCLIENT_TRUST_ANCHORS"
ENV_KEY_PASSWORD = "MESHCLIENT_KEY_PASSWORD"

# kubernetes.io/tls names first, then Linkerd's proxy layout (crt.der, key.p8), then linkerd.io/tls.
CERT_NAMES = ("tls.crt", "crt.der", "crt.pem", "cert.pem")
KEY_NAMES = ("tls.key", "key.p8", "key.pem")
ANCHOR_NAMES = ("ca.crt", "ca-bundle.crt", "trust-anchors.pem", "ca.pem")

# Mesh material is a few KB; a bigger "certificate" is the wrong file (or /dev/zero).
MAX_MATERIAL_BYTES = 1 << 20

_ALL_VARS = f"{ENV_CERT}, {ENV_KEY} and {ENV_TRUST_ANCHORS}"


@dataclass(frozen=True)
class MaterialOrigin:
    """Where each piece of material came from, as shown in messages ("file 'tls.crt'").

    ``password_option`` says how a user supplies the key password in this context.
    """

    cert: str = "the cert_chain argument"
    key: str = "the key argument"
    trust_anchors: str = "the trust_anchors argument"
    password_option: str = "password=..."


@dataclass(frozen=True, repr=False)
class RawMaterial:
    """Bytes found by a loader, with their origins. Never printed: ``repr`` shows the source only."""

    cert: bytes
    key: bytes
    trust_anchors: bytes
    source: str
    origin: MaterialOrigin
    password: str | None = None

    def __repr__(self) -> str:
        return f"RawMaterial(source={self.source!r})"


def _read_error(failure: tuple[type[OSError], str], what: str, p: Path, shown: str, source: str,
                where_hint: str) -> MaterialNotFoundError:
    kind, reason = failure
    if issubclass(kind, FileNotFoundError):
        cwd = "" if p.is_absolute() else f", relative to the working directory {os.getcwd()}"
        return MaterialNotFoundError(
            f"The {what} file {shown}{source} does not exist{cwd}.",
            hint=f"{where_hint}: give the path of an existing file (an absolute path is safest), or pass the PEM "
            "text itself.",
        )
    if issubclass(kind, PermissionError):
        return MaterialNotFoundError(
            f"The {what} file {shown}{source} cannot be read: permission denied.",
            hint="Run as a user that can read it, or copy the material to a location this process can read.",
        )
    return MaterialNotFoundError(f"The {what} file {shown}{source} cannot be read: {reason}.",
                                 hint=f"{where_hint}: give the path of a readable regular file.")


def read_file(path: str | os.PathLike[str], what: str, *, via: str = "") -> bytes:
    """Read one material file, turning every OS error into a message that names the file.

    ``via`` tells where the path came from ("$MESHCLIENT_CERT") for the hint.
    """
    if not isinstance(path, (str, os.PathLike)):
        raise ConfigurationError(f"The {what} path must be a str or a path, got {type(path).__name__}.",
                                 hint="Pass a file path, e.g. cert='tls.crt'.")
    p = Path(os.path.expanduser(os.fspath(path)))
    # A "path" that looks like key material (a base64 key pasted where a path belongs) is never quoted.
    shown = f"'{os.fspath(p)}'" if _printable_path(os.fspath(path)) else (
        f"<{len(os.fspath(path))} characters, not shown: this looks like key material, not a path>")
    source = f" (from {via})" if via else ""
    where_hint = f"Fix {via}" if via else "Check the path"
    try:
        if p.is_dir():
            raise MaterialNotFoundError(
                f"The {what} path {shown}{source} is a directory, not a file.",
                hint="Point it at the file itself, or use Credentials.from_directory(...) for a directory holding "
                "tls.crt / tls.key / ca.crt (or Linkerd's crt.der / key.p8).",
            )
        with p.open("rb") as fh:
            data = fh.read(MAX_MATERIAL_BYTES + 1)
    except OSError as err:
        # Raised below, outside this block: an OSError's context carries the "path", which may be
        # a pasted key, and ``from None`` only hides the context, it keeps it on the exception.
        failure: tuple[type[OSError], str] | None = (type(err), err.strerror or type(err).__name__)
    else:
        failure = None
    if failure is not None:
        raise _read_error(failure, what, p, shown, source, where_hint)
    if len(data) > MAX_MATERIAL_BYTES:
        raise MaterialFormatError(
            f"The {what} file {shown}{source} is larger than {MAX_MATERIAL_BYTES // (1 << 20)} MiB; mesh certificates "
            "and keys are a few KB.",
            hint=f"{where_hint}: this is not a certificate, key or trust bundle.",
        )
    log.debug("read %s from file %s (%d bytes)", what, shown, len(data))
    return data


def _first(directory: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def find_in_directory(
    directory: str | os.PathLike[str],
    *,
    trust_anchors: str | os.PathLike[str] | bytes | None,
) -> RawMaterial:
    """Read a kubernetes.io/tls or Linkerd-layout directory (trust anchors may come from elsewhere)."""
    d = Path(os.path.expanduser(os.fspath(directory)))
    if not d.exists():
        raise MaterialNotFoundError(f"The credentials directory '{d}' does not exist.",
                                    hint="Check the path (an absolute path is safest).")
    if not d.is_dir():
        raise MaterialNotFoundError(
            f"The credentials path '{d}' is a file, not a directory.",
            hint="Give the directory that holds the files, or use Credentials.from_files(cert=, key=, trust_anchors=).",
        )
    cert = _first(d, CERT_NAMES)
    key = _first(d, KEY_NAMES)
    if cert is None or key is None:
        missing, names = ("certificate", CERT_NAMES) if cert is None else ("private key", KEY_NAMES)
        present = sorted(p.name for p in d.iterdir())[:10]
        raise MaterialNotFoundError(
            f"No {missing} in the directory '{d}' (looked for {', '.join(names)}; found "
            f"{', '.join(present) or 'nothing'}).",
            hint="Use kubernetes.io/tls names (tls.crt, tls.key, ca.crt) or Linkerd's (crt.der, key.p8), or "
            "Credentials.from_files(...) for other names.",
        )
    if isinstance(trust_anchors, (bytes, bytearray)):
        anchor_bytes, anchor_where = bytes(trust_anchors), "the trust_anchors argument"
    elif isinstance(trust_anchors, str) and "-----BEGIN" in trust_anchors:
        anchor_bytes, anchor_where = trust_anchors.encode("utf-8"), "the trust_anchors argument"
    elif trust_anchors is not None:
        anchor_bytes = read_file(trust_anchors, "trust anchors")
        anchor_where = f"file '{os.fspath(trust_anchors)}'"
    else:
        anchor_path = _first(d, ANCHOR_NAMES)
        if anchor_path is None:
            raise MaterialNotFoundError(
                f"No trust anchors in the directory '{d}' (looked for {', '.join(ANCHOR_NAMES)}).",
                hint="Pass trust_anchors=... (the cluster's ca-bundle.crt from ConfigMap "
                "linkerd-identity-trust-roots); Linkerd keeps anchors outside the identity directory.",
            )
        anchor_bytes, anchor_where = read_file(anchor_path, "trust anchors"), f"file '{anchor_path}'"
    return RawMaterial(
        cert=read_file(cert, "certificate"),
        key=read_file(key, "private key"),
        trust_anchors=anchor_bytes,
        source=f"directory {d}",
        origin=MaterialOrigin(cert=f"file '{cert}'", key=f"file '{key}'", trust_anchors=anchor_where),
    )


_SECRETISH = re.compile(r"[A-Za-z0-9+/=_-]{40,}")


def _printable_path(value: str) -> bool:
    """A value safe to quote in a message as a path: it does not look like key material."""
    if value.startswith(("/", "./", "../", "~")):
        return len(value) <= 4096 and "\n" not in value
    return len(value) <= 1024 and not any(c.isspace() for c in value) and not _SECRETISH.fullmatch(value)


def read_env_material(environ: Mapping[str, str], name: str, what: str) -> tuple[bytes, str]:
    """The material in variable ``name``: PEM text, or the file it names; returns (bytes, where).

    A value that is neither PEM nor a plausible path is handed on as material (so the parser can
    say e.g. "base64-encoded PEM") and is never quoted, since it may be a secret.
    """
    value = environ.get(name, "")
    if "-----BEGIN" in value:
        log.debug("read %s from $%s (PEM text, %d characters)", what, name, len(value))
        return value.encode("utf-8"), f"${name} (PEM text)"
    path = value.strip()
    if os.path.isfile(os.path.expanduser(path)) or _printable_path(path):
        log.debug("reading %s from the file named by $%s", what, name)
        return read_file(path, what, via=f"${name}"), f"file '{path}' (from ${name})"
    # Neither PEM nor a plausible path: hand it to the parser, which names the problem
    # (e.g. base64-encoded PEM) without ever quoting it, since it may be secret.
    log.debug("$%s is neither PEM nor a path (%d characters); parsing it as material", name, len(value))
    return value.encode("utf-8"), f"${name}"


def from_environment(environ: Mapping[str, str]) -> RawMaterial:
    """Read ``MESHCLIENT_CERT``, ``MESHCLIENT_KEY``, ``MESHCLIENT_TRUST_ANCHORS`` (each a path or PEM)."""
    names = (ENV_CERT, ENV_KEY, ENV_TRUST_ANCHORS)
    unset = [n for n in names if not environ.get(n, "").strip()]
    if len(unset) == len(names):
        raise MaterialNotFoundError(
            f"No mesh credentials in the environment: {_ALL_VARS} are not set.",
            hint=f"Set {_ALL_VARS} (each a file path or the PEM text itself), or pass the material explicitly "
            "(Credentials.from_files / from_pem, or --cert/--key/--trust-anchors).",
        )
    if unset:
        present = [n for n in names if n not in unset]
        raise MaterialNotFoundError(
            f"{' and '.join(unset)} {'is' if len(unset) == 1 else 'are'} not set (or empty), while "
            f"{' and '.join(present)} {'is' if len(present) == 1 else 'are'}.",
            hint=f"Set all three of {_ALL_VARS}, each a file path or the PEM text itself.",
        )
    cert, cert_where = read_env_material(environ, ENV_CERT, "certificate")
    key, key_where = read_env_material(environ, ENV_KEY, "private key")
    anchors, anchor_where = read_env_material(environ, ENV_TRUST_ANCHORS, "trust anchors")
    return RawMaterial(
        cert=cert,
        key=key,
        trust_anchors=anchors,
        password=environ.get(ENV_KEY_PASSWORD) or None,
        source="environment",
        origin=MaterialOrigin(cert=cert_where, key=key_where, trust_anchors=anchor_where,
                              password_option=f"set {ENV_KEY_PASSWORD}"),
    )
