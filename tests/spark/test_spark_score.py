"""``meshclient.spark.score`` in a local Spark job against the real MLflow scoring server and
KServe model server behind the sandbox's inbound proxy: tens of thousands of rows over several
partitions, predictions equal the models' own; 503s retried with every row scored exactly once
(counted at the server's side); the per-executor bound on requests in flight seen by the
server; ``on_error="null"``; a wrong identity refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")

import meshclient.spark as mspark  # noqa: E402
from meshclient import MeshClient  # noqa: E402
from meshclient.errors import ScoringError  # noqa: E402
from meshclient_sandbox.apps.model_servers import ScoringRelay, local_predictions, venv_python  # noqa: E402
from meshclient_sandbox.runner import Sandbox, SandboxSettings  # noqa: E402

pytestmark = pytest.mark.spark

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
WRONG_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
ROWS = 30_000


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    missing = [k for k in ("mlflow", "kserve") if venv_python(k) is None]
    if missing:
        pytest.skip(f"model server venvs missing: {', '.join(missing)} (make model-servers)")
    settings = SandboxSettings(tmp_path_factory.mktemp("model-sandbox"), services=("mlflow-scoring", "kserve"))
    with Sandbox(settings) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def client(models: Sandbox) -> Iterator[MeshClient]:
    with MeshClient(models.client_credentials()) as c:
        yield c


@pytest.fixture(scope="module")
def table(models: Sandbox) -> Any:
    rng = np.random.default_rng(2026)
    lows, highs = np.array([4.3, 2.0, 1.0, 0.1]), np.array([7.9, 4.4, 6.9, 2.5])
    pdf = pd.DataFrame(rng.uniform(lows, highs, size=(ROWS, 4)), columns=COLUMNS)
    pdf.insert(0, "id", np.arange(ROWS, dtype="int64"))
    return pdf


@pytest.fixture(scope="module")
def expected_mlflow(models: Sandbox, table: Any) -> list[float]:
    return local_predictions("mlflow", models.workdir, table[COLUMNS])["prediction"].tolist()


def frame(spark_env: Any, pdf: Any, partitions: int = 6) -> Any:
    return spark_env.spark.createDataFrame(pdf).repartition(partitions, "id")


def relay(models: Sandbox, name: str) -> ScoringRelay:
    app = models.apps[name]
    assert isinstance(app, ScoringRelay)
    app.reset()
    app.fail_every, app.delay = 0, 0.0
    return app


def by_id(rows: Any, column: str) -> list[Any]:
    ordered = sorted(rows, key=lambda r: r["id"])
    assert [r["id"] for r in ordered] == list(range(len(ordered)))
    return [r[column] for r in ordered]


def test_mlflow_scores_every_row_once_and_equals_the_model(models: Sandbox, client: MeshClient, spark_env: Any,
                                                           table: Any, expected_mlflow: list[float]) -> None:
    svc = models.service("mlflow-scoring")
    server = relay(models, "mlflow-scoring")
    job = mspark.ScoringJob()
    scored = mspark.score(frame(spark_env, table), endpoint=svc["url"], server_identity=svc["identity"],
                          client=client, input_cols=COLUMNS, batch_size=500, max_in_flight=3, job=job)
    assert scored.schema["prediction"].dataType.simpleString() == "double"  # from a one-row sample
    server.reset()  # the driver's sample request is not part of the job
    rows = scored.select("id", "prediction").collect()
    assert by_id(rows, "prediction") == expected_mlflow
    stats = job.report()
    assert stats.rows == ROWS and stats.requests == server.requests and stats.retries == 0
    assert stats.p50 is not None and stats.p99 is not None and stats.p50 <= stats.p99
    assert sum(server.scored_rows.values()) == ROWS and set(server.scored_rows.values()) == {1}
    assert server.max_in_flight <= 3


def test_503s_are_retried_without_losing_or_duplicating_rows(models: Sandbox, client: MeshClient, spark_env: Any,
                                                             table: Any, expected_mlflow: list[float]) -> None:
    svc = models.service("mlflow-scoring")
    server = relay(models, "mlflow-scoring")
    job = mspark.ScoringJob()
    scored = mspark.score(frame(spark_env, table), endpoint=svc["url"], server_identity=svc["identity"],
                          client=client, input_cols=COLUMNS, batch_size=400, return_type="double", job=job)
    server.fail_every = 4
    rows = scored.select("id", "prediction").collect()
    assert by_id(rows, "prediction") == expected_mlflow
    assert server.faults > 0 and job.stats.retries == server.faults
    features = [tuple(r) for r in table[COLUMNS].itertuples(index=False)]
    assert server.scored_rows == {r: 1 for r in features}  # every row scored once at the server


def test_in_flight_requests_are_bounded_per_executor(models: Sandbox, client: MeshClient, spark_env: Any,
                                                     table: Any) -> None:
    svc = models.service("mlflow-scoring")
    pdf = table.head(4000)
    seen = {}
    for bound in (2, 6):
        server = relay(models, "mlflow-scoring")
        server.delay = 0.02  # long enough for requests of concurrent tasks and threads to overlap
        scored = mspark.score(frame(spark_env, pdf, 8), endpoint=svc["url"], server_identity=svc["identity"],
                              client=client, input_cols=COLUMNS, batch_size=100, max_in_flight=bound,
                              return_type="double")
        assert scored.count() == 4000 and scored.where("prediction is null").count() == 0
        seen[bound] = server.max_in_flight
    # two tasks at once, each with a pool of `bound` threads: only the host-wide slots keep it at 2
    assert seen[2] <= 2
    assert seen[6] > 2  # the same job with a higher bound does overlap more: the bound is what held it


def test_kserve_v2_struct_result_equals_the_model(models: Sandbox, client: MeshClient, spark_env: Any,
                                                  table: Any) -> None:
    svc = models.service("kserve")
    pdf = table.head(12_000)
    server = relay(models, "kserve")
    scored = mspark.score(frame(spark_env, pdf, 4), endpoint=svc["url"], server_identity=svc["identity"],
                          client=client, protocol="v2", model="iris", input_cols=COLUMNS, batch_size=1000,
                          output_col="iris")
    assert scored.schema["iris"].dataType.simpleString() == "struct<label:bigint,proba:array<double>>"
    rows = scored.select("id", "iris.label", "iris.proba").collect()
    expected = local_predictions("kserve", models.workdir, pdf[COLUMNS])
    assert by_id(rows, "label") == expected["label"].tolist()
    assert by_id(rows, "proba") == expected["proba"].tolist()
    assert sum(server.scored_rows.values()) == 12_000


def test_on_error_null_fills_rows_of_failed_batches(models: Sandbox, client: MeshClient, spark_env: Any,
                                                    table: Any, expected_mlflow: list[float]) -> None:
    svc = models.service("mlflow-scoring")
    pdf = table.head(5000)
    server = relay(models, "mlflow-scoring")
    job = mspark.ScoringJob()
    scored = mspark.score(frame(spark_env, pdf, 4), endpoint=svc["url"], server_identity=svc["identity"],
                          client=client, input_cols=COLUMNS, batch_size=250, return_type="double",
                          idempotent=False, on_error="null", job=job)
    server.fail_every = 3  # not retried: idempotent=False
    rows = sorted(scored.collect(), key=lambda r: r["id"])
    failed = [r for r in rows if r["prediction"] is None]
    assert server.faults > 0 and len(failed) == job.stats.failed_rows > 0
    assert all("HTTP 503" in r["prediction_error"] and "partition" in r["prediction_error"] for r in failed)
    for r in rows:
        if r["prediction"] is not None:
            assert r["prediction_error"] is None and r["prediction"] == expected_mlflow[r["id"]]


def test_wrong_server_identity_is_refused(models: Sandbox, client: MeshClient, spark_env: Any, table: Any) -> None:
    svc = models.service("mlflow-scoring")
    server = relay(models, "mlflow-scoring")
    with pytest.raises(ScoringError, match="TLSHandshakeError|ServerIdentityError"):
        mspark.score(frame(spark_env, table.head(100), 2), endpoint=svc["url"], server_identity=WRONG_ID,
                     client=client, input_cols=COLUMNS)  # the driver's sample is refused
    scored = mspark.score(frame(spark_env, table.head(100), 2), endpoint=svc["url"], server_identity=WRONG_ID,
                          client=client, input_cols=COLUMNS, return_type="double")
    with pytest.raises(Exception, match="TLSHandshakeError|ServerIdentityError"):
        scored.collect()  # executors refuse it too
    assert server.requests == 0


def test_job_figures_reach_the_audit_log(models: Sandbox, spark_env: Any, table: Any, tmp_path: Any) -> None:
    import json

    svc = models.service("mlflow-scoring")
    audit = tmp_path / "audit.jsonl"
    server = relay(models, "mlflow-scoring")
    with MeshClient(models.client_credentials(), audit=str(audit)) as audited:
        job = mspark.ScoringJob()
        scored = mspark.score(frame(spark_env, table.head(3000), 3), endpoint=svc["url"],
                              server_identity=svc["identity"], client=audited, input_cols=COLUMNS, batch_size=500,
                              return_type="double", job=job)
        assert job.stats.rows == 0  # lazy: nothing ran yet
        assert scored.count() == 3000
        job.report()
    events = [json.loads(line) for line in audit.read_text().splitlines()]
    posts = [e for e in events if e["method"] == "POST"]
    (summary,) = [e for e in events if e["method"] == "SCORE"]
    assert len(posts) == server.requests == summary["requests"] >= 6  # executors' request events too
    assert summary["rows"] == 3000 and summary["retries"] == 0 and summary["outcome"] == "ok"
    assert summary["p50_ms"] is not None and summary["p99_ms"] >= summary["p50_ms"]
    assert summary["url"].endswith("/invocations") and summary["server_identity"] == svc["identity"]
