"""Fixtures for the artifact tests: trees to push, nginx WebDAV behind mTLS, a real MLflow server."""

from __future__ import annotations

import importlib.util
import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from artifact_helpers import STORE_ID

from meshclient import Credentials, MeshClient
from meshclient_sandbox.nginx import find_nginx
from meshclient_sandbox.nginx_dav import NginxDavPeer
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI
from meshclient_sandbox.runner import Sandbox, SandboxSettings


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
    # ".venv/bin/python -m mlflow" when the client side runs under mlflow-skinny (make compat-15.4)
    command = shlex.split(os.environ.get("MESHCLIENT_TEST_MLFLOW_SERVER", "")) or None
    settings = SandboxSettings(tmp_path_factory.mktemp("mlflow-sandbox"), services=("artifacts", "mlflow"),
                               extra={"mlflow": {"command": command}})
    with Sandbox(settings) as sandbox:
        yield sandbox
