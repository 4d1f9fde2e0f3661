"""Find raw mesh material in files, directories and the environment.

These functions only locate and read bytes; :class:`~meshclient.Credentials` validates them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ..errors import MaterialNotFoundError

__all__ = ["RawMaterial", "read_file", "find_in_directory", "from_environment", "ENV_CERT", "ENV_KEY",
           "ENV_TRUST_ANCHORS", "ENV_KEY_PASSWORD"]

ENV_CERT = "MESHCLIENT_CERT"
ENV_KEY = "MESHCLIENT_KEY"
ENV_TRUST_ANCHORS = "MESHCLIENT_TRUST_ANCHORS"
ENV_KEY_PASSWORD = "MESHCLIENT_KEY_PASSWORD"

# Linkerd's proxy layout first, then kubernetes.io/tls, then linkerd.io/tls secret names.
_CERT_NAMES = ("tls.crt", "crt.der", "crt.pem", "cert.pem")
_KEY_NAMES = ("tls.key", "key.p8", "key.pem")
_ANCHOR_NAMES = ("ca.crt", "ca-bundle.crt", "trust-anchors.pem", "ca.pem")


@dataclass(frozen=True, repr=False)
class RawMaterial:
    cert: bytes
    key: bytes
    trust_anchors: bytes
    source: str
    password: str | None = None

    def __repr__(self) -> str:  # never show the key
        return f"RawMaterial(source={self.source!r})"


def read_file(path: str | os.PathLike[str], what: str) -> bytes:
    p = Path(path)
    try:
        return p.read_bytes()
    except FileNotFoundError:
        raise MaterialNotFoundError(
            f"The {what} file {os.fspath(p)} does not exist.",
            hint="Check the path (and the working directory), or set the MESHCLIENT_* variables.",
        ) from None
    except IsADirectoryError:
        raise MaterialNotFoundError(
            f"The {what} path {os.fspath(p)} is a directory, not a file.",
            hint="Use Credentials.from_directory(...) for a directory of tls.crt/tls.key/ca.crt.",
        ) from None
    except PermissionError:
        raise MaterialNotFoundError(
            f"The {what} file {os.fspath(p)} cannot be read (permission denied).",
            hint="Run as a user that can read it, or copy the material to a readable location.",
        ) from None


def _first(directory: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        candidate = directory / name
        if candidate.is_file():
            return candidate
    return None


def find_in_directory(directory: Path, *, trust_anchors: str | os.PathLike[str] | bytes | None) -> RawMaterial:
    if not directory.is_dir():
        raise MaterialNotFoundError(f"The credentials directory {directory} does not exist.",
                                    hint="Check the path.")
    cert = _first(directory, _CERT_NAMES)
    key = _first(directory, _KEY_NAMES)
    if cert is None or key is None:
        missing = "certificate" if cert is None else "private key"
        names = _CERT_NAMES if cert is None else _KEY_NAMES
        raise MaterialNotFoundError(
            f"No {missing} in {directory} (looked for {', '.join(names)}).",
            hint="Use kubernetes.io/tls names (tls.crt, tls.key, ca.crt) or Linkerd's (crt.der, key.p8).",
        )
    if isinstance(trust_anchors, bytes):
        anchor_bytes, anchor_src = trust_anchors, "given bytes"
    elif trust_anchors is not None:
        anchor_bytes, anchor_src = read_file(trust_anchors, "trust anchors"), os.fspath(trust_anchors)
    else:
        anchor_path = _first(directory, _ANCHOR_NAMES)
        if anchor_path is None:
            raise MaterialNotFoundError(
                f"No trust anchors in {directory} (looked for {', '.join(_ANCHOR_NAMES)}).",
                hint="Linkerd keeps anchors outside the identity directory: pass trust_anchors=... "
                "(the cluster's ca-bundle.crt from ConfigMap linkerd-identity-trust-roots).",
            )
        anchor_bytes, anchor_src = anchor_path.read_bytes(), anchor_path.name
    return RawMaterial(
        cert=cert.read_bytes(),
        key=key.read_bytes(),
        trust_anchors=anchor_bytes,
        source=f"directory {directory} ({cert.name}, {key.name}, {anchor_src})",
    )


def _value_or_file(environ: Mapping[str, str], name: str, what: str) -> tuple[bytes, str]:
    value = environ.get(name)
    if value is None or not value.strip():
        raise MaterialNotFoundError(
            f"{name} is not set, so there is no mesh {what}.",
            hint=f"Set {ENV_CERT}, {ENV_KEY} and {ENV_TRUST_ANCHORS} (each a file path or the PEM text), "
            "or pass --cert/--key/--trust-anchors.",
        )
    if "-----BEGIN" in value:
        return value.encode("utf-8"), f"${name}"
    return read_file(value.strip(), f"{what} ({name})"), f"${name}={value.strip()}"


def from_environment(environ: Mapping[str, str]) -> RawMaterial:
    cert, cert_src = _value_or_file(environ, ENV_CERT, "certificate")
    key, key_src = _value_or_file(environ, ENV_KEY, "private key")
    anchors, anchor_src = _value_or_file(environ, ENV_TRUST_ANCHORS, "trust anchors")
    return RawMaterial(
        cert=cert,
        key=key,
        trust_anchors=anchors,
        password=environ.get(ENV_KEY_PASSWORD) or None,
        source=f"environment ({cert_src}, {key_src}, {anchor_src})",
    )
