"""Every notebook in notebooks/ runs, cell by cell, against the sandbox mesh, as it would on a
cluster: ``dbutils.secrets`` read the workspace emulator through databricks-sdk, widgets get the
sandbox's URLs and identities, ``spark`` is a local session. After each, the server side is
checked (what the services saw, what they store), not only that no cell raised.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from meshclient_sandbox.notebook_runner import Cell, NotebookDbutils, NotebookRunner, run_notebook
from meshclient_sandbox.runner import Sandbox

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
pytestmark = [  # pyspark 4 on pandas 3: noise about pandas support, not about the notebooks
    pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning"),
    pytest.mark.filterwarnings("ignore:The copy keyword is deprecated"),
]


def dbutils_for(sandbox: Sandbox, **widgets: str) -> NotebookDbutils:
    ws = sandbox.info["workspace"]
    return NotebookDbutils.for_workspace(ws["host"], ws["token"], widgets)


def run(name: str, sandbox: Sandbox, widgets: dict[str, str], *, spark: Any = None,
        before_cell: Any = None, databricks_runtime: bool = True) -> NotebookRunner:
    dbutils = dbutils_for(sandbox, **widgets)
    assert sandbox.workspace is not None
    api_requests = sandbox.workspace.api_requests
    runner = run_notebook(NOTEBOOKS / name, dbutils, spark=spark, before_cell=before_cell,
                          databricks_runtime=databricks_runtime)
    if databricks_runtime:  # the identity came from the secret scope through dbutils, as on a cluster
        assert (sandbox.info["workspace"]["secret_scope"], "tls.key") in dbutils.secrets.reads
    else:  # through databricks-sdk, from the same workspace
        assert sandbox.workspace.api_requests - api_requests >= 3
    return runner


def service_widgets(sandbox: Sandbox, name: str, prefix: str = "service") -> dict[str, str]:
    svc = sandbox.service(name)
    return {f"{prefix}_url": svc["url"], f"{prefix}_identity": svc["identity"]}


def test_01_quickstart(notebook_sandbox: Sandbox, capsys: pytest.CaptureFixture[str]) -> None:
    proxy = notebook_sandbox.proxies["echo"]
    before = proxy.stats.requests
    runner = run("01_quickstart.py", notebook_sandbox, {**service_widgets(notebook_sandbox, "echo"),
                                                        "secret_scope": "ml-mesh"})
    out = capsys.readouterr().out
    ns = runner.namespace
    client_id = notebook_sandbox.info["client"]["identity"]
    assert str(ns["creds"].identity) == client_id
    assert "[FAIL]" not in out and "[ok]" in out  # doctor ran, every check passed
    report = ns["report"]  # meshclient.doctor()'s value: the secret reads, the material, the live peer
    assert report.ok and {"secret", "identity", "handshake", "request"} <= {c.name for c in report.checks}
    # the echo service saw the notebook's verified identity: doctor's GET and the first request
    assert ns["resp"].json()["client_id"] == client_id
    assert proxy.stats.requests - before == 2
    first, refused = ns["events"]
    assert first.verified_server_identity == notebook_sandbox.service("echo")["identity"] and first.status == 200
    assert refused.outcome in ("tls_error", "server_identity_mismatch") and refused.status is None
    assert "refused, as it must be" in out


@pytest.mark.spark
def test_02_spark_executors(notebook_sandbox: Sandbox, spark: Any) -> None:
    spark.range(0, 1000).selectExpr("id AS transaction_id", "CAST(id % 97 AS double) * 1.5 AS amount",
                                    "IF(id % 3 = 0, 'NL', 'DE') AS country") \
        .repartition(4).createOrReplaceTempView("nb_transactions")
    proxy = notebook_sandbox.proxies["echo"]
    before = proxy.stats.requests
    runner = run("02_spark_executors.py", notebook_sandbox,
                 {**service_widgets(notebook_sandbox, "echo"), "table": "nb_transactions", "path": "/v1/enrich",
                  "allow": "*.ml-platform.serviceaccount.identity.linkerd.cluster.local"}, spark=spark)
    summary = runner.namespace["summary"]
    assert len(summary) == 4 and summary["rows"].sum() == 1000
    assert runner.namespace["mesh"].mode == "broadcast"
    # the server side: one request per partition reached the echo app; the refused call never left the executor
    assert proxy.stats.requests - before == 4
    assert list(runner.namespace["outcomes"]["outcome"]) == ["EgressDeniedError"]


def _needs(service: str) -> None:
    from notebook_env import optional_services

    missing = optional_services()[service]
    if missing:
        pytest.skip(missing)


def _get_json(url: str) -> Any:
    import json
    import urllib.request

    with urllib.request.urlopen(url, timeout=30) as resp:  # the app's own loopback port, behind the proxy
        return json.loads(resp.read())


@pytest.mark.slow
def test_03_push_model_and_track_run(notebook_sandbox: Sandbox) -> None:
    _needs("mlflow")
    widgets = {**service_widgets(notebook_sandbox, "artifacts", "artifacts"),
               **service_widgets(notebook_sandbox, "mlflow", "mlflow"),
               "experiment": "fraud-notebook-test", "model_version": "7"}
    # MLflow reaches into the driver's py4j entry point once it sees DATABRICKS_RUNTIME_VERSION:
    # this one runs as on a laptop (the identity read through databricks-sdk from the same scope)
    runner = run("03_push_model_and_track_run.py", notebook_sandbox, widgets, databricks_runtime=False)
    ns = runner.namespace
    # the artifact store holds the pushed model byte for byte, manifest last
    store = notebook_sandbox.workdir / "data" / "artifacts" / "files" / "models" / "fraud" / "7"
    model_dir = Path(ns["model_dir"])
    local = {p.relative_to(model_dir).as_posix(): p.read_bytes() for p in model_dir.rglob("*") if p.is_file()}
    stored = {p.relative_to(store).as_posix(): p.read_bytes() for p in store.rglob("*") if p.is_file()}
    assert stored.pop(".meshclient-manifest.json") and stored == local and "MLmodel" in stored
    assert ns["report"].files == len(local)
    # the MLflow server has the run, its params and metrics, and the model's files
    mlflow_app = notebook_sandbox.apps["mlflow"]
    got = _get_json(f"{mlflow_app.url}/api/2.0/mlflow/runs/get?run_id={ns['run_id']}")["run"]  # type: ignore[attr-defined]
    params = {p["key"]: p["value"] for p in got["data"]["params"]}
    metrics = {m["key"] for m in got["data"]["metrics"]}
    assert params["model"] == "LogisticRegression" and {"train_accuracy", "accuracy_by_C"} <= metrics
    artifacts_dir = mlflow_app.artifacts_dir  # type: ignore[attr-defined]
    assert list(artifacts_dir.rglob("pushed-model-sha256.json")) and list(artifacts_dir.rglob("MLmodel"))
    # every MLflow call went over the mesh to the verified identity
    mlflow_id = notebook_sandbox.service("mlflow")["identity"]
    assert {e.verified_server_identity for e in ns["events"] if e.server_identity == mlflow_id} == {mlflow_id}


IRIS_COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]


@pytest.mark.spark
@pytest.mark.slow
def test_04_score_spark_table(notebook_sandbox: Sandbox, spark: Any) -> None:
    _needs("mlflow-scoring")
    from collections import Counter

    from sklearn.datasets import load_iris

    from meshclient_sandbox.apps.model_servers import local_predictions

    iris = load_iris(as_frame=True).frame.iloc[:, :4]
    iris.columns = IRIS_COLUMNS
    spark.createDataFrame(iris).repartition(3).createOrReplaceTempView("nb_iris")
    relay = notebook_sandbox.apps["mlflow-scoring"]
    relay.reset()  # type: ignore[attr-defined]
    svc = notebook_sandbox.service("mlflow-scoring")
    runner = run("04_score_spark_table.py", notebook_sandbox,
                 {"model_url": svc["url"], "model_identity": svc["identity"], "table": "nb_iris",
                  "protocol": "mlflow", "batch_size": "20", "output_table": "nb_iris_scores"}, spark=spark)
    # the server side: every row of the table was scored exactly once (the summaries read the cache)
    expected = Counter(tuple(float(v) for v in row) for row in iris.itertuples(index=False))
    assert relay.scored_rows == expected  # type: ignore[attr-defined]
    assert runner.namespace["stats"].rows == len(iris) and relay.max_in_flight <= 2  # type: ignore[attr-defined]
    # and the scores are the model's own predictions, row for row
    scores = spark.table("nb_iris_scores").toPandas().sort_values(IRIS_COLUMNS, ignore_index=True)
    truth = iris.assign(prediction=local_predictions("mlflow", notebook_sandbox.workdir, iris)["prediction"])
    truth = truth.sort_values(IRIS_COLUMNS, ignore_index=True)
    assert scores["prediction"].tolist() == truth["prediction"].tolist()
    summary = runner.namespace["summary"]
    assert summary["rows"][0] == len(iris) and summary["missing"][0] == 0
    (score_event,) = runner.namespace["score_events"].to_dict("records")
    assert score_event["rows"] == len(iris) and score_event["outcome"] == "ok"


def _manifest(sandbox: Sandbox, dataset: str) -> dict[str, Any]:
    import json

    return dict(json.loads((sandbox.workdir / "data" / "results" / "datasets" / dataset / "manifest.json").read_text()))


@pytest.mark.spark
@pytest.mark.slow
def test_05_write_results_exactly_once(notebook_sandbox: Sandbox, spark: Any, tmp_path: Path) -> None:
    pytest.importorskip("pyspark.sql.datasource", reason="the streaming writer is the Spark >= 4.0 data source")
    from meshclient import results

    spark.range(0, 500).selectExpr("id AS transaction_id", "CAST(id % 89 AS double) / 89 AS fraud_score") \
        .repartition(3).createOrReplaceTempView("nb_scores_today")
    incoming = tmp_path / "incoming"
    for i in range(3):  # three files arrive: three micro-batches
        spark.range(1000 + 100 * i, 1100 + 100 * i).selectExpr("id AS transaction_id", "0.5 AS fraud_score") \
            .coalesce(1).write.parquet(str(incoming / f"part-{i}"))
        for f in (incoming / f"part-{i}").glob("part-*.parquet"):
            f.rename(incoming / f"file-{i}.parquet")
    sink = notebook_sandbox.service("results")
    runner = run("05_write_results_exactly_once.py", notebook_sandbox,
                 {"results_url": sink["url"], "results_identity": sink["identity"], "table": "nb_scores_today",
                  "dataset": "nb-batch", "job": "nb-batch-run-1", "stream_source": str(incoming),
                  "stream_dataset": "nb-stream", "checkpoint": str(tmp_path / "checkpoint")}, spark=spark)
    ns = runner.namespace
    assert ns["after"] == ns["before"] and ns["again"].job == "nb-batch-run-1"
    # the receiver's side: the batch job committed once, each row once
    batch = _manifest(notebook_sandbox, "nb-batch")
    assert list(batch["jobs"]) == ["nb-batch-run-1"] and batch["version"] == 1
    with runner_client(notebook_sandbox) as client:
        ids = results.read(client, url=sink["url"], server_identity=sink["identity"], dataset="nb-batch") \
            .column("transaction_id").to_pylist()
        assert sorted(ids) == list(range(500))
        stream_ids = results.read(client, url=sink["url"], server_identity=sink["identity"], dataset="nb-stream") \
            .column("transaction_id").to_pylist()
    assert sorted(stream_ids) == list(range(1000, 1300))
    stream = _manifest(notebook_sandbox, "nb-stream")
    assert len(stream["jobs"]) == 3 and all(".b" in job for job in stream["jobs"])
    assert ns["progress"]["rows"].sum() == 300


def runner_client(sandbox: Sandbox) -> Any:
    from meshclient import MeshClient

    return MeshClient(sandbox.client_credentials())


@pytest.mark.slow
def test_06_rotation_and_tokens(notebook_sandbox: Sandbox) -> None:
    import threading

    from notebook_env import TOKEN_LIFETIME

    from meshclient_sandbox.runner import CLIENT_IDENTITY

    ws, pki, issuer = notebook_sandbox.workspace, notebook_sandbox.pki, notebook_sandbox.issuer
    assert ws is not None and pki is not None and issuer is not None
    scope, oidc = notebook_sandbox.info["workspace"]["secret_scope"], notebook_sandbox.info["oidc"]
    ws.put_secret(scope, "oidc-client-secret", oidc["client_secret"])  # the platform team's part
    old_key = ws.get_secret_bytes(scope, "tls.key")
    rotated = threading.Event()

    def rotate() -> None:  # the platform team rotates the identity in the scope while the job runs
        leaf = pki.issue(CLIENT_IDENTITY)
        ws.seed_mesh_identity(scope, leaf.chain_pem, leaf.key_pem, pki.trust_anchors_pem)
        rotated.set()

    timers: list[threading.Timer] = []

    def before_cell(cell: Cell, namespace: dict[str, Any]) -> None:
        if "while time.monotonic() - started < RUN_SECONDS" in cell.source:
            timers.append(threading.Timer(3.0, rotate))
            timers[-1].start()

    proxy = notebook_sandbox.proxies["echo"]
    connections, denied, issued = proxy.stats.connections, proxy.stats.denied, issuer.tokens_issued
    run_seconds = 2.5 * TOKEN_LIFETIME
    try:
        runner = run("06_rotation_and_tokens.py", notebook_sandbox,
                     {**service_widgets(notebook_sandbox, "echo"), "token_url": oidc["token_url"],
                      "client_id": oidc["client_id"], "audience": oidc["audience"], "poll_seconds": "1",
                      "run_seconds": str(run_seconds)}, before_cell=before_cell)
    finally:
        for timer in timers:
            timer.cancel()
    assert rotated.is_set() and ws.get_secret_bytes(scope, "tls.key") != old_key
    ns = runner.namespace
    timeline = ns["timeline"]
    assert (timeline["status"] == 200).all() and len(timeline) > 10
    assert ns["status"].rotations == 1 and ns["status"].healthy
    assert timeline["certificate"].nunique() == 2 and timeline["token"].nunique() >= 2
    # the server side: a new connection for the new certificate, tokens issued as they expired, no denial
    assert proxy.stats.connections - connections >= 2 and proxy.stats.denied == denied
    assert issuer.tokens_issued - issued >= 2
    assert set(ns["audit"]["token_subject"]) == {oidc["client_id"]}
