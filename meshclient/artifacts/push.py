"""``push``: a file or a tree into a meshed store, files in parallel, each one verified, manifest last.

Per file, in a worker thread: hash it (sha-256, constant memory), ``PUT`` it streamed from disk
with ``Content-Digest``, then check what the store holds — the digest in its answer, else
``HEAD`` (digest or size), else the store's listing (MLflow), or a full read-back with
``verify="read"``. A broken connection mid-upload is retried by the client's own retry loop
(``PUT`` is idempotent and :class:`~meshclient.artifacts.body.FileBody` rewinds), within the
client's retry budget: there is no second retry loop here. The manifest goes up only when
every file is verified; otherwise :class:`ArtifactPushError` names the files that failed.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..audit import TraceContext
from ..errors import (
    ArgumentTypeError,
    ConfigurationError,
    EgressDeniedError,
    HTTPStatusError,
    MeshError,
    TLSHandshakeError,
)
from ..identity import Identity
from ..redaction import redact_url
from .audit_events import AuditEmitter
from .body import FileBody
from .digest import CHUNK, content_digest, sha256_file
from .errors import ArtifactChangedError, ArtifactIntegrityError, ArtifactPushError, FailedFile
from .manifest import MANIFEST_NAME, Manifest, ManifestEntry
from .paths import LocalFile, collect
from .progress import log, make_progress
from .stores import Store, make_store, unexpected

if TYPE_CHECKING:
    from ..client import MeshClient

__all__ = ["push", "PushReport", "FileResult", "check_workers", "read_back_sha256"]

VERIFY_MODES = ("auto", "read")
#: Files larger than this are hashed while they stream instead of in a pass of their own.
PRECOMPUTE_LIMIT = 64 * 1024 * 1024


@dataclass(frozen=True)
class FileResult:
    """One file as stored: path, size, sha-256, how it was verified (``digest``, ``size`` or ``read``)."""

    path: str
    size: int
    sha256: str
    verified: str
    attempts: int = 1


@dataclass(frozen=True)
class PushReport:
    """What :func:`push` stored: ``files``, ``bytes``, ``seconds`` and each file's sha-256."""

    url: str
    protocol: str
    files: int
    bytes: int
    seconds: float
    entries: tuple[FileResult, ...] = field(repr=False)
    manifest_url: str | None = None

    @property
    def sha256(self) -> dict[str, str]:
        """{relative path: hex sha-256} of every file pushed."""
        return {e.path: e.sha256 for e in self.entries}

    @property
    def throughput(self) -> float:
        """Bytes per second over the whole push (hashing and verification included)."""
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


def check_workers(workers: object) -> int:
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise ArgumentTypeError(f"workers must be an int, got {type(workers).__name__}.", hint="Write e.g. workers=8.")
    if not 1 <= workers <= 256:
        raise ConfigurationError(f"workers must be between 1 and 256, got {workers}.",
                                 hint="8 keeps a link busy; more helps only with many small files.")
    return workers


def _fatal(exc: BaseException) -> bool:
    """Errors that every other file would hit too: stop starting new files."""
    if isinstance(exc, (TLSHandshakeError, EgressDeniedError)):
        return True
    return isinstance(exc, HTTPStatusError) and exc.status in (401, 403, 405, 407)


def read_back_sha256(store: Store, rel: str) -> tuple[str, int]:
    """(sha-256, size) of the stored file, read back in full (``verify="read"``)."""
    response = store.request("GET", store.file_url(rel), stream=True)
    try:
        if response.status_code != 200:
            raise unexpected(response, f"reading back {rel}")
        h, size = hashlib.sha256(), 0
        for piece in response.iter_content(CHUNK):
            h.update(piece)
            size += len(piece)
        return h.hexdigest(), size
    finally:
        response.close()


