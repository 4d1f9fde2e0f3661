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


def run_task(name: str, params: list[str], env: dict[str, str],
             cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _TASK, name, *params], env=env, capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def named(**params: str) -> list[str]:
    """``named_parameters`` as a wheel task passes them."""
    return [f"--{k.replace('_', '-')}={v}" for k, v in params.items()]


def bare_env() -> dict[str, str]:
    """No mesh material, no workspace settings, no Spark settings from the test's own environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHCLIENT_", "DATABRICKS_"))}
    env.update(PYSPARK_PYTHON=sys.executable, SPARK_LOCAL_IP="127.0.0.1", NO_PROXY="127.0.0.1,localhost")
    for name in ("PYSPARK_SUBMIT_ARGS", "SPARK_REMOTE"):
        env.pop(name, None)
    return env


def mesh_env(sandbox: Sandbox) -> dict[str, str]:
    """The identity in MESHCLIENT_* (paths), as a cluster's environment variables would carry it."""
    c = sandbox.info["client"]
    return {**bare_env(), "MESHCLIENT_CERT": c["cert"], "MESHCLIENT_KEY": c["key"],
            "MESHCLIENT_TRUST_ANCHORS": sandbox.info["trust_anchors"]}


def workspace_env(sandbox: Sandbox, home: Path) -> dict[str, str]:
    """Only a workspace to read the secret scope from (databricks-sdk unified auth: host and a PAT)."""
    ws = sandbox.info["workspace"]
    return {**bare_env(), "DATABRICKS_HOST": ws["host"], "DATABRICKS_TOKEN": ws["token"], "HOME": str(home),
            "DATABRICKS_CONFIG_FILE": str(home / "no-such-databrickscfg")}


def material_params(sandbox: Sandbox) -> list[str]:
    c = sandbox.info["client"]
    return ["--cert", c["cert"], "--key", c["key"], "--trust-anchors", sandbox.info["trust_anchors"]]


def model_tree(root: Path) -> Path:
    tree = root / "model"
    (tree / "weights").mkdir(parents=True)
    (tree / "weights" / "w.bin").write_bytes(os.urandom(200_000))
    (tree / "MLmodel").write_text("flavors: {}\n")
    return tree


def stored_artifacts(sandbox: Sandbox, prefix: str) -> Path:
    return sandbox.workdir / "data" / "artifacts" / "files" / prefix


def assert_no_secret(sandbox: Sandbox, text: str) -> None:
    key_lines = [ln for ln in Path(sandbox.info["client"]["key"]).read_text().splitlines() if "-----" not in ln]
    assert "PRIVATE KEY" not in text and sandbox.info["workspace"]["token"] not in text
    assert not [ln for ln in key_lines if ln and ln in text]


def test_the_entry_points_are_installed_console_scripts() -> None:
    found = {ep.name: ep.value for ep in entry_points(group="console_scripts") if ep.name in SCRIPTS}
    assert found == {"meshclient-score-table": "meshclient.jobs:score_table",
                     "meshclient-push-artifacts": "meshclient.jobs:push_artifacts",
                     "meshclient-push-results": "meshclient.jobs:push_results"}


