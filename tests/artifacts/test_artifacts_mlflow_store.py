"""protocol="mlflow": the artifact proxy of a real ``mlflow server`` behind the sandbox's inbound proxy."""

from __future__ import annotations

from pathlib import Path

from artifact_helpers import make_tree, needs_mlflow, tree_bytes

from meshclient import MeshClient
from meshclient.artifacts import MANIFEST_NAME, pull, push
from meshclient_sandbox.runner import Sandbox

pytestmark = needs_mlflow


def test_tree_round_trip_through_a_real_mlflow_server(mlflow_sandbox: Sandbox, tmp_path: Path) -> None:
    svc = mlflow_sandbox.service("mlflow")
    assert "mlflow" in mlflow_sandbox.info["services"]  # sandbox.json lists it
    src = make_tree(tmp_path / "src", hash_names=False)
    to = f"{svc['url']}/5/run-{tmp_path.name}/artifacts"
    with MeshClient(mlflow_sandbox.client_credentials()) as client:
        report = push(client, src, to=to, server_identity=svc["identity"], protocol="mlflow", workers=4)
        assert report.files == len(tree_bytes(src))
        assert {e.verified for e in report.entries} == {"size"}  # checked against MLflow's listing
        stored = mlflow_sandbox.apps["mlflow"].artifacts_dir / "5" / f"run-{tmp_path.name}" / "artifacts"  # type: ignore[attr-defined]
        assert {k: v for k, v in tree_bytes(stored).items() if k != MANIFEST_NAME} == tree_bytes(src)

        back = pull(client, to, dest=tmp_path / "back", server_identity=svc["identity"], protocol="mlflow")
        assert back.source == "manifest"
        assert tree_bytes(tmp_path / "back") == tree_bytes(src)

        # without the manifest, MLflow's listing restores the tree too
        (stored / MANIFEST_NAME).unlink()
        listed = pull(client, to, dest=tmp_path / "listed", server_identity=svc["identity"], protocol="mlflow")
        assert listed.source == "listing"
        assert tree_bytes(tmp_path / "listed") == tree_bytes(src)


def test_explicit_api_url_works_as_well(mlflow_sandbox: Sandbox, tmp_path: Path) -> None:
    svc = mlflow_sandbox.service("mlflow")
    f = tmp_path / "one.txt"
    f.write_text("one")
    to = f"{svc['url']}/api/2.0/mlflow-artifacts/artifacts/explicit"
    with MeshClient(mlflow_sandbox.client_credentials()) as client:
        push(client, f, to=to, server_identity=svc["identity"], protocol="mlflow")
    assert (mlflow_sandbox.apps["mlflow"].artifacts_dir / "explicit" / "one.txt").read_text() == "one"  # type: ignore[attr-defined]
