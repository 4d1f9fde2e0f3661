"""Push and pull trees through real stores: the sandbox artifact store, nginx WebDAV, a real MLflow server."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from artifact_helpers import STORE_ID, make_tree, tree_bytes

from meshclient import MeshClient
from meshclient.artifacts import MANIFEST_NAME, pull, push
from meshclient_sandbox.nginx_dav import NginxDavPeer
from meshclient_sandbox.runner import Sandbox


@pytest.fixture
def sandbox_client(mesh_sandbox: Sandbox) -> Iterator[MeshClient]:
    events: list[object] = []
    with MeshClient(mesh_sandbox.client_credentials(), audit=events.append) as c:
        c.events = events  # type: ignore[attr-defined]
        yield c


def _check_report(report: object, src: Path) -> None:
    expected = tree_bytes(src)
    assert report.files == len(expected)  # type: ignore[attr-defined]
    assert report.bytes == sum(len(b) for b in expected.values())  # type: ignore[attr-defined]
    import hashlib
    assert report.sha256 == {k: hashlib.sha256(v).hexdigest() for k, v in expected.items()}  # type: ignore[attr-defined]


def test_tree_round_trip_through_the_sandbox_store(mesh_sandbox: Sandbox, sandbox_client: MeshClient,
                                                   tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    svc = mesh_sandbox.service("artifacts")
    to = f"{svc['url']}/runs/sandbox-{tmp_path.name}"
    report = push(sandbox_client, src, to=to, server_identity=svc["identity"], workers=4)
    _check_report(report, src)
    # the store's answer carries the digest it computed: every file checked against it
    assert {e.verified for e in report.entries} == {"digest"}
    stored = mesh_sandbox.workdir / "data" / "artifacts" / "files" / "runs" / f"sandbox-{tmp_path.name}"
    assert {k: v for k, v in tree_bytes(stored).items() if k != MANIFEST_NAME} == tree_bytes(src)
    # one audit event per file (its PUT; retries would be attempts inside it), same trace for the push
    puts = [e for e in sandbox_client.events if e.method == "PUT"]  # type: ignore[attr-defined]
    assert len(puts) == report.files + 1  # + the manifest
    assert len({e.trace_id for e in sandbox_client.events}) == 1  # type: ignore[attr-defined]
    assert puts[-1].url.endswith(MANIFEST_NAME)
    # and one PUSH event per file: path, size, sha-256, how it was verified
    pushed = [e for e in sandbox_client.events if e.method == "PUSH"]  # type: ignore[attr-defined]
    assert {e.path: e.sha256 for e in pushed} == report.sha256
    assert all(e.outcome == "ok" and e.verified == "digest" and e.size == len(tree_bytes(src)[e.path])
               for e in pushed)
    assert '"sha256":' in pushed[0].to_json()

    back = pull(sandbox_client, to, dest=tmp_path / "back", server_identity=svc["identity"])
    assert back.source == "manifest" and back.files == report.files
    pulled = [e for e in sandbox_client.events if e.method == "PULL"]  # type: ignore[attr-defined]
    assert {e.path: e.sha256 for e in pulled} == report.sha256
    assert tree_bytes(tmp_path / "back") == tree_bytes(src)


def test_tree_round_trip_through_nginx_webdav(dav: NginxDavPeer, client: MeshClient, tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    to = f"{dav.dav_url}/models/fraud/v1"
    report = push(client, src, to=to, server_identity=STORE_ID, workers=3)
    _check_report(report, src)
    assert {e.verified for e in report.entries} == {"size"}  # nginx answers no digest: HEAD gives the size
    stored = dav.store_root / "models" / "fraud" / "v1"
    assert {k: v for k, v in tree_bytes(stored).items() if k != MANIFEST_NAME} == tree_bytes(src)
    manifest = json.loads((stored / MANIFEST_NAME).read_bytes())
    assert sorted(e["path"] for e in manifest["entries"]) == sorted(tree_bytes(src))
    # server side: the manifest was the last PUT nginx received, after every file had been stored
    puts = [e for e in dav.wait_for_access_log(2 * report.files + 2) if e.method == "PUT"]
    assert len(puts) == report.files + 1 and puts[-1].uri.endswith(MANIFEST_NAME)
    assert all(e.status == 201 for e in puts)

    # nginx cannot list: pull restores the tree from the manifest alone
    back = pull(client, to, dest=tmp_path / "back", server_identity=STORE_ID)
    assert back.source == "manifest"
    assert tree_bytes(tmp_path / "back") == tree_bytes(src)


def test_a_single_file(dav: NginxDavPeer, client: MeshClient, tmp_path: Path) -> None:
    f = tmp_path / "model.pkl"
    f.write_bytes(b"\x80\x04" * 1000)
    report = push(client, f, to=f"{dav.dav_url}/one", server_identity=STORE_ID)
    assert report.files == 1 and (dav.store_root / "one" / "model.pkl").read_bytes() == f.read_bytes()


def test_pull_refuses_a_tampered_file_and_leaves_nothing(dav: NginxDavPeer, client: MeshClient, tmp_path: Path) -> None:
    from meshclient.artifacts import ArtifactPullError

    src = make_tree(tmp_path / "src")
    to = f"{dav.dav_url}/t"
    push(client, src, to=to, server_identity=STORE_ID)
    stored = dav.store_root / "t" / "data" / "weights.bin"
    data = bytearray(stored.read_bytes())
    data[1000] ^= 0xFF  # same size, one bit flipped on the server's disk
    stored.write_bytes(bytes(data))
    with pytest.raises(ArtifactPullError) as info:
        pull(client, to, dest=tmp_path / "back", server_identity=STORE_ID)
    assert [f.path for f in info.value.failed] == ["data/weights.bin"]
    assert "data/weights.bin" in str(info.value)
    assert not (tmp_path / "back" / "data" / "weights.bin").exists()
    assert not list((tmp_path / "back").rglob("*.meshclient-partial"))
    assert (tmp_path / "back" / "MLmodel").read_bytes() == (src / "MLmodel").read_bytes()


def test_pull_refuses_a_manifest_that_leaves_dest(dav: NginxDavPeer, client: MeshClient, tmp_path: Path) -> None:
    from meshclient.errors import ConfigurationError

    evil = {"format": "meshclient-artifacts/1", "entries": [{"path": "../escape", "size": 1, "sha256": "0" * 64}]}
    (dav.store_root / "evil").mkdir(parents=True)
    (dav.store_root / "evil" / MANIFEST_NAME).write_text(json.dumps(evil))
    with pytest.raises(ConfigurationError, match="not a plain relative artifact path"):
        pull(client, f"{dav.dav_url}/evil", dest=tmp_path / "back", server_identity=STORE_ID)
    assert not (tmp_path / "escape").exists()


@pytest.mark.parametrize("precompute", [True, False])
def test_digest_before_or_while_streaming(mesh_sandbox: Sandbox, sandbox_client: MeshClient, tmp_path: Path,
                                          precompute: bool) -> None:
    """Hashed first (Content-Digest header, checked by the store) or while streaming (checked
    against the digest the store answers): the same sha-256 either way."""
    import hashlib
    import os

    src = tmp_path / "src"
    src.mkdir()
    (src / "a.bin").write_bytes(os.urandom(5 * 1024 * 1024 + 3))
    svc = mesh_sandbox.service("artifacts")
    report = push(sandbox_client, src, to=f"{svc['url']}/digest-{precompute}-{tmp_path.name}",
                  server_identity=svc["identity"], precompute_digest=precompute)
    (entry,) = report.entries
    assert entry.sha256 == hashlib.sha256((src / "a.bin").read_bytes()).hexdigest()
    assert entry.verified == "digest"
    put = next(e for e in sandbox_client.events if e.method == "PUT")  # type: ignore[attr-defined]
    assert put.bytes_sent == 5 * 1024 * 1024 + 3
