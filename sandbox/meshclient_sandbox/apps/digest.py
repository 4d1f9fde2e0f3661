"""``Content-Digest`` (RFC 9530) parsing and formatting, and durable file helpers for the apps."""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path

from ._base import AppError

__all__ = ["SUPPORTED", "parse_content_digest", "format_content_digest", "Hasher", "atomic_write", "fsync_dir"]

#: RFC 9530 algorithm names this server checks (others are ignored, as the RFC allows).
SUPPORTED = {"sha-256": "sha256", "sha-512": "sha512"}
_MEMBER = re.compile(r"^\s*([a-z*][a-z0-9_.*-]*)\s*=\s*:([A-Za-z0-9+/=]*):\s*(;.*)?$")


def parse_content_digest(value: str | None) -> dict[str, bytes]:
    """``sha-256=:<base64>:, sha-512=:<base64>:`` → ``{"sha-256": digest}`` for the supported ones.

    A structured-field dictionary (RFC 8941) whose members are byte sequences; parameters
    are ignored. Malformed text is a 400, since the client meant to protect its upload.
    """
    if value is None:
        return {}
    out: dict[str, bytes] = {}
    for member in value.split(","):
        if not member.strip():
            continue
        match = _MEMBER.match(member)
        if not match:
            raise AppError(400, "invalid_digest", "Content-Digest is not a dictionary of byte sequences (RFC 9530).")
        algorithm, b64 = match.group(1), match.group(2)
        try:
            digest = base64.b64decode(b64, validate=True)
        except (binascii.Error, ValueError):
            raise AppError(400, "invalid_digest", f"Content-Digest {algorithm} is not valid base64.") from None
        if algorithm in SUPPORTED:
            if len(digest) != hashlib.new(SUPPORTED[algorithm]).digest_size:
                raise AppError(400, "invalid_digest", f"Content-Digest {algorithm} has the wrong length.")
            out[algorithm] = digest
    return out


def format_content_digest(digests: Mapping[str, bytes]) -> str:
    return ", ".join(f"{alg}=:{base64.b64encode(d).decode('ascii')}:" for alg, d in digests.items())


class Hasher:
    """SHA-256 always (for ETags and results), plus whatever the client's Content-Digest asks for."""

    def __init__(self, expected: Mapping[str, bytes]) -> None:
        self.expected = dict(expected)
        self._hashes = {"sha-256": hashlib.sha256()}
        for alg in expected:
            self._hashes.setdefault(alg, hashlib.new(SUPPORTED[alg]))
        self.size = 0

    def update(self, data: bytes) -> None:
        self.size += len(data)
        for h in self._hashes.values():
            h.update(data)

    @property
    def sha256(self) -> bytes:
        return self._hashes["sha-256"].digest()

    def mismatches(self) -> list[str]:
        return [alg for alg, want in self.expected.items() if self._hashes[alg].digest() != want]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make a rename or a new entry in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)
