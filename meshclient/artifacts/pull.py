"""``pull``: a pushed set back onto local disk, every file checked before it appears.

The manifest (written last by :func:`~meshclient.artifacts.push`) lists the files with their
sizes and sha-256; without one, a store that lists (the sandbox store, MLflow) is listed and
each file is checked against the digest its ``GET`` answer carries, when it carries one. Each
file is streamed into a hidden temporary file beside its target, hashed on the way, and renamed
into place only when it matches: a failed or cut download leaves nothing half-written.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..audit import TraceContext
from ..errors import ConfigurationError, MeshError
from ..identity import Identity
from ..redaction import redact_url
from .audit_events import AuditEmitter
from .digest import CHUNK, parse_sha256
from .errors import ArtifactIntegrityError, ArtifactPullError, FailedFile
from .manifest import MANIFEST_NAME, Manifest, ManifestEntry
from .paths import local_target
from .progress import make_progress
from .push import FileResult, check_workers
from .stores import Store, make_store, unexpected

if TYPE_CHECKING:
    from ..client import MeshClient

__all__ = ["pull", "PullReport", "fetch"]


@dataclass(frozen=True)
class PullReport:
    """What :func:`pull` wrote: ``files``, ``bytes``, ``seconds``, each file's sha-256, and where from."""

    url: str
    dest: str
    files: int
    bytes: int
    seconds: float
    entries: tuple[FileResult, ...] = field(repr=False)
    source: str = "manifest"  #: "manifest" or "listing"

    @property
    def sha256(self) -> dict[str, str]:
        return {e.path: e.sha256 for e in self.entries}


def _fetch_manifest(store: Store) -> Manifest | None:
    response = store.request("GET", store.manifest_url)
    if response.status_code == 404:
        return None
    if response.status_code != 200:
        raise unexpected(response, f"reading the manifest of {store.name}")
    return Manifest.from_json(response.content, store.name)


def fetch(store: Store, rel: str, target: Path, *, sha256: str | None = None, size: int | None = None) -> FileResult:
    """Download ``rel`` to ``target`` through a hidden temporary file, renamed into place only when
    it matches ``sha256``/``size`` (or, without them, the digest the store's answer carries)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    response = store.request("GET", store.file_url(rel), stream=True)
    try:
        if response.status_code != 200:
            raise unexpected(response, f"GET {rel}")
        expected = sha256 or (parse_sha256(response.headers.get("Repr-Digest"))
                              or parse_sha256(response.headers.get("Content-Digest")))
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:40]}.", suffix=".meshclient-partial")
        try:
            h, got = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as fh:
                for piece in response.iter_content(CHUNK):
                    h.update(piece)
                    fh.write(piece)
                    got += len(piece)
            digest = h.hexdigest()
            if size is not None and got != size:
                raise ArtifactIntegrityError(f"{rel}: got {got} bytes, expected {size}.")
            if expected is not None and digest != expected:
                raise ArtifactIntegrityError(f"{rel}: got sha-256 {digest[:16]}..., expected {expected[:16]}...")
            os.chmod(tmp, 0o644 & ~_umask())
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    finally:
        response.close()
    return FileResult(rel, got, digest, "digest" if expected else "size" if size is not None else "none")


def _pull_one(store: Store, entry: ManifestEntry, dest: Path, known: bool) -> FileResult:
    target = local_target(dest, entry.path)
    if known:
        return fetch(store, entry.path, target, sha256=entry.sha256, size=entry.size)
    return fetch(store, entry.path, target)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def pull(client: MeshClient, url: str, *, dest: str | os.PathLike[str], server_identity: str | Identity,
         protocol: str = "put", workers: int = 8, progress: bool | None = None,
         require_manifest: bool = False) -> PullReport:
    """Fetch the set pushed to ``url`` into ``dest`` (created), verifying every file's sha-256.

    Uses the manifest when there is one; otherwise lists the store (unless ``require_manifest``).
    Raises :class:`ArtifactPullError` naming the files that failed (none of them is left in ``dest``).
    """
    workers = check_workers(workers)
    trace = TraceContext.from_headers(None)  # one trace id for the whole pull, in every audit event
    store = make_store(client, url, server_identity, protocol, {"traceparent": trace.header})
    started = time.monotonic()
    manifest = _fetch_manifest(store)
    if manifest is not None:
        entries, source = list(manifest.entries), "manifest"
    else:
        listed = None if require_manifest else store.list_files()
        if listed is None:
            raise ArtifactPullError(
                f"{store.name} has no {MANIFEST_NAME}" + ("." if require_manifest else " and cannot be listed."),
                hint="Pull from the URL a meshclient push went to, after it finished (the manifest is written last).",
            )
        entries = [ManifestEntry(rel, size, "0" * 64) for rel, size in listed if rel.split("/")[-1] != MANIFEST_NAME]
        source = "listing"
    target = Path(os.fspath(dest))
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"Cannot create the destination {target}: {exc.strerror}.") from None
    bar = make_progress("pulled", len(entries), sum(e.size for e in entries), store.name, progress)
    done: dict[str, FileResult] = {}
    failed: list[FailedFile] = []
    audit = AuditEmitter(client, "PULL", str(store.server_identity), trace.trace_id)
    try:
        with ThreadPoolExecutor(max_workers=min(workers, max(1, len(entries))),
                                thread_name_prefix="meshclient-pull") as pool:
            futures = {pool.submit(_pull_one, store, e, target, source == "manifest"): e for e in entries}
            for future in as_completed(futures):
                e = futures[future]
                try:
                    done[e.path] = future.result()
                except Exception as exc:
                    message = exc.message if isinstance(exc, MeshError) else str(exc)
                    failed.append(FailedFile(e.path, type(exc).__name__, message[:300]))
                    audit.file(redact_url(store.file_url(e.path)), e.path, size=None, sha256=None, verified=None,
                               seconds=time.monotonic() - started, attempts=1, error=type(exc).__name__)
                else:
                    r = done[e.path]
                    bar.file_done(r.size)
                    audit.file(redact_url(store.file_url(e.path)), e.path, size=r.size, sha256=r.sha256,
                               verified=r.verified, seconds=time.monotonic() - started, attempts=1)
    finally:
        bar.close()
        audit.close()
    if failed:
        raise ArtifactPullError.of(store.name, sorted(failed, key=lambda x: x.path), len(entries))
    results = tuple(done[e.path] for e in entries)
    return PullReport(store.name, str(target), len(results), sum(r.size for r in results),
                      time.monotonic() - started, results, source)