def test_push_artifacts_named_parameters_identity_from_the_secret_scope(mesh_sandbox: Sandbox,
                                                                       tmp_path: Path) -> None:
    """The bundle's form: named_parameters, the identity from --secret-scope through databricks-sdk."""
    tree = model_tree(tmp_path)
    store = mesh_sandbox.service("artifacts")
    params = named(path=str(tree), to=f"{store['url']}/jobs/run-7", server_identity=store["identity"],
                   secret_scope=mesh_sandbox.info["workspace"]["secret_scope"])
    done = run_task("meshclient-push-artifacts", params, workspace_env(mesh_sandbox, tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    stored = stored_artifacts(mesh_sandbox, "jobs/run-7")
    assert (stored / "weights" / "w.bin").read_bytes() == (tree / "weights" / "w.bin").read_bytes()
    assert (stored / "MLmodel").read_text() == "flavors: {}\n"
    steps = done.stdout.splitlines()  # one line per step on the run page
    assert steps[0].startswith(f"pushing {tree} to {store['url']}/jobs/run-7") and len(steps) == 2, steps
    assert steps[1].startswith("pushed 2 file(s)"), steps
    assert_no_secret(mesh_sandbox, done.stdout + done.stderr)


def test_push_artifacts_positional_parameters_identity_from_files(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    tree = model_tree(tmp_path)
    store = mesh_sandbox.service("artifacts")
    params = [str(tree), "--to", f"{store['url']}/jobs/run-8", "--server-identity", store["identity"],
              *material_params(mesh_sandbox)]
    done = run_task("meshclient-push-artifacts", params, bare_env())
    assert done.returncode == 0, done.stdout + done.stderr
    stored = stored_artifacts(mesh_sandbox, "jobs/run-8")
    assert (stored / "weights" / "w.bin").read_bytes() == (tree / "weights" / "w.bin").read_bytes()


def test_push_artifacts_to_a_server_with_another_identity_stores_nothing(mesh_sandbox: Sandbox,
                                                                        tmp_path: Path) -> None:
    tree = model_tree(tmp_path)
    store = mesh_sandbox.service("artifacts")
    wrong = "store.ml-serving.serviceaccount.identity.linkerd.cluster.local"
    done = run_task("meshclient-push-artifacts", named(path=str(tree), to=f"{store['url']}/jobs/run-9",
                                                        server_identity=wrong), mesh_env(mesh_sandbox))
    assert done.returncode == 1, done.stdout + done.stderr
    error = done.stderr.splitlines()
    assert error[0].startswith("meshclient: error: TLS handshake") and f"expecting '{wrong}'" in error[0], error
    assert error[1].startswith("  fix: ") and "server_identity" in error[1], error  # the proxy refused that name
    assert not stored_artifacts(mesh_sandbox, "jobs/run-9").exists()


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
        ("meshclient-push-artifacts", named(to=sink["url"], server_identity=sink["identity"]), "--path"),
        ("meshclient-push-results", named(to=sink["url"], server_identity=sink["identity"], dataset="d"), "--file"),
        ("meshclient-push-results", named(table="t", to=sink["url"], dataset="d"), "--server-identity"),
        ("meshclient-score-table", named(table="t", endpoint=sink["url"], server_identity=sink["identity"]),
         "--output-table"),
    ]:
        done = run_task(name, params, mesh_env(mesh_sandbox))
        assert done.returncode == 2, (name, done.stdout, done.stderr)
        (last,) = [ln for ln in done.stderr.splitlines() if ": error:" in ln]
        assert last.startswith(f"{name}: error:") and wanted in last, (name, done.stderr)
        assert done.stdout == "", (name, done.stdout)  # nothing was started


def test_a_wrong_server_identity_fails_and_stores_nothing(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    path = tmp_path / "scores.parquet"
    pq.write_table(pa.table({"id": [1, 2, 3]}), path)
    sink = mesh_sandbox.service("results")
    wrong = "scorer.ml-serving.serviceaccount.identity.linkerd.cluster.local"
    done = run_task("meshclient-push-results", named(file=str(path), to=sink["url"], server_identity=wrong,
                                                      dataset="job-wrong"), mesh_env(mesh_sandbox))
    assert done.returncode == 1, done.stdout + done.stderr
    error = done.stderr.splitlines()
    assert error[0].startswith("meshclient: error: TLS handshake") and f"expecting '{wrong}'" in error[0], error
    assert error[1].startswith("  fix: ") and "server_identity" in error[1], error  # the proxy refused that name
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


def hive_env(env: dict[str, str], where: Path) -> dict[str, str]:
    """Spark with a persistent catalog (Hive metastore in Derby under ``where``), so that a table one
    task writes is there for the next task, as the bundle's score and push_results tasks share a table."""
    conf = {"spark.sql.catalogImplementation": "hive", "spark.sql.warehouse.dir": str(where / "warehouse"),
            "spark.ui.enabled": "false"}
    args = " ".join(f"--conf {k}={v}" for k, v in conf.items())
    return {**env, "PYSPARK_SUBMIT_ARGS": f"{args} --driver-java-options -Dderby.system.home={where} pyspark-shell"}


@pytest.mark.spark
def test_score_a_table_then_push_it_exactly_once_as_wheel_tasks(scoring_mesh: Sandbox, tmp_path: Path) -> None:
    """The bundle's two wheel tasks: score into a table (positional parameters), push that table to the
    results receiver (named parameters), the push re-run as a retried task would be."""
    from meshclient_sandbox.apps.model_servers import local_predictions

    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = 2000
    features = {n: [round(4.0 + ((i * (k + 3)) % 37) / 10, 1) for i in range(rows)] for k, n in enumerate(names)}
    source = tmp_path / "features.parquet"
    pq.write_table(pa.table({"id": list(range(rows)), **features}), source)
    svc, sink = scoring_mesh.service("mlflow-scoring"), scoring_mesh.service("results")
    env = hive_env(mesh_env(scoring_mesh), tmp_path)
    done = run_task("meshclient-score-table", ["--input-path", str(source), "--endpoint", svc["url"],
                                               "--server-identity", svc["identity"], "--input-cols", ",".join(names),
                                               "--output-table", "fraud_scores", "--mode", "overwrite",
                                               "--batch-size", "500"], env, cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    steps = done.stdout.splitlines()
    assert steps[0].startswith("identity: notebook.ml-team.") and steps[1].startswith(f"scoring {source} against")
    assert steps[-1].startswith(f"wrote fraud_scores: {rows} rows"), steps
    scored = pq.read_table(tmp_path / "warehouse" / "fraud_scores").to_pandas().sort_values("id")
    expected = local_predictions("mlflow", scoring_mesh.workdir, scored[names].reset_index(drop=True))
    assert scored["prediction"].tolist() == expected["prediction"].tolist()

    params = named(table="fraud_scores", to=sink["url"], server_identity=sink["identity"], dataset="job-scores",
                   job="nightly-1")
    for _ in range(2):  # the task re-run with the same job id commits nothing again
        done = run_task("meshclient-push-results", params, env, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr[-3000:]
    assert "already committed by an earlier run" in done.stdout
    manifest = json.loads((scoring_mesh.workdir / "data" / "results" / "datasets" / "job-scores" /
                           "manifest.json").read_text())
    assert list(manifest["jobs"]) == ["nightly-1"] and manifest["version"] == 1
    with MeshClient(scoring_mesh.client_credentials()) as client:
        pushed = results.read(client, url=sink["url"], server_identity=sink["identity"], dataset="job-scores")
    assert sorted(pushed["id"].to_pylist()) == list(range(rows))
    assert dict(zip(pushed["id"].to_pylist(), pushed["prediction"].to_pylist(), strict=True)) == \
        dict(zip(scored["id"], scored["prediction"], strict=True))
