"""The wheel-task entry points run the way a Databricks ``python_wheel_task`` runs them: the
console script looked up in the installed distribution's entry points, called with the task's
``parameters`` as ``sys.argv`` (positional form) or its ``named_parameters`` as ``--name=value``,
in a fresh process; asserted on the receiver's side."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from meshclient import MeshClient, results
from meshclient_sandbox.runner import Sandbox, SandboxSettings

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")

SCRIPTS = ("meshclient-score-table", "meshclient-push-artifacts", "meshclient-push-results")
_TASK = ("import sys; from importlib.metadata import entry_points; "
         "(ep,) = entry_points(group='console_scripts', name=sys.argv[1]); "
         "sys.argv = sys.argv[1:]; sys.exit(ep.load()())")


def run_task(name: str, params: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _TASK, name, *params], env=env, capture_output=True, text=True,
                          timeout=600)


def named(**params: str) -> list[str]:
    """``named_parameters`` as a wheel task passes them."""
    return [f"--{k.replace('_', '-')}={v}" for k, v in params.items()]


def mesh_env(sandbox: Sandbox) -> dict[str, str]:
    c = sandbox.info["client"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHCLIENT_", "DATABRICKS_"))}
    env.update(MESHCLIENT_CERT=c["cert"], MESHCLIENT_KEY=c["key"], MESHCLIENT_TRUST_ANCHORS=sandbox.info["trust_anchors"],
               PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1", NO_PROXY="127.0.0.1,localhost")
    for name in ("PYSPARK_SUBMIT_ARGS", "SPARK_REMOTE"):
        env.pop(name, None)
    return env


def test_the_entry_points_are_installed_console_scripts() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name in SCRIPTS}
    assert found == {"meshclient-score-table": "meshclient.jobs:score_table",
                     "meshclient-push-artifacts": "meshclient.jobs:push_artifacts",
                     "meshclient-push-results": "meshclient.jobs:push_results"}


def test_push_artifacts_with_named_parameters(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    tree = tmp_path / "model"
    (tree / "weights").mkdir(parents=True)
    (tree / "weights" / "w.bin").write_bytes(os.urandom(200_000))
    (tree / "MLmodel").write_text("flavors: {}\n")
    store = mesh_sandbox.service("artifacts")
    done = run_task("meshclient-push-artifacts", named(path=str(tree), to=f"{store['url']}/jobs/run-7",
                                                        server_identity=store["identity"]), mesh_env(mesh_sandbox))
    assert done.returncode == 0, done.stdout + done.stderr
    stored = mesh_sandbox.workdir / "data" / "artifacts" / "files" / "jobs" / "run-7"
    assert (stored / "weights" / "w.bin").read_bytes() == (tree / "weights" / "w.bin").read_bytes()
    assert (stored / "MLmodel").read_text() == "flavors: {}\n"
    assert "PRIVATE KEY" not in done.stdout + done.stderr


def test_push_results_file_with_positional_parameters(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"id": list(range(500)), "score": [i / 7 for i in range(500)]}), path)
    sink = mesh_sandbox.service("results")
    params = [str(path), "--to", sink["url"], "--server-identity", sink["identity"], "--dataset", "job-file"]
    for _ in range(2):  # a re-run task stores nothing twice
        done = run_task("meshclient-push-results", params, mesh_env(mesh_sandbox))
        assert done.returncode == 0, done.stdout + done.stderr
    assert "committed 500 row(s)" in done.stdout and "stored once" in done.stdout
    with MeshClient(mesh_sandbox.client_credentials()) as client:
        ids = results.read(client, url=sink["url"], server_identity=sink["identity"], dataset="job-file")["id"]
    assert sorted(ids.to_pylist()) == list(range(500))


def test_bad_parameters_exit_2_naming_the_parameter(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    sink = mesh_sandbox.service("results")
    for name, params, wanted in [
        ("meshclient-push-results", named(file=str(tmp_path / "x.parquet"), to=sink["url"], dataset="d"),
         "--server-identity"),
        ("meshclient-score-table", named(table="t", server_identity=sink["identity"]), "--endpoint"),
        ("meshclient-push-artifacts", named(path=str(tmp_path), server_identity=sink["identity"]), "--to"),
    ]:
        done = run_task(name, params, mesh_env(mesh_sandbox))
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        assert wanted in done.stderr, (name, done.stderr)


def test_a_wrong_server_identity_fails_and_stores_nothing(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3]}), path)
    sink = mesh_sandbox.service("results")
    wrong = "scorer.ml-serving.serviceaccount.identity.linkerd.cluster.local"
    done = run_task("meshclient-push-results", named(file=str(path), to=sink["url"], server_identity=wrong,
                                                      dataset="job-wrong"), mesh_env(mesh_sandbox))
    assert done.returncode == 1, done.stdout + done.stderr
    assert "meshclient: error:" in done.stderr and "fix:" in done.stderr
    assert not (mesh_sandbox.workdir / "data" / "results" / "datasets" / "job-wrong").exists()


@pytest.fixture(scope="module")
def scoring_mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    from meshclient_sandbox.apps.model_servers import venv_python

    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'meshclient[spark]')")
    if venv_python("mlflow") is None:
        pytest.skip(".venv-mlflow is missing (make model-servers)")
    settings = SandboxSettings(tmp_path_factory.mktemp("jobs-sandbox"), services=("results", "mlflow-scoring"))
    with Sandbox(settings) as sandbox:
        yield sandbox


@pytest.mark.spark
def test_score_a_table_then_push_it_exactly_once_as_wheel_tasks(scoring_mesh: Sandbox, tmp_path: Path) -> None:
    from meshclient_sandbox.apps.model_servers import local_predictions

    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = 2000
    features = {n: [round(4.0 + ((i * (k + 3)) % 37) / 10, 1) for i in range(rows)] for k, n in enumerate(names)}
    source = tmp_path / "features.parquet"
    pq.write_table(pa.table({"id": list(range(rows)), **features}), source)
    svc, sink, env = scoring_mesh.service("mlflow-scoring"), scoring_mesh.service("results"), mesh_env(scoring_mesh)
    out = tmp_path / "scores"
    done = run_task("meshclient-score-table", named(input_path=str(source), endpoint=svc["url"],
                                                     server_identity=svc["identity"], input_cols=",".join(names),
                                                     output_path=str(out), batch_size="500"), env)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert f"wrote {out}: {rows} rows" in done.stdout
    scored = pq.read_table(out).to_pandas().sort_values("id")
    expected = local_predictions("mlflow", scoring_mesh.workdir, scored[names].reset_index(drop=True))
    assert scored["prediction"].tolist() == expected["prediction"].tolist()

    params = named(input_path=str(out), to=sink["url"], server_identity=sink["identity"], dataset="job-scores",
                   job="nightly-1")
    for _ in range(2):  # the task re-run with the same job id commits nothing again
        done = run_task("meshclient-push-results", params, env)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "already committed by an earlier run" in done.stdout
    manifest = json.loads((scoring_mesh.workdir / "data" / "results" / "datasets" / "job-scores" /
                           "manifest.json").read_text())
    assert list(manifest["jobs"]) == ["nightly-1"] and manifest["version"] == 1
    with MeshClient(scoring_mesh.client_credentials()) as client:
        ids = results.read(client, url=sink["url"], server_identity=sink["identity"], dataset="job-scores")["id"]
    assert sorted(ids.to_pylist()) == list(range(rows))


