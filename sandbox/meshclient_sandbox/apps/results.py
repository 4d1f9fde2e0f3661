"""The results sink: batch-inference results staged under idempotency keys, then committed.

* ``PUT /v1/datasets/{name}/batches/{batch_id}`` with ``Idempotency-Key`` stages a batch (the
  body, any format, streamed to disk; ``Content-Digest`` checked when sent): 201 with the
  result. The same request again (same key, same bytes) gets 200 with the *original* result
  and ``Idempotent-Replayed: true``, and nothing is stored twice. The same key with other
  bytes is 422; the batch id under another key is 409; a missing key is 400.
  ``Results-Job: <job>`` tags the batch with the job that staged it; staging into a job that is
  already committed is 409 ``job_committed`` (a restarted query's micro-batch needs no upload).
* ``POST /v1/datasets/{name}/commit`` with ``{"batches": [ids], "job": "<job>"}`` adds staged
  batches to the dataset and bumps its version, atomically (one manifest write); unknown batches
  are 409 with the list of them. With a ``job`` the commit is keyed by it: the same job again
  is a no-op answered with ``Idempotent-Replayed: true``, and the job's staged batches that the
  commit did not list (a failed or speculative attempt's) are discarded.
* ``POST /v1/datasets/{name}/abort`` with ``{"job": "<job>"}`` discards the job's staged
  batches (409 once the job is committed); ``DELETE .../batches/{id}`` discards one staged batch.
* Staged batches no commit names within ``staged_ttl`` seconds (default 24 h) expire: they are
  discarded at the dataset's next request (a driver that died between staging and committing
  leaves nothing behind for long); a commit naming one is 409 ``unknown_batches``.
* ``GET /v1/datasets/{name}`` is the committed manifest; ``GET .../batches/{id}`` a batch's
  result; ``GET .../batches/{id}/data`` its bytes; ``GET /v1/datasets`` the dataset names.

Everything is durable before it is acknowledged: data is fsynced and renamed into place,
then its metadata is written atomically (temp file, fsync, rename, fsync of the directory),
so a restart of the app loses no acknowledged batch or commit, and a half-written batch
from a crash is never visible.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._base import App, AppError, Request, TokenValidator
from .digest import Hasher, atomic_write, format_content_digest, fsync_dir, parse_content_digest

__all__ = ["ResultsSink"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
_ROUTE = re.compile(r"^/v1/datasets(?:/([^/]+)(?:/(commit|abort|batches/([^/]+)(/data)?))?)?/?$")
_MAX_KEY = 255
_MAX_COMMIT_BODY = 1024 * 1024
#: how long a staged batch waits for a commit before the receiver discards it
STAGED_TTL = 24 * 3600.0


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


@dataclass
class _Dataset:
    """One dataset's state in memory, rebuilt from disk on first use."""

    directory: Path
    batches: dict[str, dict[str, Any]] = field(default_factory=dict)  # batch id -> stored meta
    keys: dict[str, str] = field(default_factory=dict)  # sha256(idempotency key) -> batch id
    manifest: dict[str, Any] | None = None


