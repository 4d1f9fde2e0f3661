"""The artifact store: ``PUT``/``GET``/``HEAD`` of files under a workdir, streamed both ways.

* ``PUT /<path>`` streams the body to a temporary file while hashing it, checks the
  client's ``Content-Digest`` (RFC 9530, ``sha-256`` and ``sha-512``; a mismatch is a 400 and
  nothing is kept), fsyncs and renames it into place atomically. ``If-None-Match: *`` makes
  it create-only (412 if the file exists). Answers 201 (new) or 200 (replaced) with
  ``ETag`` and ``Content-Digest``.
* ``GET``/``HEAD /<path>`` send the file with ``sendfile``, with ``Content-Digest``, ``ETag``
  and ``Last-Modified``; ``If-None-Match`` gives 304. ``GET`` of a directory (or ``/``) lists it.

Paths are percent-decoded and must be plain relative segments: no ``.``/``..``, no empty
segment, no NUL or backslash, and the resolved path must stay inside the store (symlinks
included).
"""

from __future__ import annotations

import contextlib
import email.utils
import os
import shutil
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Any

from ._base import App, AppError, Request, TokenValidator
from .digest import Hasher, format_content_digest, fsync_dir, parse_content_digest

__all__ = ["ArtifactStore"]

_MAX_LISTING = 10_000


class ArtifactStore(App):
    """Files under ``workdir/files``, uploads staged in ``workdir/.incoming``.

    Args:
        workdir: the store's directory (created if missing).
        prefix: URL path the store is served under (default ``/``).
        Other arguments: see :class:`~meshclient_sandbox.apps.App`.
    """

    name = "artifacts"

    def __init__(self, workdir: str | os.PathLike[str], *, prefix: str = "/", host: str = "127.0.0.1",
                 port: int = 0, token_validator: TokenValidator | None = None, require_token: bool = False,
                 idle_timeout: float = 600.0) -> None:
        super().__init__(host=host, port=port, token_validator=token_validator, require_token=require_token,
                         idle_timeout=idle_timeout)
        self.workdir = Path(workdir)
        self.files = self.workdir / "files"
        self._incoming = self.workdir / ".incoming"
        self.files.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self._incoming, ignore_errors=True)  # partial uploads of a previous run
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._root_real = os.path.realpath(self.files)
        self.prefix = "/" + prefix.strip("/") + "/" if prefix.strip("/") else "/"
        self._digests: dict[str, tuple[tuple[int, int, int], bytes]] = {}
        self._lock = threading.Lock()

    # -- routing ------------------------------------------------------------------------------
    def handle(self, request: Request) -> None:
        rel, target = self._resolve(request.path)
        if request.method == "PUT":
            self._put(request, rel, target)
        elif request.method in ("GET", "HEAD"):
            self._get(request, rel, target)
        else:
            raise AppError(405, "method_not_allowed", f"{request.method} is not supported here.",
                           headers={"Allow": "GET, HEAD, PUT"})

    def _resolve(self, path: str) -> tuple[str, Path]:
        """The relative path and the file it names, or a 400/404 when it is unsafe or outside the prefix."""
        if path == self.prefix.rstrip("/"):
            path = self.prefix
        if not path.startswith(self.prefix):
            raise AppError(404, "not_found", "No such resource.")
        try:
            text = urllib.parse.unquote(path[len(self.prefix):], errors="strict")
        except UnicodeDecodeError:
            raise AppError(400, "invalid_path", "The path is not valid UTF-8.") from None
        if text in ("", "/"):
            return "", self.files
        segments = text[:-1].split("/") if text.endswith("/") else text.split("/")
        for seg in segments:
            if seg in ("", ".", "..") or "\0" in seg or "\\" in seg or len(seg.encode()) > 255:
                raise AppError(400, "invalid_path", "Artifact paths are relative, without '.', '..' or empty segments.")
        target = self.files.joinpath(*segments)
        real = os.path.realpath(target)
        if real != self._root_real and not real.startswith(self._root_real + os.sep):
            raise AppError(400, "invalid_path", "The path leaves the artifact store.")
        return "/".join(segments), target

    # -- PUT ----------------------------------------------------------------------------------
    def _put(self, request: Request, rel: str, target: Path) -> None:
        if not rel:
            raise AppError(400, "invalid_path", "PUT needs a file path.")
        if target.is_dir():
            raise AppError(409, "conflict", "The path is a directory.")
        create_only = (request.headers.get("If-None-Match") or "").strip() == "*"
        if create_only and target.exists():
            raise AppError(412, "exists", "The file exists and If-None-Match: * was sent.")
        hasher = Hasher(parse_content_digest(request.headers.get("Content-Digest")))
        fd, tmp = tempfile.mkstemp(dir=self._incoming, prefix="upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                for piece in request.body.chunks():
                    hasher.update(piece)
                    fh.write(piece)
                fh.flush()
                bad = hasher.mismatches()
                if bad:
                    raise AppError(400, "digest_mismatch",
                                   f"The body does not match its Content-Digest ({', '.join(bad)}); nothing was stored.",
                                   extra={"received_sha256": hasher.sha256.hex(), "size": hasher.size})
                os.fsync(fh.fileno())
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
            except (FileExistsError, NotADirectoryError):
                raise AppError(409, "conflict", "A parent of the path is a file.") from None
            with self._lock:
                existed = target.exists()
                if create_only and existed:
                    raise AppError(412, "exists", "The file exists and If-None-Match: * was sent.")
                os.replace(tmp, target)
                fsync_dir(target.parent)
                st = target.stat()
                self._digests[str(target)] = ((st.st_ino, st.st_size, st.st_mtime_ns), hasher.sha256)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        digest = hasher.sha256
        request.send_json(200 if existed else 201, {"path": rel, "size": hasher.size, "sha256": digest.hex()},
                          headers={"ETag": _etag(digest), "Content-Digest": format_content_digest({"sha-256": digest})})

    # -- GET / HEAD ---------------------------------------------------------------------------
    def _get(self, request: Request, rel: str, target: Path) -> None:
        if target.is_dir():
            request.send_json(200, {"path": rel, "files": self._listing(target)})
            return
        try:
            st = target.stat()
        except (FileNotFoundError, NotADirectoryError):
            raise AppError(404, "not_found", "No such artifact.") from None
        digest = self._digest(target, st)
        etag = _etag(digest)
        headers = {
            "ETag": etag,
            "Content-Digest": format_content_digest({"sha-256": digest}),
            "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
        }
        inm = request.headers.get("If-None-Match")
        if inm and (inm.strip() == "*" or etag in [t.strip() for t in inm.split(",")]):
            request.send_empty(304, headers)
            return
        request.send_file(200, target, st.st_size, headers)

    def _digest(self, target: Path, st: os.stat_result) -> bytes:
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        with self._lock:
            cached = self._digests.get(str(target))
        if cached and cached[0] == key:
            return cached[1]
        hasher = Hasher({})
        with open(target, "rb") as fh:
            while piece := fh.read(1024 * 1024):
                hasher.update(piece)
        with self._lock:
            self._digests[str(target)] = (key, hasher.sha256)
        return hasher.sha256

    def _listing(self, directory: Path) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for dirpath, dirnames, filenames in os.walk(directory):
            dirnames.sort()
            for name in sorted(filenames):
                path = Path(dirpath, name)
                with contextlib.suppress(OSError):
                    out.append({"path": path.relative_to(self.files).as_posix(), "size": path.stat().st_size})
                if len(out) >= _MAX_LISTING:
                    return out
        return out


def _etag(digest: bytes) -> str:
    return f'"{digest.hex()}"'
