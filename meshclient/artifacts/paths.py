"""Local trees and remote paths: what is pushed, under which name, at which URL.

A relative artifact path is POSIX-style (``a/b/c.bin``), UTF-8, without empty, ``.`` or ``..``
segments. On the wire every segment is percent-encoded on its own (RFC 3986: only unreserved
characters stay), so spaces, ``#``, ``?``, ``%`` and non-ASCII names arrive as they are. Paths
read from a remote manifest or listing pass the same check before anything is written, so a
hostile store cannot make :func:`~meshclient.artifacts.pull` write outside ``dest``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from ..errors import ConfigurationError
from ..redaction import redact_url

__all__ = ["LocalFile", "collect", "check_relative", "quote_path", "join_url", "local_target"]


@dataclass(frozen=True)
class LocalFile:
    """A file to push: its artifact path, where it is on disk, and its size when listed."""

    rel: str
    path: Path
    size: int
    mtime_ns: int


def check_relative(rel: object, where: str) -> str:
    """``rel`` as a safe relative artifact path, or a :class:`ConfigurationError` naming ``where``."""
    if not isinstance(rel, str) or not rel:
        raise ConfigurationError(f"{where}: an artifact path must be a non-empty string, got {rel!r:.80}.")
    segments = rel.split("/")
    for seg in segments:
        if seg in ("", ".", "..") or "\0" in seg or "\\" in seg:
            raise ConfigurationError(
                f"{where}: {rel!r:.200} is not a plain relative artifact path (empty, '.', '..', NUL or "
                "backslash segments are refused).",
                hint="Artifact paths are relative POSIX paths such as 'model/weights.bin'.",
            )
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigurationError(f"{where}: {rel!r:.200} is not valid UTF-8.",
                                 hint="Rename the file so its name is valid UTF-8.") from None
    return rel


def _entry(rel: str, path: Path) -> LocalFile:
    st = path.stat()
    return LocalFile(check_relative(rel, f"local file {path}"), path, st.st_size, st.st_mtime_ns)


def collect(path: str | os.PathLike[str]) -> tuple[Path, list[LocalFile]]:
    """The files under ``path`` (a file, or a directory walked recursively, sorted) and its root.

    A single file is pushed under its own name. Symbolic links to files are followed; links to
    directories are not descended (they could loop). Only regular files are pushed.
    """
    root = Path(os.fspath(path))
    try:
        st = root.stat()
    except FileNotFoundError:
        raise ConfigurationError(f"Nothing to push: {root} does not exist.",
                                 hint="Pass an existing file or directory.") from None
    except OSError as exc:
        raise ConfigurationError(f"Cannot read {root}: {exc.strerror}.") from None
    if stat.S_ISREG(st.st_mode):
        return root.parent, [_entry(root.name, root)]
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigurationError(f"{root} is neither a regular file nor a directory.")
    files: list[LocalFile] = []

    def failed(exc: OSError) -> None:
        raise ConfigurationError(f"Cannot read the directory {exc.filename}: {exc.strerror}.")

    for dirpath, dirnames, filenames in os.walk(root, onerror=failed):
        dirnames.sort()
        base = Path(dirpath)
        for name in sorted(filenames):
            full = base / name
            if not full.is_file():  # sockets, fifos, dangling links
                continue
            files.append(_entry(full.relative_to(root).as_posix(), full))
    return root, files


def quote_path(rel: str) -> str:
    """``"a b/ü#1.txt"`` → ``"a%20b/%C3%BC%231.txt"``: each segment encoded on its own."""
    return "/".join(quote(seg, safe="") for seg in rel.split("/"))


def join_url(base: str, rel_quoted: str) -> str:
    """``base`` (which may carry a query, kept as it is) with ``rel_quoted`` appended to its path."""
    parts = urlsplit(base)
    path = parts.path.rstrip("/") + "/" + rel_quoted.lstrip("/")
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def check_base_url(url: object, what: str) -> str:
    """An ``https://`` URL without a fragment (the mesh speaks TLS only)."""
    if not isinstance(url, str):
        raise ConfigurationError(f"{what} must be a URL string, got {type(url).__name__}.")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ConfigurationError(f"{what} is not a valid URL.") from None
    if parts.scheme != "https" or not parts.netloc:
        raise ConfigurationError(f"{what} must be an https:// URL, got {redact_url(url)!r}.",
                                 hint="Mesh services speak mutual TLS: write https://HOST:PORT/PATH.")
    if parts.fragment:
        raise ConfigurationError(f"{what} must not have a #fragment: {redact_url(url)!r}.")
    return url


def local_target(dest: Path, rel: str) -> Path:
    """Where ``rel`` goes under ``dest`` (``rel`` already checked: it cannot leave ``dest``)."""
    return dest.joinpath(*rel.split("/"))
