"""Fixtures for the artifact tests: trees to push, nginx WebDAV behind mTLS, a real MLflow server."""

from __future__ import annotations

import importlib.util
import os
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshclient import Credentials, MeshClient
from meshclient.sandbox.nginx import find_nginx
from meshclient.sandbox.nginx_dav import NginxDavPeer
from meshclient.sandbox.pki import IssuedLeaf, SandboxPKI
from meshclient.sandbox.runner import Sandbox, SandboxSettings

sys.path.insert(0, str(Path(__file__).parent))

STORE_ID = "store.ml-platform.serviceaccount.identity.linkerd.cluster.local"
OTHER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"

needs_nginx = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (apt-get install nginx-light)")
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="mlflow is not installed (make mlflow)")


def make_tree(root: Path, *, hash_names: bool = True) -> Path:
    """Nested folders, empty files and an empty folder's sibling, non-ASCII and awkward names.

    ``hash_names=False`` leaves out '#' and '%' (MLflow's server refuses '#' and decodes '%' twice).
    """
    files = {
        "MLmodel": b"artifact_path: model\nflavors: {}\n",
        "empty.txt": b"",
        "data/weights.bin": os.urandom(3 * 1024 * 1024 + 17),
        "data/nested/deeper/empty": b"",
        "data/nested/deeper/tiny": b"x",
        "données/modèle – v1.json": "{\"clé\": \"valeur\"}".encode(),
        "日本語/ファイル.txt": "こんにちは\n".encode(),
        "with space/a+b=c & ~.txt": b"odd names travel percent-encoded\n",
    }
    if hash_names:
        files["with space/#hash?.txt"] = b"fragment and query characters\n"
        files["with space/100%20.txt"] = b"a literal percent sign\n"
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def store_leaf(pki: SandboxPKI) -> IssuedLeaf:
    return pki.issue(STORE_ID)


@pytest.fixture
def client(client_creds: Credentials) -> Iterator[MeshClient]:
    events: list[object] = []
    with MeshClient(client_creds, audit=events.append, timeout=(5.0, 30.0)) as c:
        c.events = events  # type: ignore[attr-defined]
        yield c


@pytest.fixture
def dav(store_leaf: IssuedLeaf, tmp_path: Path) -> Iterator[NginxDavPeer]:
    if find_nginx() is None:
        pytest.skip("nginx is not installed (apt-get install nginx-light)")
    with NginxDavPeer.for_leaf(store_leaf, workdir=tmp_path / "nginx") as peer:
        yield peer


@pytest.fixture(scope="session")
def mlflow_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The sandbox with a real ``mlflow server`` behind its inbound proxy (and the artifact store)."""
    if importlib.util.find_spec("mlflow") is None:
        pytest.skip("mlflow is not installed (make mlflow)")
    # MESHCLIENT_TEST_MLFLOW_SERVER: the server from another installation (mlflow-skinny has none), e.g.
    # ".venv/bin/python -m mlflow" when the client side runs under mlflow-skinny 2.11 (make mlflow-2.11)
    command = shlex.split(os.environ.get("MESHCLIENT_TEST_MLFLOW_SERVER", "")) or None
    settings = SandboxSettings(tmp_path_factory.mktemp("mlflow-sandbox"), services=("artifacts", "mlflow"),
                               extra={"mlflow_command": command})
    with Sandbox(settings) as sandbox:
        yield sandbox
