"""SHA-256 of files read in constant memory, and ``Content-Digest`` (RFC 9530) headers."""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path

__all__ = ["CHUNK", "sha256_file", "content_digest", "parse_sha256"]

#: Bytes read from disk at a time (hashing, sending, receiving): memory stays at a few of these.
CHUNK = 1024 * 1024

_MEMBER = re.compile(r"^\s*([A-Za-z0-9_.*-]+)\s*=\s*:([A-Za-z0-9+/=]*):")


def sha256_file(path: Path) -> tuple[str, int]:
    """(hex sha-256, size) of the file's bytes, read ``CHUNK`` at a time (the GIL is released while hashing)."""
    h = hashlib.sha256()
    size = 0
    with open(path, "rb", buffering=0) as fh:
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        while n := fh.readinto(buf):
            h.update(view[:n])
            size += n
    return h.hexdigest(), size


def content_digest(sha256_hex: str) -> str:
    """``sha-256=:<base64>:`` for a hex digest (RFC 9530 ``Content-Digest`` / ``Repr-Digest`` value)."""
    return f"sha-256=:{base64.b64encode(bytes.fromhex(sha256_hex)).decode('ascii')}:"


def parse_sha256(value: str | None) -> str | None:
    """The hex sha-256 in a ``Content-Digest``/``Repr-Digest`` value, ``None`` if it has none or is malformed."""
    if not value:
        return None
    for member in value.split(","):
        m = _MEMBER.match(member)
        if m and m.group(1).lower() == "sha-256":
            try:
                raw = base64.b64decode(m.group(2), validate=True)
            except (binascii.Error, ValueError):
                return None
            return raw.hex() if len(raw) == 32 else None
    return None
