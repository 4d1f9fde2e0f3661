"""``MeshArtifactRepository`` on its own: an MLflow artifact proxy and a PUT store that lists."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from artifact_helpers import make_tree, needs_mlflow, tree_bytes

import meshclient.mlflow as mesh_mlflow
from meshclient import MeshClient
from meshclient_sandbox.runner import Sandbox

pytestmark = needs_mlflow


@pytest.fixture
def repo_for(mlflow_sandbox: Sandbox) -> Iterator[Any]:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    client = MeshClient(mlflow_sandbox.client_credentials())
    mesh_mlflow.use(client)

    def make(service: str, path: str) -> Any:
        svc = mlflow_sandbox.service(service)
        return get_artifact_repository(
            f"mesh+https://{svc['url'].removeprefix('https://')}{path}?server_identity={svc['identity']}")

    try:
        yield make
    finally:
        mesh_mlflow.use(None)
        client.close()


def test_on_the_mlflow_artifact_proxy(repo_for: Any, mlflow_sandbox: Sandbox, tmp_path: Path) -> None:
    from meshclient.mlflow.artifact_repo import MeshArtifactRepository

    repo = repo_for("mlflow", "/api/2.0/mlflow-artifacts/artifacts/repo-test")
    assert isinstance(repo, MeshArtifactRepository) and repo.protocol == "mlflow"
    src = make_tree(tmp_path / "src", hash_names=False)
    repo.log_artifacts(str(src), artifact_path="tree")
    repo.log_artifact(str(src / "MLmodel"))
    top = {(f.path, f.is_dir) for f in repo.list_artifacts()}
    assert top == {("tree", True), ("MLmodel", False)}
    sizes = {f.path: f.file_size for f in repo.list_artifacts("tree/data")}
    assert sizes["tree/data/weights.bin"] == (src / "data" / "weights.bin").stat().st_size
    assert repo.list_artifacts("MLmodel") == []  # a file lists nothing, like MLflow's own repositories
    (tmp_path / "dl").mkdir()
    out = repo.download_artifacts("tree", dst_path=str(tmp_path / "dl"))
    assert tree_bytes(Path(out)) == tree_bytes(src)
    repo.delete_artifacts("tree")
    stored = mlflow_sandbox.apps["mlflow"].artifacts_dir / "repo-test"  # type: ignore[attr-defined]
    assert not (stored / "tree").exists() and (stored / "MLmodel").is_file()


def test_on_a_put_store_that_lists(repo_for: Any, mlflow_sandbox: Sandbox, tmp_path: Path) -> None:
    repo = repo_for("artifacts", f"/mlflow/{tmp_path.name}")
    assert repo.protocol == "put"
    src = make_tree(tmp_path / "src")
    repo.log_artifacts(str(src))
    names = {f.path for f in repo.list_artifacts()}
    assert {"MLmodel", "data", "données", "with space"} <= names
    (tmp_path / "dl").mkdir()
    out = repo.download_artifacts("", dst_path=str(tmp_path / "dl"))
    assert tree_bytes(Path(out)) == tree_bytes(src)
    stored = mlflow_sandbox.workdir / "data" / "artifacts" / "files" / "mlflow" / tmp_path.name
    assert tree_bytes(stored) == tree_bytes(src)  # no manifest in MLflow's artifact trees


def test_mlflow_artifacts_uris_stay_mlflows_own_for_http_tracking(mlflow_sandbox: Sandbox) -> None:
    import mlflow
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    mlflow.set_tracking_uri("http://127.0.0.1:5000")  # MLflow 2.x passes no tracking_uri= to the factory
    try:
        repo = get_artifact_repository("mlflow-artifacts:/1/abc/artifacts")
    finally:
        mlflow.set_tracking_uri(None)
    assert type(repo) is MlflowArtifactsRepository