class ResultsSink(App):
    """Staged, idempotent, durable batches of results under ``workdir/datasets``.

    Args:
        workdir: where datasets live (created if missing); a new sink on the same workdir
            sees everything an earlier one acknowledged.
        staged_ttl: seconds a staged batch waits for a commit before it is discarded.
        clock: wall-clock seconds (injectable: tests expire batches without waiting).
        Other arguments: see :class:`~meshclient_sandbox.apps.App`.
    """

    name = "results"

    def __init__(self, workdir: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 0,
                 token_validator: TokenValidator | None = None, require_token: bool = False,
                 idle_timeout: float = 600.0, staged_ttl: float = STAGED_TTL,
                 clock: Callable[[], float] = time.time) -> None:
        super().__init__(host=host, port=port, token_validator=token_validator, require_token=require_token,
                         idle_timeout=idle_timeout)
        if not staged_ttl > 0:
            raise ValueError("staged_ttl must be a positive number of seconds")
        self.staged_ttl, self.clock = float(staged_ttl), clock
        self.workdir = Path(workdir)
        self.root = self.workdir / "datasets"
        self.root.mkdir(parents=True, exist_ok=True)
        self._incoming = self.workdir / ".incoming"
        shutil.rmtree(self._incoming, ignore_errors=True)  # partial uploads of a previous run
        self._incoming.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._datasets: dict[str, _Dataset] = {}

    # -- routing ------------------------------------------------------------------------------
    def handle(self, request: Request) -> None:
        match = _ROUTE.match(request.path)
        if not match:
            raise AppError(404, "not_found", "No such resource; see /v1/datasets.")
        name, action, batch_id, data = match.groups()
        if name is None:
            self._only(request, "GET", "HEAD")
            request.send_json(200, {"datasets": self._names()})
            return
        _check_name(name, "dataset name")
        if action is None:
            self._only(request, "GET", "HEAD")
            ds = self._dataset(name)
            if ds.manifest is None:
                raise AppError(404, "not_found", f"Dataset {name!r} has no commit yet.")
            request.send_json(200, ds.manifest)
        elif action == "commit":
            self._only(request, "POST")
            self._commit(request, name)
        elif action == "abort":
            self._only(request, "POST")
            self._abort(request, name)
        else:
            _check_name(batch_id, "batch id")
            if data:
                self._only(request, "GET", "HEAD")
                self._send_data(request, name, batch_id)
            elif request.method == "PUT":
                self._stage(request, name, batch_id)
            elif request.method == "DELETE":
                self._delete(request, name, batch_id)
            else:
                self._only(request, "GET", "HEAD", "PUT", "DELETE")
                meta = self._dataset(name).batches.get(batch_id)
                if meta is None:
                    raise AppError(404, "not_found", f"No batch {batch_id!r} in dataset {name!r}.")
                request.send_json(200, {**meta["result"], "committed": self._is_committed(name, batch_id)})

    @staticmethod
    def _only(request: Request, *methods: str) -> None:
        if request.method not in methods:
            raise AppError(405, "method_not_allowed", f"{request.method} is not supported here.",
                           headers={"Allow": ", ".join(methods)})

    # -- state --------------------------------------------------------------------------------
    def _names(self) -> list[str]:
        return sorted(p.name for p in self.root.iterdir() if p.is_dir() and _NAME.match(p.name))

    def _dataset(self, name: str) -> _Dataset:
        with self._lock:
            ds = self._datasets.get(name)
            if ds is None:
                ds = self._load(name)
                self._datasets[name] = ds
            self._expire_locked(ds)
            return ds

    def _expire_locked(self, ds: _Dataset) -> list[str]:
        """Discard staged batches older than ``staged_ttl`` that no commit made visible."""
        committed = {b["batch_id"] for b in (ds.manifest or {}).get("batches", [])}
        cutoff = self.clock() - self.staged_ttl
        doomed = sorted(i for i, m in ds.batches.items()
                        if i not in committed and float(m["result"].get("staged_epoch", cutoff + 1)) < cutoff)
        for batch_id in doomed:
            self._remove_locked(ds, batch_id)
        return doomed

    def _load(self, name: str) -> _Dataset:
        ds = _Dataset(self.root / name)
        batches = ds.directory / "batches"
        if batches.is_dir():
            for meta_path in sorted(batches.glob("*.json")):
                with contextlib.suppress(OSError, ValueError):
                    meta = json.loads(meta_path.read_text("utf-8"))
                    batch_id = meta["result"]["batch_id"]
                    if (batches / f"{batch_id}.data").is_file():
                        ds.batches[batch_id] = meta
                        ds.keys[meta["key_sha256"]] = batch_id
        manifest = ds.directory / "manifest.json"
        if manifest.is_file():
            ds.manifest = json.loads(manifest.read_text("utf-8"))
            for job in ds.manifest.get("jobs", {}):  # finish a cleanup a crash interrupted
                self._discard_job_locked(ds, job)
        return ds

    def _is_committed(self, name: str, batch_id: str) -> bool:
        manifest = self._dataset(name).manifest
        return bool(manifest) and any(b["batch_id"] == batch_id for b in manifest["batches"])  # type: ignore[index]

    # -- staging ------------------------------------------------------------------------------
    def _stage(self, request: Request, name: str, batch_id: str) -> None:
        key = (request.headers.get("Idempotency-Key") or "").strip()
        if not key:
            raise AppError(400, "idempotency_key_required", "Staging a batch needs an Idempotency-Key header.")
        if len(key) > _MAX_KEY:
            raise AppError(400, "invalid_request", f"Idempotency-Key is over {_MAX_KEY} characters.")
        key_hash = _key_hash(key)
        job = request.headers.get("Results-Job")
        if job is not None:
            _check_name(job, "job id (Results-Job)")
        ds = self._dataset(name)
        self._check_key(ds, batch_id, key_hash, job)  # cheap conflicts first, before reading the body

        hasher = Hasher(parse_content_digest(request.headers.get("Content-Digest")))
        fd, tmp = tempfile.mkstemp(dir=self._incoming, prefix=f"{name}.{batch_id}.")
        try:
            with os.fdopen(fd, "wb") as fh:
                for piece in request.body.chunks():
                    hasher.update(piece)
                    fh.write(piece)
                fh.flush()
                bad = hasher.mismatches()
                if bad:
                    raise AppError(400, "digest_mismatch",
                                   f"The body does not match its Content-Digest ({', '.join(bad)}); nothing was staged.")
                os.fsync(fh.fileno())
            sha256 = hasher.sha256.hex()
            with self._lock:
                existing = ds.batches.get(batch_id)
                if existing is None:
                    self._check_key_locked(ds, batch_id, key_hash, job)
                    result = {"dataset": name, "batch_id": batch_id, "size": hasher.size, "sha256": sha256,
                              "status": "staged", "staged_at": _now(), "staged_epoch": self.clock(),
                              "client_id": request.client_id,
                              "content_type": request.headers.get("Content-Type"),
                              "subject": request.subject, "job": job}
                    batches = ds.directory / "batches"
                    if not batches.is_dir():
                        batches.mkdir(parents=True, exist_ok=True)
                        fsync_dir(ds.directory)
                        fsync_dir(self.root)
                    os.replace(tmp, batches / f"{batch_id}.data")
                    fsync_dir(batches)
                    meta = {"result": result, "key_sha256": key_hash}  # written last: the commit point
                    atomic_write(batches / f"{batch_id}.json", json.dumps(meta, sort_keys=True).encode())
                    ds.batches[batch_id] = meta
                    ds.keys[key_hash] = batch_id
                    status, headers = 201, {}
                else:
                    self._check_key_locked(ds, batch_id, key_hash, job)
                    if existing["result"]["sha256"] != sha256:
                        raise AppError(422, "idempotency_key_reused",
                                       "This Idempotency-Key was used for different content; use a new key.")
                    result, status, headers = existing["result"], 200, {"Idempotent-Replayed": "true"}
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        digest = bytes.fromhex(str(result["sha256"]))
        request.send_json(status, result, headers={**headers, "Content-Digest": format_content_digest({"sha-256": digest})})

    def _check_key(self, ds: _Dataset, batch_id: str, key_hash: str, job: str | None) -> None:
        with self._lock:
            self._check_key_locked(ds, batch_id, key_hash, job)

    @staticmethod
    def _check_key_locked(ds: _Dataset, batch_id: str, key_hash: str, job: str | None) -> None:
        if job is not None and job in (ds.manifest or {}).get("jobs", {}):
            raise AppError(409, "job_committed", f"Job {job!r} is already committed to this dataset; "
                           "nothing of it needs staging again.", extra={"job": job})
        existing = ds.batches.get(batch_id)
        if existing is not None and existing["key_sha256"] != key_hash:
            raise AppError(409, "batch_exists", f"Batch {batch_id!r} was staged under another Idempotency-Key.")
        other = ds.keys.get(key_hash)
        if other is not None and other != batch_id:
            raise AppError(422, "idempotency_key_reused",
                           f"This Idempotency-Key was used for batch {other!r}; use a new key per batch.")

    # -- commit, abort, discard --------------------------------------------------------------
    def _json_body(self, request: Request) -> dict[str, Any]:
        try:
            doc = json.loads(request.body.read_all(_MAX_COMMIT_BODY) or b"null")
        except ValueError:
            raise AppError(400, "invalid_request", "The body is not JSON.") from None
        if not isinstance(doc, dict):
            raise AppError(400, "invalid_request", "The body must be a JSON object.")
        job = doc.get("job")
        if job is not None and not isinstance(job, str):
            raise AppError(400, "invalid_request", '"job" must be a string.')
        if job is not None:
            _check_name(job, "job id")
        return doc

    def _commit(self, request: Request, name: str) -> None:
        doc = self._json_body(request)
        ids, job = doc.get("batches"), doc.get("job")
        if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids) or (not ids and job is None):
            raise AppError(400, "invalid_request",
                           'The commit body must be {"batches": ["<batch id>", ...], "job": "<job id>"} '
                           "(an empty list only with a job).")
        ds = self._dataset(name)
        with self._lock:
            manifest = ds.manifest or {"dataset": name, "version": 0, "batches": [], "size": 0, "jobs": {}}
            jobs = dict(manifest.get("jobs", {}))
            if job is not None and job in jobs:  # keyed by the job: a re-sent commit changes nothing
                self._discard_job_locked(ds, job)
                request.send_json(200, {**manifest, "added": [], "job": job, "replayed": True},
                                  headers={"Idempotent-Replayed": "true"})
                return
            missing = sorted({i for i in ids if i not in ds.batches})
            if missing:
                raise AppError(409, "unknown_batches", "Some batches are not staged; stage them first.",
                               extra={"missing": missing[:1000]})
            foreign = sorted({i for i in ids if ds.batches[i]["result"].get("job") != job})
            if foreign:
                raise AppError(409, "batch_in_other_job", "Some batches were staged by another job (or none); "
                               "a commit lists only its own job's batches.", extra={"batches": foreign[:1000]})
            present = {b["batch_id"] for b in manifest["batches"]}
            added = [i for i in dict.fromkeys(ids) if i not in present]
            if added or job is not None:
                entries = [*manifest["batches"]]
                for batch_id in added:
                    r = ds.batches[batch_id]["result"]
                    entries.append({"batch_id": batch_id, "size": r["size"], "sha256": r["sha256"]})
                version = manifest["version"] + 1
                if job is not None:
                    jobs[job] = {"version": version, "batches": len(added), "committed_at": _now()}
                manifest = {"dataset": name, "version": version, "batches": entries,
                            "size": sum(e["size"] for e in entries), "committed_at": _now(),
                            "committed_by": request.client_id, "jobs": jobs}
                # one atomic write makes the batches and the job's record visible together
                atomic_write(ds.directory / "manifest.json", json.dumps(manifest, sort_keys=True).encode())
                ds.manifest = manifest
            if job is not None:
                self._discard_job_locked(ds, job)  # losing attempts' batches: never visible, now gone
        request.send_json(200, {**manifest, "added": added, **({"job": job} if job is not None else {})})

    def _abort(self, request: Request, name: str) -> None:
        job = self._json_body(request).get("job")
        if job is None:
            raise AppError(400, "invalid_request", 'The abort body must be {"job": "<job id>"}.')
        ds = self._dataset(name)
        with self._lock:
            if job in (ds.manifest or {}).get("jobs", {}):
                raise AppError(409, "job_committed", f"Job {job!r} is committed; a commit cannot be undone.",
                               extra={"job": job})
            discarded = self._discard_job_locked(ds, job)
        request.send_json(200, {"dataset": name, "job": job, "state": "aborted", "discarded": discarded})

    def _delete(self, request: Request, name: str, batch_id: str) -> None:
        ds = self._dataset(name)
        with self._lock:
            if batch_id not in ds.batches:
                raise AppError(404, "not_found", f"No staged batch {batch_id!r} in dataset {name!r}.")
            if any(b["batch_id"] == batch_id for b in (ds.manifest or {}).get("batches", [])):
                raise AppError(409, "batch_committed", f"Batch {batch_id!r} is committed; it cannot be discarded.")
            self._remove_locked(ds, batch_id)
        request.send_empty(204)

    def _discard_job_locked(self, ds: _Dataset, job: str) -> list[str]:
        """Remove the job's staged batches that no commit made visible (caller holds the lock)."""
        committed = {b["batch_id"] for b in (ds.manifest or {}).get("batches", [])}
        doomed = sorted(i for i, m in ds.batches.items() if m["result"].get("job") == job and i not in committed)
        for batch_id in doomed:
            self._remove_locked(ds, batch_id)
        return doomed

    @staticmethod
    def _remove_locked(ds: _Dataset, batch_id: str) -> None:
        meta = ds.batches.pop(batch_id)
        ds.keys.pop(meta["key_sha256"], None)
        batches = ds.directory / "batches"
        for suffix in (".json", ".data"):  # the metadata first: a crash in between leaves no half batch
            with contextlib.suppress(FileNotFoundError):
                os.unlink(batches / f"{batch_id}{suffix}")
        fsync_dir(batches)

    def _send_data(self, request: Request, name: str, batch_id: str) -> None:
        meta = self._dataset(name).batches.get(batch_id)
        if meta is None:
            raise AppError(404, "not_found", f"No batch {batch_id!r} in dataset {name!r}.")
        path = self.root / name / "batches" / f"{batch_id}.data"
        digest = bytes.fromhex(meta["result"]["sha256"])
        request.send_file(200, path, path.stat().st_size,
                          headers={"Content-Digest": format_content_digest({"sha-256": digest}),
                                   "ETag": f'"{digest.hex()}"'})


def _check_name(value: str | None, what: str) -> None:
    if value is None or not _NAME.match(value):
        raise AppError(400, "invalid_name", f"Invalid {what}: use letters, digits, '.', '_' and '-' (max 128).")
