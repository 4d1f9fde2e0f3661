"""Jobs on the results receiver: a commit keyed by its job (a re-sent commit is a no-op), abort,
discarding a batch, a committed job refusing more batches, and a receiver restarted mid-job —
asserted on the receiver's files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")

from meshclient import MeshClient, results  # noqa: E402
from meshclient.errors import ResultsError  # noqa: E402
from meshclient_sandbox.apps.results import ResultsSink  # noqa: E402
from meshclient_sandbox.runner import Sandbox  # noqa: E402


def _table(n: int, offset: int = 0) -> Any:
    return pa.table({"id": list(range(offset, offset + n)), "v": [float(i) for i in range(n)]})


def _dir(mesh_sandbox: Sandbox, dataset: str) -> Path:
    return mesh_sandbox.workdir / "data" / "results" / "datasets" / dataset


def _staged(mesh_sandbox: Sandbox, dataset: str) -> set[str]:
    return {p.stem for p in (_dir(mesh_sandbox, dataset) / "batches").glob("*.data")}


def _manifest(mesh_sandbox: Sandbox, dataset: str) -> dict[str, Any]:
    return dict(json.loads((_dir(mesh_sandbox, dataset) / "manifest.json").read_text()))


def _stage(client: MeshClient, sink: dict[str, Any], dataset: str, job: str, part: int, attempt: int = 0,
           rows: int = 10) -> str:
    bid = results.batch_id_for(dataset, job, part, attempt=attempt)
    got, _, _ = results.stage(client, _table(rows, part * rows), url=sink["url"], server_identity=sink["identity"],
                              dataset=dataset, batch_id=bid, job=job)
    return got


def test_a_job_commit_publishes_its_batches_and_discards_the_rest(client: MeshClient, sink: dict[str, Any],
                                                                  mesh_sandbox: Sandbox) -> None:
    kw = dict(url=sink["url"], server_identity=sink["identity"], dataset="jobs")
    winners = [_stage(client, sink, "jobs", "job-a", p) for p in range(3)]
    loser = _stage(client, sink, "jobs", "job-a", 1, attempt=1)  # a speculative copy of partition 1
    other = _stage(client, sink, "jobs", "job-b", 0)  # another job, still running
    manifest = results.commit(client, winners, job="job-a", **kw)  # type: ignore[arg-type]
    assert manifest["version"] == 1 and sorted(manifest["added"]) == sorted(winners)
    assert _staged(mesh_sandbox, "jobs") == {*winners, other}  # the loser is gone, job-b untouched
    assert loser not in _staged(mesh_sandbox, "jobs")
    on_disk = _manifest(mesh_sandbox, "jobs")
    assert on_disk["jobs"]["job-a"]["version"] == 1 and on_disk["jobs"]["job-a"]["batches"] == 3
    # re-sent (a lost answer), or sent by a restarted driver with other ids: nothing changes
    again = results.commit(client, [loser], job="job-a", **kw)  # type: ignore[arg-type]
    assert again["replayed"] is True and again["version"] == 1 and again["added"] == []
    assert _manifest(mesh_sandbox, "jobs") == on_disk
    # a committed job takes no more batches
    with pytest.raises(ResultsError) as err:
        _stage(client, sink, "jobs", "job-a", 7)
    assert err.value.status == 409 and err.value.code == "job_committed"
    assert results.read(client, **kw).num_rows == 30  # type: ignore[arg-type]


def test_a_commit_refuses_another_jobs_batch(client: MeshClient, sink: dict[str, Any]) -> None:
    kw = dict(url=sink["url"], server_identity=sink["identity"], dataset="foreign")
    theirs = _stage(client, sink, "foreign", "job-x", 0)
    with pytest.raises(ResultsError) as err:
        results.commit(client, [theirs], job="job-y", **kw)  # type: ignore[arg-type]
    assert err.value.code == "batch_in_other_job"
    with pytest.raises(ResultsError) as err:
        results.commit(client, ["p9-e0-a0-s0-unknown"], job="job-x", **kw)  # type: ignore[arg-type]
    assert err.value.code == "unknown_batches"


def test_abort_discards_the_jobs_staged_batches(client: MeshClient, sink: dict[str, Any],
                                                mesh_sandbox: Sandbox) -> None:
    kw = dict(url=sink["url"], server_identity=sink["identity"], dataset="aborted")
    staged = {_stage(client, sink, "aborted", "job-f", p) for p in range(4)}
    keep = _stage(client, sink, "aborted", "job-g", 0)
    assert set(results.abort(client, "job-f", **kw)) == staged  # type: ignore[arg-type]
    assert _staged(mesh_sandbox, "aborted") == {keep}
    assert results.abort(client, "job-f", **kw) == []  # type: ignore[arg-type]
    assert not (_dir(mesh_sandbox, "aborted") / "manifest.json").exists()  # nothing was ever visible
    results.commit(client, [keep], job="job-g", **kw)  # type: ignore[arg-type]
    with pytest.raises(ResultsError) as err:
        results.abort(client, "job-g", **kw)  # type: ignore[arg-type]
    assert err.value.code == "job_committed"


def test_discard_one_staged_batch(client: MeshClient, sink: dict[str, Any], mesh_sandbox: Sandbox) -> None:
    kw = dict(url=sink["url"], server_identity=sink["identity"], dataset="discard")
    one, two = _stage(client, sink, "discard", "job-d", 0), _stage(client, sink, "discard", "job-d", 1)
    assert results.discard(client, one, **kw) is True  # type: ignore[arg-type]
    assert results.discard(client, one, **kw) is False  # type: ignore[arg-type]
    assert _staged(mesh_sandbox, "discard") == {two}
    results.commit(client, [two], job="job-d", **kw)  # type: ignore[arg-type]
    with pytest.raises(ResultsError) as err:
        results.discard(client, two, **kw)  # type: ignore[arg-type]
    assert err.value.status == 409


def test_a_receiver_restarted_mid_job_keeps_staged_batches(client: MeshClient, sink: dict[str, Any],
                                                           mesh_sandbox: Sandbox) -> None:
    kw = dict(url=sink["url"], server_identity=sink["identity"], dataset="restart")
    first = [_stage(client, sink, "restart", "job-r", p) for p in range(2)]
    old = mesh_sandbox.apps["results"]
    port, validator = old.port, old.token_validator
    old.stop()
    new = ResultsSink(mesh_sandbox.workdir / "data" / "results", port=port, token_validator=validator).start()
    mesh_sandbox.apps["results"] = new
    # the retried stage of a batch staged before the restart is a replay, not a second copy
    bid, result, _ = results.stage(client, _table(10, 0), url=sink["url"], server_identity=sink["identity"],
                                   dataset="restart", batch_id=first[0], job="job-r")
    assert result["replayed"] and bid == first[0]
    rest = [_stage(client, sink, "restart", "job-r", p) for p in range(2, 4)]
    manifest = results.commit(client, [*first, *rest], job="job-r", **kw)  # type: ignore[arg-type]
    assert manifest["version"] == 1 and len(manifest["batches"]) == 4
    ids = results.read(client, **kw).column("id").to_pylist()  # type: ignore[arg-type]
    assert sorted(ids) == list(range(40))


def test_staged_batches_nobody_commits_expire(client: MeshClient, sink: dict[str, Any],
                                              mesh_sandbox: Sandbox) -> None:
    """A driver that died between staging and committing: its batches are discarded after the
    receiver's staging TTL (an injected clock, no waiting); committed batches never expire, and a
    late commit naming an expired batch is refused, so nothing half-published appears."""
    now = [1_000_000.0]
    old = mesh_sandbox.apps["results"]
    port, validator = old.port, old.token_validator
    old.stop()
    mesh_sandbox.apps["results"] = ResultsSink(mesh_sandbox.workdir / "data" / "results", port=port,
                                               token_validator=validator, staged_ttl=3600, clock=lambda: now[0]).start()
    kw = dict(url=sink["url"], server_identity=sink["identity"], dataset="expiry")
    try:
        kept = _stage(client, sink, "expiry", "job-kept", 0)
        results.commit(client, [kept], job="job-kept", **kw)  # type: ignore[arg-type]
        orphans = [_stage(client, sink, "expiry", "job-dead", p) for p in range(1, 3)]
        now[0] += 1800
        late = _stage(client, sink, "expiry", "job-late", 3)
        assert _staged(mesh_sandbox, "expiry") == {kept, *orphans, late}  # within the TTL: all kept
        now[0] += 1801  # the orphans are past the TTL, the late batch is not
        results.read(client, **kw)  # type: ignore[arg-type]  # any request to the dataset sweeps it
        assert _staged(mesh_sandbox, "expiry") == {kept, late}
        with pytest.raises(ResultsError) as err:
            results.commit(client, orphans, job="job-dead", **kw)  # type: ignore[arg-type]
        assert err.value.status == 409 and err.value.code == "unknown_batches"
        assert _manifest(mesh_sandbox, "expiry")["version"] == 1
        assert results.read(client, **kw).column("id").to_pylist() == list(range(10))  # type: ignore[arg-type]
    finally:
        mesh_sandbox.apps["results"].stop()
        mesh_sandbox.apps["results"] = ResultsSink(mesh_sandbox.workdir / "data" / "results", port=port,
                                                   token_validator=validator).start()
