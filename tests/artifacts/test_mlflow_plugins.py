"""The MLflow user story through ``mesh+https``: a real ``mlflow server`` behind the sandbox's inbound proxy.

Tracking (experiment, run, params, metrics), ``log_artifacts`` of a 200-file tree,
``mlflow.pyfunc.log_model`` of an sklearn model, ``load_model("runs:/...")`` and predict, the
model registry, ``download_artifacts`` — no MLflow setting but the URI and the mesh identity.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from artifact_helpers import OTHER_ID, needs_mlflow, tree_bytes

import meshclient.mlflow as mesh_mlflow
from meshclient import MeshClient
from meshclient_sandbox.runner import Sandbox

pytestmark = [needs_mlflow, pytest.mark.slow]

mlflow = pytest.importorskip("mlflow")
pyfunc = pytest.importorskip("mlflow.pyfunc")


class SklearnWrapper(pyfunc.PythonModel):  # type: ignore[misc]
    """A pyfunc model around a fitted sklearn estimator."""

    def __init__(self, estimator: Any) -> None:
        self.estimator = estimator

    def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]  # no hints: MLflow infers none
        return self.estimator.predict(model_input)


def _uri(svc: dict[str, Any], identity: str | None = None) -> str:
    return f"mesh+https://{svc['url'].removeprefix('https://')}?server_identity={identity or svc['identity']}"


@pytest.fixture
def mesh_mlflow_client(mlflow_sandbox: Sandbox) -> Iterator[MeshClient]:
    events: list[Any] = []
    client = MeshClient(mlflow_sandbox.client_credentials(), audit=events.append)
    client.events = events  # type: ignore[attr-defined]
    mesh_mlflow.use(client)
    try:
        yield client
    finally:
        mesh_mlflow.use(None)
        mlflow.set_tracking_uri(None)
        client.close()


def _model_tree(root: Path) -> Path:
    """200 files in nested folders (mixed sizes, some empty, non-ASCII names)."""
    for i in range(200):
        path = root / f"part-{i % 7}" / ("é" if i % 3 == 0 else "x") / f"file-{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"" if i % 50 == 0 else os.urandom(97 * (i % 13) + 1))
    return root


def _log_model(model: Any) -> Any:
    try:
        return pyfunc.log_model(name="model", python_model=SklearnWrapper(model))
    except TypeError:  # MLflow 2.x: artifact_path=
        return pyfunc.log_model(artifact_path="model", python_model=SklearnWrapper(model))


def test_the_mlflow_user_story_through_mesh_https(mlflow_sandbox: Sandbox, mesh_mlflow_client: MeshClient,
                                                  tmp_path: Path) -> None:
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    svc = mlflow_sandbox.service("mlflow")
    uri = _uri(svc)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    exp_id = mlflow.create_experiment(f"fraud-{tmp_path.name}")
    tree = _model_tree(tmp_path / "tree")
    rng = np.random.default_rng(7)
    X = rng.normal(size=(60, 3))
    y = (X[:, 0] + X[:, 1] > 0).astype(int)
    model = LogisticRegression().fit(X, y)
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_param("C", 1.0)
        mlflow.log_metric("auc", 0.91, step=1)
        mlflow.log_artifacts(str(tree), artifact_path="data")
        info = _log_model(model)
    run_id = run.info.run_id

    # tracking, read back through the mesh
    got = mlflow.get_run(run_id)
    assert got.data.params == {"C": "1.0"} and got.data.metrics == {"auc": 0.91}
    assert got.info.artifact_uri.startswith("mlflow-artifacts:")  # resolved through the mesh below

    # server side: the artifact proxy stored the 200 files byte for byte
    run_dir = mlflow_sandbox.apps["mlflow"].artifacts_dir / exp_id / run_id / "artifacts"  # type: ignore[attr-defined]
    assert tree_bytes(run_dir / "data") == tree_bytes(tree)

    # the model: load through runs:/ and predict
    loaded = pyfunc.load_model(f"runs:/{run_id}/model")
    assert list(loaded.predict(X)) == list(model.predict(X))
    assert info.model_uri

    # the registry over the same URI
    version = mlflow.register_model(f"runs:/{run_id}/model", f"fraud-{tmp_path.name}")
    assert int(version.version) == 1

    # download_artifacts gives the tree back, byte-identical
    local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="data", dst_path=str(tmp_path / "dl"))
    assert tree_bytes(Path(local)) == tree_bytes(tree)

    # every request went over mTLS to the verified MLflow identity (audit events of the mesh client)
    events = mesh_mlflow_client.events  # type: ignore[attr-defined]
    assert len(events) > 200
    assert {e.verified_server_identity for e in events if e.status is not None} == {svc["identity"]}
    assert sum(1 for e in events if e.method == "PUT" and "/data/" in e.url) == 200


def test_no_identity_is_a_clear_error_never_plain_https(mlflow_sandbox: Sandbox,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MESHCLIENT_CERT", "MESHCLIENT_KEY", "MESHCLIENT_TRUST_ANCHORS", "MESHCLIENT_SECRET_SCOPE"):
        monkeypatch.delenv(name, raising=False)
    mesh_mlflow.use(None)
    from mlflow.tracking import MlflowClient

    with pytest.raises(Exception) as info:
        MlflowClient(tracking_uri=_uri(mlflow_sandbox.service("mlflow"))).search_experiments()
    assert "no mesh identity" in str(info.value) and "use(client)" in str(info.value)


def test_identity_from_the_environment(mlflow_sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    client = mlflow_sandbox.info["client"]
    monkeypatch.setenv("MESHCLIENT_CERT", client["cert"])
    monkeypatch.setenv("MESHCLIENT_KEY", client["key"])
    monkeypatch.setenv("MESHCLIENT_TRUST_ANCHORS", mlflow_sandbox.info["trust_anchors"])
    mesh_mlflow.use(None)
    from mlflow.tracking import MlflowClient

    exps = MlflowClient(tracking_uri=_uri(mlflow_sandbox.service("mlflow"))).search_experiments()
    assert any(e.name == "Default" for e in exps)


def test_wrong_server_identity_is_refused(mlflow_sandbox: Sandbox, mesh_mlflow_client: MeshClient) -> None:
    from mlflow.tracking import MlflowClient

    svc = mlflow_sandbox.service("mlflow")
    with pytest.raises(Exception) as info:
        MlflowClient(tracking_uri=_uri(svc, OTHER_ID)).search_experiments()
    assert OTHER_ID in str(info.value)
    events = mesh_mlflow_client.events  # type: ignore[attr-defined]
    assert events and all(e.status is None for e in events)  # refused in the handshake: no answer, no request
