"""``meshclient.scoring.score`` against the real MLflow scoring server and KServe model server,
each behind the sandbox's inbound proxy (mTLS, Linkerd identities): predictions equal the
model's own; 503s are retried with no row lost or scored twice (counted at the server's side);
a wrong server identity is refused before any row leaves."""

from __future__ import annotations

import pytest

pd = pytest.importorskip("pandas")
np = pytest.importorskip("numpy")

from meshclient import MeshClient  # noqa: E402
from meshclient.errors import ScoringError  # noqa: E402
from meshclient.scoring import ScoringStats, score  # noqa: E402
from meshclient_sandbox.apps.model_servers import ScoringRelay, local_predictions  # noqa: E402
from meshclient_sandbox.runner import CLIENT_IDENTITY, Sandbox  # noqa: E402

COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
WRONG_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"


def features(n: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    lows, highs = np.array([4.3, 2.0, 1.0, 0.1]), np.array([7.9, 4.4, 6.9, 2.5])
    return pd.DataFrame(rng.uniform(lows, highs, size=(n, 4)), columns=COLUMNS)


@pytest.fixture
def client(model_sandbox: Sandbox) -> MeshClient:
    with MeshClient(model_sandbox.client_credentials()) as c:
        yield c


def relay(sandbox: Sandbox, name: str) -> ScoringRelay:
    app = sandbox.apps[name]
    assert isinstance(app, ScoringRelay)
    app.reset()
    app.fail_every = 0
    return app


def test_mlflow_predictions_equal_the_models_own(model_sandbox: Sandbox, client: MeshClient) -> None:
    svc = model_sandbox.service("mlflow-scoring")
    pdf = features(5000)
    pdf.index = pd.RangeIndex(100, 5100)  # predictions follow the input's index
    stats = ScoringStats()
    server = relay(model_sandbox, "mlflow-scoring")
    got = score(client, pdf, endpoint=svc["url"], server_identity=svc["identity"], protocol="mlflow",
                batch_size=700, stats=stats)
    expected = local_predictions("mlflow", model_sandbox.workdir, pdf)["prediction"]
    assert list(got.index) == list(pdf.index)
    assert got.tolist() == expected.tolist()
    assert (stats.rows, stats.requests, stats.retries) == (5000, 8, 0)
    assert server.requests == 8 and sum(server.scored_rows.values()) == 5000
    assert server.client_ids == {CLIENT_IDENTITY: 8}  # the proxy verified who scored


def test_mlflow_parquet_bodies_give_the_same_predictions(model_sandbox: Sandbox, client: MeshClient) -> None:
    svc = model_sandbox.service("mlflow-scoring")
    pdf = features(3000, seed=9)
    server = relay(model_sandbox, "mlflow-scoring")
    got = score(client, pdf, endpoint=svc["url"], server_identity=svc["identity"], batch_size=1000,
                body_format="parquet")
    assert got.tolist() == local_predictions("mlflow", model_sandbox.workdir, pdf)["prediction"].tolist()
    assert server.requests == 3
    with pytest.raises(ScoringError, match="params only with JSON"):
        score(client, pdf, endpoint=svc["url"], server_identity=svc["identity"], body_format="parquet",
              params={"k": 1})


def test_mlflow_batches_split_by_bytes(model_sandbox: Sandbox, client: MeshClient) -> None:
    svc = model_sandbox.service("mlflow-scoring")
    pdf = features(1000, seed=3)
    server = relay(model_sandbox, "mlflow-scoring")
    got = score(client, pdf, endpoint=svc["url"], server_identity=svc["identity"], batch_size=1000,
                max_batch_bytes=20_000)
    assert len(got) == 1000
    assert server.requests > 1000 * 80 // 20_000  # each row is ~80 bytes of JSON
    assert sum(server.scored_rows.values()) == 1000


def test_kserve_v2_binary_and_json_equal_the_models_own(model_sandbox: Sandbox, client: MeshClient) -> None:
    svc = model_sandbox.service("kserve")
    pdf = features(3000, seed=11)
    expected = local_predictions("kserve", model_sandbox.workdir, pdf)
    for binary in (True, False):
        server = relay(model_sandbox, "kserve")
        got = score(client, pdf, endpoint=svc["url"], server_identity=svc["identity"], protocol="v2", model="iris",
                    batch_size=1000, binary=binary)
        assert list(got.columns) == ["label", "proba"]  # two outputs, named by the server
        assert got["label"].tolist() == expected["label"].tolist()
        assert got["proba"].tolist() == expected["proba"].tolist()
        assert server.requests == 3 and sum(server.scored_rows.values()) == 3000


def test_503s_are_retried_without_losing_or_duplicating_rows(model_sandbox: Sandbox, client: MeshClient) -> None:
    svc = model_sandbox.service("mlflow-scoring")
    pdf = features(6000, seed=5)
    server = relay(model_sandbox, "mlflow-scoring")
    server.fail_every = 3
    stats = ScoringStats()
    got = score(client, pdf, endpoint=svc["url"], server_identity=svc["identity"], batch_size=200,
                max_in_flight=4, stats=stats)
    assert server.faults > 0 and stats.retries == server.faults
    assert len(got) == 6000 and got.notna().all()
    rows = [tuple(r) for r in pdf.itertuples(index=False)]
    assert server.scored_rows == {r: 1 for r in rows}  # every row scored exactly once, server side
    assert got.tolist() == local_predictions("mlflow", model_sandbox.workdir, pdf)["prediction"].tolist()


def test_opting_out_of_idempotency_sends_once(model_sandbox: Sandbox, client: MeshClient) -> None:
    svc = model_sandbox.service("mlflow-scoring")
    server = relay(model_sandbox, "mlflow-scoring")
    server.fail_every = 1  # every first attempt of every request fails
    with pytest.raises(ScoringError) as info:
        score(client, features(10), endpoint=svc["url"], server_identity=svc["identity"], batch_size=5,
              idempotent=False)
    assert info.value.rows == (0, 5) and info.value.status == 503
    assert "rows 0-4" in str(info.value) and "injected fault" in str(info.value)
    assert "sent once" in str(info.value)
    assert server.faults == 1 and server.requests == 0  # sent once, not retried
    server.reset()
    stats = ScoringStats()
    got = score(client, features(10), endpoint=svc["url"], server_identity=svc["identity"], batch_size=5, stats=stats)
    assert len(got) == 10 and server.faults == 2 and stats.retries == 2


def test_wrong_server_identity_is_refused(model_sandbox: Sandbox, client: MeshClient) -> None:
    svc = model_sandbox.service("mlflow-scoring")
    server = relay(model_sandbox, "mlflow-scoring")
    with pytest.raises(ScoringError, match="TLSHandshakeError|ServerIdentityError") as info:
        score(client, features(10), endpoint=svc["url"], server_identity=WRONG_ID)
    assert info.value.rows == (0, 10)
    assert type(info.value.__cause__).__name__ in ("TLSHandshakeError", "ServerIdentityError")
    assert server.requests == 0 and not server.scored_rows


def test_a_client_outside_the_policy_is_refused(model_sandbox: Sandbox) -> None:
    svc = model_sandbox.service("mlflow-scoring")
    server = relay(model_sandbox, "mlflow-scoring")
    with MeshClient(model_sandbox.client_credentials("outsider")) as outsider, \
            pytest.raises(ScoringError, match="403") as info:
        score(outsider, features(10), endpoint=svc["url"], server_identity=svc["identity"])
    assert info.value.rows == (0, 10)
    assert server.requests == 0 and not server.client_ids


def test_server_errors_name_the_rows_and_the_servers_message(model_sandbox: Sandbox, client: MeshClient) -> None:
    svc = model_sandbox.service("mlflow-scoring")
    bad = features(30).rename(columns={"petal_width": "wingspan"})
    with pytest.raises(ScoringError) as info:
        score(client, bad, endpoint=svc["url"], server_identity=svc["identity"], batch_size=10)
    assert info.value.rows == (0, 10) and info.value.status == 400
    assert "rows 0-9" in str(info.value) and "petal_width" in str(info.value)


def test_v2_unknown_model_says_so(model_sandbox: Sandbox, client: MeshClient) -> None:
    svc = model_sandbox.service("kserve")
    with pytest.raises(ScoringError, match="HTTP 404"):
        score(client, features(3), endpoint=svc["url"], server_identity=svc["identity"], protocol="v2",
              model="nope", use_metadata=False)
