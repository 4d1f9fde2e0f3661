"""The manifest: the list of a pushed set (paths, sizes, sha-256), written after every file.

Its presence means "this set is complete and verified": a push writes it last, and only when
every file was stored and checked. :func:`~meshclient.artifacts.pull` reads it to restore a
tree from a store that cannot list (nginx WebDAV) and to check every byte it fetches.

Format (JSON, UTF-8)::

    {"format": "meshclient-artifacts/1", "created": "2026-12-04T02:00:00Z",
     "files": 2, "bytes": 1234,
     "entries": [{"path": "model/weights.bin", "size": 1200, "sha256": "<64 hex>"},
                 {"path": "README.md", "size": 34, "sha256": "<64 hex>"}]}
"""

from __future__ import annotations

import datetime as _dt
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigurationError
from .paths import check_relative

__all__ = ["MANIFEST_NAME", "FORMAT", "ManifestEntry", "Manifest"]

#: The manifest's name next to the files it lists (a dot file: tools that list directories skip it).
MANIFEST_NAME = ".meshclient-manifest.json"
FORMAT = "meshclient-artifacts/1"
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class ManifestEntry:
    path: str
    size: int
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size, "sha256": self.sha256}


@dataclass(frozen=True)
class Manifest:
    entries: tuple[ManifestEntry, ...]
    created: str = ""

    @classmethod
    def of(cls, entries: Iterable[ManifestEntry]) -> Manifest:
        now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        return cls(tuple(sorted(entries, key=lambda e: e.path)), now)

    @property
    def total_bytes(self) -> int:
        return sum(e.size for e in self.entries)

    def to_json(self) -> bytes:
        doc = {"format": FORMAT, "created": self.created, "files": len(self.entries), "bytes": self.total_bytes,
               "entries": [e.to_dict() for e in self.entries]}
        return (json.dumps(doc, ensure_ascii=False, indent=1) + "\n").encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes, where: str) -> Manifest:
        """Parse and check a manifest; a bad one is a :class:`ConfigurationError` naming ``where``."""
        try:
            doc = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise ConfigurationError(f"The manifest at {where} is not JSON.",
                                     hint="It was not written by meshclient, or the push that wrote it was cut.") from None
        if not isinstance(doc, Mapping) or doc.get("format") != FORMAT or not isinstance(doc.get("entries"), list):
            raise ConfigurationError(f"The manifest at {where} is not a {FORMAT} manifest.",
                                     hint="Pull it with a meshclient version that knows its format.")
        entries = []
        seen: set[str] = set()
        for item in doc["entries"]:
            if not isinstance(item, Mapping):
                raise ConfigurationError(f"The manifest at {where} has an entry that is not an object.")
            path = check_relative(item.get("path"), f"the manifest at {where}")
            size, digest = item.get("size"), item.get("sha256")
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise ConfigurationError(f"The manifest at {where} gives {path!r} no valid size.")
            if not isinstance(digest, str) or not _HEX64.match(digest):
                raise ConfigurationError(f"The manifest at {where} gives {path!r} no valid sha-256.")
            if path in seen:
                raise ConfigurationError(f"The manifest at {where} lists {path!r} twice.")
            seen.add(path)
            entries.append(ManifestEntry(path, size, digest))
        return cls(tuple(entries), str(doc.get("created", "")))
