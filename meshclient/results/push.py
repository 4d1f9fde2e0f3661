"""``push`` and ``read``: the client side of the results protocol (``docs/results-protocol.md``).

A batch is staged with ``PUT {url}/v1/datasets/{dataset}/batches/{batch_id}`` under an
``Idempotency-Key`` that names the dataset, the batch and its content's sha-256, so a retried
or repeated push of the same bytes is recognised and stored once; then published with an
idempotent ``POST .../commit``. Every request goes through the client's one request path.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..client import MeshClient
from ..errors import ConfigurationError, ResultsError
from ..identity import Identity
from ..redaction import redact_text, redact_url
from .encoding import decode, encode, to_table

__all__ = ["Receipt", "push", "read", "batch_id_for", "stage", "commit", "abort", "discard", "JOB_HEADER"]

#: the header that tags a staged batch with the job that staged it (a commit or abort names the job)
JOB_HEADER = "Results-Job"

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class Receipt:
    """What a push left on the receiver: the dataset version its commit made visible."""

    dataset: str
    batch_id: str
    rows: int
    bytes: int
    sha256: str
    version: int
    replayed: bool  # the receiver already had this batch: nothing was stored twice
    #: every batch of the push, in order (one unless ``batch_rows`` split the data)
    batch_ids: tuple[str, ...] = ()


def _check_name(value: object, what: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise ConfigurationError(f"The {what} {value!r} is not valid: use letters, digits, '.', '_' and '-' "
                                 "(at most 128, starting with a letter or digit).")
    return value


def batch_id_for(dataset: str, job: str, partition: int, epoch: int = 0, *, attempt: int = 0, seq: int = 0,
                 run: str = "") -> str:
    """A deterministic batch id: the same (dataset, job or query id, partition, epoch, task attempt,
    sequence number, run) always names the same batch, so a re-sent stage is a replay; distinct
    attempts (a retry, a speculative copy, a restarted query's ``run``) never collide, whatever
    their content. Only the ids in a commit become visible."""
    digest = hashlib.sha256(f"{dataset}\0{job}\0{partition}\0{epoch}\0{attempt}\0{seq}\0{run}".encode())
    return f"p{partition}-e{epoch}-a{attempt}-s{seq}-{digest.hexdigest()[:24]}"


def _base(url: str) -> str:
    if not isinstance(url, str) or not url.startswith("https://"):
        raise ConfigurationError(f"The results URL must be an https:// URL, got {redact_url(str(url))!r}.",
                                 hint="Mesh services speak mutual TLS: write https://HOST:PORT.")
    return url.rstrip("/")


def _fail(what: str, resp: Any, batch_id: str | None = None) -> ResultsError:
    code = None
    try:
        doc = resp.json()
        code = doc.get("error") if isinstance(doc.get("error"), str) else None
        detail = str(doc.get("message") or doc.get("error") or "")
    except (ValueError, AttributeError):
        detail = resp.text[:200]
    return ResultsError(f"{what}: the receiver answered {resp.status_code} {redact_text(detail)}".rstrip() + ".",
                        status=resp.status_code, batch_id=batch_id, code=code,
                        hint="4xx: the request was refused as given (see the message); 5xx: retry later.")


def stage(client: MeshClient, data: Any, *, url: str, server_identity: str | Identity, dataset: str,
          batch_id: str | None = None, format: str = "arrow", job: str | None = None) -> tuple[str, dict[str, Any], int]:
    """Stage one batch (not yet visible); returns (batch id, the receiver's result, rows).

    ``job`` tags the batch with the job staging it: only that job's commit can publish it, and
    the job's commit or abort discards its batches left out. A job already committed answers
    :class:`ResultsError` with ``code == "job_committed"``: nothing of it needs staging again.
    """
    base, name = _base(url), _check_name(dataset, "dataset name")
    if job is not None:
        _check_name(job, "job id")
    batch = encode(to_table(data), format)
    try:
        bid = _check_name(batch_id, "batch id") if batch_id is not None else f"c-{batch.sha256.hex()[:32]}"
        headers = {
            "Idempotency-Key": f"{name}:{bid}:{batch.sha256.hex()}",
            "Content-Digest": f"sha-256=:{base64.b64encode(batch.sha256).decode()}:",
            "Content-Type": batch.content_type,
            "Content-Length": str(batch.size),
        }
        if job is not None:
            headers[JOB_HEADER] = job
        resp = client.put(f"{base}/v1/datasets/{name}/batches/{bid}", data=batch.body, headers=headers,
                          server_identity=server_identity)
        if resp.status_code not in (200, 201):
            raise _fail(f"Staging batch {bid!r} of dataset {name!r}", resp, bid)
        result = dict(resp.json())
        if result.get("sha256") != batch.sha256.hex():
            raise ResultsError(f"The receiver stored batch {bid!r} with another sha-256 than was sent.", batch_id=bid,
                               hint="Do not commit it; push the batch again, and check the receiver.")
        result["replayed"] = resp.headers.get("Idempotent-Replayed") == "true"
        return bid, result, batch.rows
    finally:
        batch.close()


def commit(client: MeshClient, batch_ids: list[str], *, url: str, server_identity: str | Identity,
           dataset: str, job: str | None = None) -> dict[str, Any]:
    """Publish staged batches in one atomic, idempotent commit; returns the new manifest.

    With ``job`` the commit is keyed by it: committing the same job again (a lost answer, a
    retried driver, a restarted streaming query) is a no-op whose answer has ``replayed: True``,
    and the job's staged batches not listed (failed or speculative attempts) are discarded.
    """
    base, name = _base(url), _check_name(dataset, "dataset name")
    ids = sorted(set(batch_ids))
    body: dict[str, Any] = {"batches": ids}
    if job is not None:
        body["job"] = _check_name(job, "job id")
        key = f"commit:{name}:{job}"
    else:
        key = "commit:" + hashlib.sha256("\0".join([name, *ids]).encode()).hexdigest()
    resp = client.post(f"{base}/v1/datasets/{name}/commit", data=json.dumps(body).encode(),
                       headers={"Content-Type": "application/json", "Idempotency-Key": key},
                       server_identity=server_identity)
    if resp.status_code != 200:
        what = f"Committing {len(ids)} batch(es)" + (f" of job {job!r}" if job else "") + f" to dataset {name!r}"
        raise _fail(what, resp)
    return dict(resp.json())


def abort(client: MeshClient, job: str, *, url: str, server_identity: str | Identity, dataset: str) -> list[str]:
    """Discard every batch ``job`` staged and did not commit; returns their ids (idempotent).
    A committed job cannot be aborted (``ResultsError`` with ``code == "job_committed"``)."""
    base, name = _base(url), _check_name(dataset, "dataset name")
    resp = client.post(f"{base}/v1/datasets/{name}/abort", data=json.dumps({"job": _check_name(job, "job id")}).encode(),
                       headers={"Content-Type": "application/json", "Idempotency-Key": f"abort:{name}:{job}"},
                       server_identity=server_identity)
    if resp.status_code != 200:
        raise _fail(f"Aborting job {job!r} of dataset {name!r}", resp)
    return list(resp.json().get("discarded", []))


def discard(client: MeshClient, batch_id: str, *, url: str, server_identity: str | Identity, dataset: str) -> bool:
    """Discard one staged, uncommitted batch; False if the receiver did not have it."""
    base, name = _base(url), _check_name(dataset, "dataset name")
    bid = _check_name(batch_id, "batch id")
    resp = client.delete(f"{base}/v1/datasets/{name}/batches/{bid}", server_identity=server_identity)
    if resp.status_code == 404:
        return False
    if resp.status_code not in (200, 204):
        raise _fail(f"Discarding batch {bid!r} of dataset {name!r}", resp, bid)
    return True


def push(client: MeshClient, data: Any, *, url: str, server_identity: str | Identity, dataset: str,
         batch_id: str | None = None, format: str = "arrow", batch_rows: int | None = None,
         progress: Callable[[int, int], None] | None = None) -> Receipt:
    """Push results exactly once: stage the batch, then commit it.

    ``data``: a pandas DataFrame, a pyarrow Table or RecordBatch, or a Parquet/CSV/JSON-lines path.
    Without ``batch_id`` the batch is named by its content, so pushing the same data twice stores
    it once. ``format``: ``arrow`` (IPC stream, the default), ``parquet`` or ``jsonl``.
    ``batch_rows`` splits a large table into batches of that many rows (each named by its content,
    or ``{batch_id}-{n}``), committed together; ``progress(rows_staged, rows_total)`` is called
    after each batch. ``sha256`` and ``bytes`` of the receipt are the first batch's and the total.
    """
    if batch_rows is not None and (not isinstance(batch_rows, int) or batch_rows < 1):
        raise ConfigurationError(f"batch_rows must be a positive integer, got {batch_rows!r}.")
    table = to_table(data)
    step = batch_rows or max(table.num_rows, 1)
    chunks = [table.slice(o, step) for o in range(0, table.num_rows, step)] or [table]
    ids: list[str] = []
    staged: list[dict[str, Any]] = []
    done = 0
    for n, chunk in enumerate(chunks):
        name = batch_id if batch_id is None or len(chunks) == 1 else f"{batch_id}-{n}"
        bid, result, rows = stage(client, chunk, url=url, server_identity=server_identity, dataset=dataset,
                                  batch_id=name, format=format)
        ids.append(bid)
        staged.append(result)
        done += rows
        if progress is not None:
            progress(done, table.num_rows)
    manifest = commit(client, ids, url=url, server_identity=server_identity, dataset=dataset)
    return Receipt(dataset=dataset, batch_id=ids[0], rows=table.num_rows, bytes=sum(int(r["size"]) for r in staged),
                   sha256=str(staged[0]["sha256"]), version=int(manifest["version"]),
                   replayed=all(bool(r["replayed"]) for r in staged), batch_ids=tuple(ids))


def read(client: MeshClient, *, url: str, server_identity: str | Identity, dataset: str) -> Any:
    """The committed dataset as one Arrow table (``.to_pandas()`` for pandas), every batch digest-checked."""
    import pyarrow as pa

    base, name = _base(url), _check_name(dataset, "dataset name")
    resp = client.get(f"{base}/v1/datasets/{name}", server_identity=server_identity)
    if resp.status_code != 200:
        raise _fail(f"Reading the manifest of dataset {name!r}", resp)
    tables = []
    for entry in resp.json()["batches"]:
        bid = entry["batch_id"]
        meta = client.get(f"{base}/v1/datasets/{name}/batches/{bid}", server_identity=server_identity)
        body = client.get(f"{base}/v1/datasets/{name}/batches/{bid}/data", server_identity=server_identity)
        if meta.status_code != 200 or body.status_code != 200:
            raise _fail(f"Reading batch {bid!r} of dataset {name!r}", body if meta.status_code == 200 else meta, bid)
        if hashlib.sha256(body.content).hexdigest() != entry["sha256"]:
            raise ResultsError(f"Batch {bid!r} of dataset {name!r} does not match its sha-256 in the manifest.",
                               batch_id=bid, hint="The receiver's copy is damaged: nothing of it was used.")
        tables.append(decode(body.content, meta.json().get("content_type")))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="default")
