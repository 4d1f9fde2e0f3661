"""Exactly-once results from Spark, proven against the sandbox results receiver with failures
injected: a task attempt dying midway (retried), a losing speculative copy's batches, a job
failing after some partitions finished, the receiver restarted mid-job, a re-run of a committed
job, and a streaming query killed and restarted from its checkpoint (twice: mid-micro-batch, and
after the sink's commit but before Spark logged it). Each asserts the committed dataset's row
count and distinct ids (zero rows for the failed job) and that no staged batch is left behind.

Spark runs in child processes (``results_child.py``): ``local[2,4]`` (4 attempts per task)
needs its own JVM, and the streaming query must be killable. Speculation is on, but Spark
never starts a copy on a host where an attempt runs (and local mode has no speculation), so the
losing copy's effect is made explicitly: the whole partition staged by another attempt of the
job while the original runs.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pa = pytest.importorskip("pyarrow")
pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'meshclient[spark]')")

from meshclient import MeshClient, results  # noqa: E402
from meshclient.errors import ResultsError  # noqa: E402
from meshclient.spark.results import has_data_source  # noqa: E402
from meshclient_sandbox.apps.results import ResultsSink  # noqa: E402
from meshclient_sandbox.runner import Sandbox  # noqa: E402

pytestmark = [pytest.mark.spark, pytest.mark.timeout(900)]

CHILD = Path(__file__).with_name("results_child.py")
ROWS, STREAM_FILES, STREAM_ROWS = 4000, 5, 500
VIAS = ["ds", "mia"] if has_data_source() else ["mia"]
STREAM_VIAS = ["ds", "feb"] if has_data_source() else ["feb"]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "PYSPARK_SUBMIT_ARGS")}
    env.update(PYSPARK_PYTHON=sys.executable, PYSPARK_DRIVER_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1",
               NO_PROXY="127.0.0.1,localhost")
    return env


def _start(sandbox: Sandbox, ctl: Path, *args: str) -> subprocess.Popen[bytes]:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("Spark needs Java (no JAVA_HOME and no java on PATH)")
    with open(ctl / f"child-{'-'.join(args)}.log", "wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen([sys.executable, str(CHILD), str(sandbox.workdir / "sandbox.json"), str(ctl), *args],
                                stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)


def _finish(proc: subprocess.Popen[bytes], ctl: Path, timeout: float = 900) -> None:
    try:
        code = proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    logs = "".join(p.read_text(errors="replace")[-3000:] for p in ctl.glob("child-*.log"))
    assert code == 0, f"the Spark child failed ({code}):\n{logs}"


def restart_receiver(sandbox: Sandbox) -> None:
    """Stop the results app and start a new one on the same port and files (the proxy stays)."""
    old = sandbox.apps["results"]
    port, validator = old.port, old.token_validator
    old.stop()
    sandbox.apps["results"] = ResultsSink(sandbox.workdir / "data" / "results", port=port,
                                          token_validator=validator).start()


class _Restarter(threading.Thread):
    """Restarts the receiver when the child says it is mid-job (``restart-mid``), then tells it."""

    def __init__(self, sandbox: Sandbox, ctl: Path) -> None:
        super().__init__(daemon=True)
        self.sandbox, self.ctl, self.stop = sandbox, ctl, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.05):
            if (self.ctl / "restart-mid").exists() and not (self.ctl / "restart-done").exists():
                restart_receiver(self.sandbox)
                (self.ctl / "restart-done").touch()


@pytest.fixture(scope="module")
def client(mesh_sandbox: Sandbox) -> Iterator[MeshClient]:
    with MeshClient(mesh_sandbox.client_credentials()) as c:
        yield c


@pytest.fixture(scope="module", params=VIAS)
def batch_run(request: pytest.FixtureRequest, mesh_sandbox: Sandbox,
              tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    via = request.param
    ctl = tmp_path_factory.mktemp(f"results-{via}")
    restarter = _Restarter(mesh_sandbox, ctl)
    restarter.start()
    try:
        _finish(_start(mesh_sandbox, ctl, "batch", via), ctl)
    finally:
        restarter.stop.set()
        restarter.join()
    return via, ctl


def _outcome(ctl: Path, scenario: str, via: str) -> dict[str, Any]:
    return dict(json.loads((ctl / f"{scenario}-{via}.json").read_text()))


def _dataset_dir(sandbox: Sandbox, dataset: str) -> Path:
    return sandbox.workdir / "data" / "results" / "datasets" / dataset


def _assert_exactly_once(client: MeshClient, sandbox: Sandbox, dataset: str, rows: int) -> dict[str, Any]:
    sink = sandbox.service("results")
    table = results.read(client, url=sink["url"], server_identity=sink["identity"], dataset=dataset)
    ids = table.column("id").to_pylist()
    assert table.num_rows == rows and len(set(ids)) == rows and set(ids) == set(range(rows))
    manifest = json.loads((_dataset_dir(sandbox, dataset) / "manifest.json").read_text())
    stored = {p.stem for p in (_dataset_dir(sandbox, dataset) / "batches").glob("*.data")}
    assert stored == {b["batch_id"] for b in manifest["batches"]}, "staged batches were left behind"
    return dict(manifest)


def test_a_task_attempt_dying_midway_is_committed_once(batch_run: tuple[str, Path], client: MeshClient,
                                                       mesh_sandbox: Sandbox) -> None:
    via, ctl = batch_run
    out = _outcome(ctl, "retry", via)
    assert "error" not in out, out
    assert list(ctl.glob("retry-p1-a1.started")), "partition 1 was not retried"
    assert int((ctl / "retry-dead-staged.txt").read_text()) > 0, "the dying attempt had staged nothing"
    manifest = _assert_exactly_once(client, mesh_sandbox, f"retry-{via}", ROWS)
    assert manifest["version"] == 1 and len(manifest["jobs"]) == 1


def test_a_losing_speculative_copy_is_never_visible(batch_run: tuple[str, Path], client: MeshClient,
                                               mesh_sandbox: Sandbox) -> None:
    via, ctl = batch_run
    out = _outcome(ctl, "speculation", via)
    assert "error" not in out, out
    copy = json.loads((ctl / "speculation-copy-staged").read_text())  # a losing copy's batches, staged
    assert len(copy) == ROWS // 4 // 100
    manifest = _assert_exactly_once(client, mesh_sandbox, f"speculation-{via}", ROWS)
    assert not set(copy) & {b["batch_id"] for b in manifest["batches"]}  # discarded, never visible


def test_a_failed_job_leaves_nothing_visible(batch_run: tuple[str, Path], client: MeshClient,
                                             mesh_sandbox: Sandbox) -> None:
    via, ctl = batch_run
    out = _outcome(ctl, "failed", via)
    assert "injected: partition 3 fails" in out.get("error", ""), out
    staged_then = [int(p.read_text()) for p in ctl.glob("failed-staged-*.txt")]
    assert len(staged_then) == 4 and max(staged_then) > 0  # 4 attempts; other partitions had staged batches
    sink = mesh_sandbox.service("results")
    with pytest.raises(ResultsError) as err:  # zero rows: no commit ever happened
        results.read(client, url=sink["url"], server_identity=sink["identity"], dataset=f"failed-{via}")
    assert err.value.status == 404
    assert list((_dataset_dir(mesh_sandbox, f"failed-{via}") / "batches").glob("*.data")) == []  # aborted


def test_a_receiver_restarted_mid_job(batch_run: tuple[str, Path], client: MeshClient,
                                      mesh_sandbox: Sandbox) -> None:
    via, ctl = batch_run
    out = _outcome(ctl, "restart", via)
    assert "error" not in out, out
    assert (ctl / "restart-done").exists(), "the receiver was not restarted"
    _assert_exactly_once(client, mesh_sandbox, f"restart-{via}", ROWS)


def test_rerunning_a_committed_job_commits_nothing(batch_run: tuple[str, Path], client: MeshClient,
                                                   mesh_sandbox: Sandbox) -> None:
    via, ctl = batch_run
    out = _outcome(ctl, "rerun", via)
    assert "error" not in out, out
    manifest = _assert_exactly_once(client, mesh_sandbox, f"rerun-{via}", ROWS)
    assert manifest["version"] == 1 and list(manifest["jobs"]) == [f"nightly-{via}"]
    assert out["report"]["version"] == out["first"]["version"] == 1


@pytest.mark.parametrize("via", STREAM_VIAS)
def test_a_streaming_query_killed_and_restarted_publishes_each_micro_batch_once(
        via: str, mesh_sandbox: Sandbox, client: MeshClient, tmp_path_factory: pytest.TempPathFactory) -> None:
    import pyarrow.parquet as pq

    ctl = tmp_path_factory.mktemp(f"results-stream-{via}")
    dataset = f"stream-{via}"
    source = ctl / "stream-in"
    source.mkdir()
    for f in range(STREAM_FILES):
        ids = list(range(f * STREAM_ROWS, (f + 1) * STREAM_ROWS))
        pq.write_table(pa.table({"id": ids, "score": [i / 3 for i in ids]}), source / f"part-{f}.parquet")
        stamp = 1_700_000_000 + f * 60  # the file source takes files oldest first: file f is micro-batch f
        os.utime(source / f"part-{f}.parquet", (stamp, stamp))
    # run 1: killed (SIGKILL, JVM and workers) while micro-batch 1 is staging
    proc = _start(mesh_sandbox, ctl, "stream-killed", via)
    try:
        stalled = _wait(ctl, f"stream-stalled-{via}")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert stalled, (ctl / f"child-stream-killed-{via}.log").read_text(errors="replace")[-3000:]
    assert int((ctl / f"stream-stalled-{via}").read_text()) > 0  # micro-batch 1 had staged batches when killed
    query = (ctl / f"stream-query-id-{via}").read_text()
    manifest = json.loads((_dataset_dir(mesh_sandbox, dataset) / "manifest.json").read_text())
    assert list(manifest["jobs"]) == [f"{query}.b0"]  # micro-batch 0 published, 1 was cut short
    # run 2: restarted from the checkpoint to the end; then its last commit-log entry removed and restarted
    _finish(_start(mesh_sandbox, ctl, "stream-restart", via), ctl)
    replayed, relogged = json.loads((ctl / f"stream-replayed-batch-{via}").read_text())
    manifest = _assert_exactly_once(client, mesh_sandbox, dataset, STREAM_FILES * STREAM_ROWS)
    assert sorted(manifest["jobs"]) == sorted(f"{query}.b{b}" for b in range(STREAM_FILES))
    assert replayed == STREAM_FILES - 1 and relogged  # the last micro-batch ran through the sink again
    assert manifest["version"] == STREAM_FILES  # one commit per micro-batch: the replay committed nothing


def _wait(ctl: Path, name: str) -> bool:
    import time

    end = time.monotonic() + 600
    while time.monotonic() < end:
        if (ctl / name).exists():
            return True
        time.sleep(0.1)
    return False