class _Pusher:
    def __init__(self, store: Store, verify: str, precompute_limit: int) -> None:
        self.store = store
        self.verify = verify
        self.precompute_limit = precompute_limit
        self.stop = threading.Event()
        self.batched = type(store).stat_many is not Store.stat_many and verify == "auto"

    def one(self, f: LocalFile) -> FileResult:
        if self.stop.is_set():
            raise ConfigurationError("not attempted: an earlier file failed in a way every file would")
        reason = self.store.refuse(f.rel)
        if reason:
            raise ConfigurationError(f"{f.rel}: {reason}.")
        before = os.stat(f.path)
        inline = before.st_size > self.precompute_limit
        headers = {"Content-Type": "application/octet-stream"}
        sha: str | None = None
        if not inline:  # hash first, so the store can check the body against Content-Digest
            sha, size = sha256_file(f.path)
            headers["Content-Digest"] = content_digest(sha)
        else:  # large: hashed while it streams (one read of the file), checked against the store's answer
            size = before.st_size
        after = os.stat(f.path)
        if (before.st_size, before.st_mtime_ns) != (after.st_size, after.st_mtime_ns) or size != after.st_size:
            raise ArtifactChangedError(f"{f.rel}: the file changed while it was being hashed.",
                                       hint="Push files nothing writes to any more.")
        body: Any = FileBody(f.path, size, f.rel, hash_inline=inline) if size else b""
        response = self.store.request("PUT", self.store.file_url(f.rel), data=body, headers=headers)
        if response.status_code not in (200, 201, 204):
            raise unexpected(response, f"PUT {f.rel}")
        attempts = len(response.mesh.attempts) if response.mesh is not None else 1
        now = os.stat(f.path)
        if (now.st_size, now.st_mtime_ns) != (after.st_size, after.st_mtime_ns):
            raise ArtifactChangedError(f"{f.rel}: the file changed while it was being pushed.",
                                       hint="Push files nothing writes to any more.")
        if sha is None:
            sha = body.sha256 if isinstance(body, FileBody) else hashlib.sha256(b"").hexdigest()
            if sha is None:
                raise ArtifactChangedError(f"{f.rel}: the upload finished without a complete read of the file.")
        answered = self.store.answer_sha256(response)
        if answered is not None:
            self._compare(f.rel, sha, answered, None, size)
            return FileResult(f.rel, size, sha, "digest", attempts)
        if self.verify == "read":
            got, got_size = read_back_sha256(self.store, f.rel)
            self._compare(f.rel, sha, got, got_size, size)
            return FileResult(f.rel, size, sha, "read", attempts)
        if self.batched:
            return FileResult(f.rel, size, sha, "pending", attempts)
        digest, stored = self.store.stat(f.rel)
        return self.checked(f.rel, sha, size, digest, stored, attempts)

    def checked(self, rel: str, sha: str, size: int, digest: str | None, stored: int | None,
                 attempts: int) -> FileResult:
        if digest is None and stored is None:
            raise ArtifactIntegrityError(f"{rel}: the store does not show the file after storing it.",
                                         hint='Check the store; verify="read" reads every file back.')
        self._compare(rel, sha, digest, stored, size)
        return FileResult(rel, size, sha, "digest" if digest else "size", attempts)

    def _compare(self, rel: str, sha: str, got: str | None, got_size: int | None, size: int) -> None:
        if got is not None and got != sha:
            raise ArtifactIntegrityError(f"{rel}: the store holds sha-256 {got[:16]}..., not {sha[:16]}... as sent.",
                                         hint="Push again; if it repeats, the store is corrupting data.")
        if got_size is not None and got_size != size:
            raise ArtifactIntegrityError(f"{rel}: the store holds {got_size} bytes, not {size} as sent.",
                                         hint="Push again; if it repeats, something between truncates uploads.")


def _preflight(store: Store) -> bool:
    """One small request before any PUT: proves the identity, the policy and the token, and
    says whether a manifest from an earlier push is there (it is taken down first)."""
    if store.protocol == "mlflow":
        listing = store.list_dir("")  # type: ignore[attr-defined]
        return MANIFEST_NAME in listing
    response = store.request("HEAD", store.manifest_url)
    if response.status_code in (401, 403, 407) or response.status_code >= 500:
        raise unexpected(response, f"checking {store.name}")
    return response.status_code == 200


def _failure(rel: str, exc: BaseException) -> FailedFile:
    message = exc.message if isinstance(exc, MeshError) else str(exc)
    return FailedFile(rel, type(exc).__name__, message[:300])


