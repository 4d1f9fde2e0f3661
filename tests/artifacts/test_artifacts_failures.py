"""What goes wrong: a wrong server identity, a connection cut mid-upload, files a store refuses."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from artifact_helpers import OTHER_ID, STORE_ID, make_tree, needs_mlflow, tree_bytes
from cut_proxy import CutProxy

from meshclient import MeshClient, ServerIdentityError, TLSHandshakeError
from meshclient.artifacts import MANIFEST_NAME, ArtifactPushError, push
from meshclient_sandbox.nginx import find_nginx
from meshclient_sandbox.nginx_dav import NginxDavPeer
from meshclient_sandbox.pki import IssuedLeaf
from meshclient_sandbox.runner import Sandbox


def test_wrong_server_identity_fails_before_any_put(dav: NginxDavPeer, client: MeshClient, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    with pytest.raises(TLSHandshakeError) as info:  # like a Linkerd proxy, nginx refuses another identity's SNI
        push(client, src, to=f"{dav.dav_url}/x", server_identity=OTHER_ID, workers=4)
    assert OTHER_ID in str(info.value)
    assert dav.access_log() == []
    assert list(dav.store_root.rglob("*")) == []


def test_an_impostor_with_a_valid_mesh_certificate_gets_no_put(store_leaf: IssuedLeaf, client: MeshClient,
                                                              tmp_path: Path) -> None:
    """A server in the mesh, answering for the expected name, but proving another identity."""
    if find_nginx() is None:
        pytest.skip("nginx is not installed")
    src = make_tree(tmp_path / "src")
    with NginxDavPeer.for_leaf(store_leaf, server_name=OTHER_ID, workdir=tmp_path / "impostor") as dav:
        with pytest.raises(ServerIdentityError) as info:
            push(client, src, to=f"{dav.dav_url}/x", server_identity=OTHER_ID, workers=4)
        assert OTHER_ID in str(info.value) and STORE_ID in str(info.value)
    # server side: nginx never saw a request (the identity is checked in the handshake, before
    # any request byte), and nothing is stored
    assert dav.access_log() == []
    assert list(dav.store_root.rglob("*")) == []


def test_wrong_server_identity_on_the_sandbox_store(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    svc = mesh_sandbox.service("artifacts")
    files = mesh_sandbox.workdir / "data" / "artifacts" / "files" / "wrong-id"
    with MeshClient(mesh_sandbox.client_credentials()) as client, pytest.raises(TLSHandshakeError):
        push(client, make_tree(tmp_path / "src"), to=f"{svc['url']}/wrong-id", server_identity=OTHER_ID)
    assert not files.exists()


def test_connection_cut_mid_upload_is_retried_and_no_partial_file_shows(
        dav: NginxDavPeer, client: MeshClient, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    with CutProxy(("127.0.0.1", dav.port), cut_after=1024 * 1024) as cutter:
        # hashed while it streams: the retry must hash the second pass afresh
        report = push(client, src, to=f"{cutter.url}/dav/cut", server_identity=STORE_ID, workers=1,
                      precompute_digest=False)
        assert cutter.cut_count == 1
    (entry,) = report.entries
    assert entry.attempts == 2  # the client's own retry: PUT is idempotent, the body rewound
    assert entry.sha256 == hashlib.sha256((src / "big.bin").read_bytes()).hexdigest()
    assert (dav.store_root / "cut" / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    # server side: the cut upload never became a file (nginx spools, then renames a complete body)
    puts = [e for e in dav.wait_for_access_log(5) if e.method == "PUT" and e.uri.endswith("big.bin")]
    assert puts[-1].status == 201 and all(e.status >= 400 for e in puts[:-1])  # the cut one: never stored
    assert list((dav.workdir / "store" / ".spool").rglob("*")) == []
    assert sorted(p.name for p in (dav.store_root / "cut").iterdir()) == [MANIFEST_NAME, "big.bin"]


def test_connection_cut_through_the_sandbox_proxy(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    svc = mesh_sandbox.service("artifacts")
    src = tmp_path / "src"
    src.mkdir()
    (src / "big.bin").write_bytes(os.urandom(3 * 1024 * 1024))
    host, port = svc["url"].removeprefix("https://").rsplit(":", 1)
    with MeshClient(mesh_sandbox.client_credentials()) as client, \
            CutProxy((host, int(port)), cut_after=512 * 1024) as cutter:
        report = push(client, src, to=f"{cutter.url}/cut-{tmp_path.name}", server_identity=svc["identity"])
    assert report.entries[0].attempts == 2 and report.entries[0].verified == "digest"
    store = mesh_sandbox.workdir / "data" / "artifacts"
    assert (store / "files" / f"cut-{tmp_path.name}" / "big.bin").read_bytes() == (src / "big.bin").read_bytes()
    assert sorted(p.name for p in (store / "files" / f"cut-{tmp_path.name}").iterdir()) == [MANIFEST_NAME, "big.bin"]
    # (the cut upload is staged in the store's .incoming, never under files/: nothing partial is visible)


@needs_mlflow
def test_refused_files_are_named_and_no_manifest_is_written(mlflow_sandbox: Sandbox, tmp_path: Path) -> None:
    svc = mlflow_sandbox.service("mlflow")
    src = make_tree(tmp_path / "src", hash_names=True)  # MLflow cannot store '#' or '%' in artifact paths
    events: list[object] = []
    with MeshClient(mlflow_sandbox.client_credentials(), audit=events.append) as client, \
            pytest.raises(ArtifactPushError) as info:
        push(client, src, to=f"{svc['url']}/refused", server_identity=svc["identity"], protocol="mlflow")
    err = info.value
    failed_events = sorted(e.path for e in events if e.method == "PUSH" and e.outcome == "failed")  # type: ignore[attr-defined]
    assert failed_events == ["with space/#hash?.txt", "with space/100%20.txt"]
    assert [f.path for f in err.failed] == ["with space/#hash?.txt", "with space/100%20.txt"]
    assert "with space/#hash?.txt" in str(err) and "protocol='put'" in str(err)
    assert len(err.pushed) == len(tree_bytes(src)) - 2
    stored = mlflow_sandbox.apps["mlflow"].artifacts_dir / "refused"  # type: ignore[attr-defined]
    assert stored.is_dir() and not (stored / MANIFEST_NAME).exists()