def push(client: MeshClient, path: str | os.PathLike[str], *, to: str, server_identity: str | Identity,
         protocol: str = "put", workers: int = 8, verify: str = "auto", progress: bool | None = None,
         manifest: bool = True, precompute_digest: bool | None = None) -> PushReport:
    """Push a file or a directory tree to ``to`` on the server that must prove ``server_identity``.

    ``protocol="put"``: ``PUT <to>/<relative path>``; ``"mlflow"``: the MLflow artifact proxy,
    ``to`` being the server's base URL plus the artifact path. ``workers`` files go up at once
    over the client's pools. ``verify="read"`` reads every file back and hashes it (for stores
    that answer neither a digest nor a size). ``progress``: ``None`` a bar on a terminal or in a
    notebook (tqdm), log lines otherwise. ``precompute_digest``: ``None`` hashes files up to
    64 MiB before sending them (``Content-Digest`` header, checked by stores that check it) and
    larger ones while they stream (one read of the file; checked against the store's answer,
    ``HEAD`` or listing, and recorded in the manifest); ``True``/``False`` do one or the other
    for every file. Raises :class:`ArtifactPushError` naming every file
    that did not make it; then no manifest is written.
    """
    workers = check_workers(workers)
    if verify not in VERIFY_MODES:
        raise ConfigurationError(f"verify must be one of {', '.join(VERIFY_MODES)}, got {verify!r:.20}.")
    _root, files = collect(path)
    trace = TraceContext.from_headers(None)  # one trace id for the whole push, in every audit event
    store = make_store(client, to, server_identity, protocol, {"traceparent": trace.header})
    started = time.monotonic()
    if _preflight(store) and manifest and not store.delete(MANIFEST_NAME):
        log.warning("the earlier manifest at %s could not be taken down; readers may see it until this push "
                    "replaces it", redact_url(store.manifest_url))
    limit = {True: 2**63, False: -1, None: PRECOMPUTE_LIMIT}.get(precompute_digest, PRECOMPUTE_LIMIT)
    pusher = _Pusher(store, verify, limit)
    bar = make_progress("pushed", len(files), sum(f.size for f in files), store.name, progress)
    done: dict[str, FileResult] = {}
    failed: list[FailedFile] = []
    audit = AuditEmitter(client, "PUSH", str(store.server_identity), trace.trace_id)

    def record(rel: str, size: int | None, result: FileResult | None, error: str | None) -> None:
        audit.file(redact_url(store.file_url(rel)), rel, size=size, sha256=result.sha256 if result else None,
                   verified=result.verified if result else None, seconds=time.monotonic() - started,
                   attempts=result.attempts if result else 1, error=error)

    try:
        with ThreadPoolExecutor(max_workers=min(workers, max(1, len(files))),
                                thread_name_prefix="meshclient-push") as pool:
            futures = {pool.submit(pusher.one, f): f for f in files}
            for future in as_completed(futures):
                f = futures[future]
                try:
                    done[f.rel] = future.result()
                except Exception as exc:
                    record(f.rel, f.size, None, type(exc).__name__)
                    if _fatal(exc) and not pusher.stop.is_set():
                        pusher.stop.set()
                        if not done and not failed:  # the first answer already says it all
                            for other in futures:
                                other.cancel()
                            raise
                    failed.append(_failure(f.rel, exc))
                else:
                    bar.file_done(f.size)
                    if done[f.rel].verified != "pending":
                        record(f.rel, f.size, done[f.rel], None)
        pending = [rel for rel, r in done.items() if r.verified == "pending"]
        if pending:
            stats = store.stat_many(pending) or {}
            for rel in pending:
                r = done[rel]
                try:
                    digest, stored = stats.get(rel, (None, None))
                    done[rel] = pusher.checked(rel, r.sha256, r.size, digest, stored, r.attempts)
                except Exception as exc:
                    del done[rel]
                    failed.append(_failure(rel, exc))
                    record(rel, r.size, None, type(exc).__name__)
                else:
                    record(rel, r.size, done[rel], None)
    finally:
        bar.close()
        audit.close()
    if failed:
        failed.sort(key=lambda x: x.path)
        raise ArtifactPushError.of(store.name, failed, sorted(done), len(files))
    entries = tuple(done[f.rel] for f in files)
    manifest_url = None
    if manifest:
        doc = Manifest.of(ManifestEntry(e.path, e.size, e.sha256) for e in entries).to_json()
        digest = hashlib.sha256(doc).hexdigest()
        response = store.request("PUT", store.manifest_url, data=doc,
                                 headers={"Content-Digest": content_digest(digest), "Content-Type": "application/json"})
        if response.status_code not in (200, 201, 204):
            raise unexpected(response, f"PUT {MANIFEST_NAME}")
        manifest_url = redact_url(store.manifest_url)
    seconds = time.monotonic() - started
    return PushReport(store.name, protocol, len(entries), sum(e.size for e in entries), seconds, entries, manifest_url)
