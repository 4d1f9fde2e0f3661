"""Fixtures the command-line tests and the ``meshclient.doctor()`` tests share.

``no_mesh_env`` is opt-in (``pytestmark = pytest.mark.usefixtures("no_mesh_env")``): most core
tests must keep ``MESHCLIENT_REQUIRE_PEERS`` and friends. ``server``/``url`` is a real mTLS server
(the test's own ``server`` fixture, where a module has one, takes precedence).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from mtls_server import mtls_server

from meshclient import Credentials
from meshclient_sandbox.pki import IssuedLeaf
from meshclient_sandbox.tls import build_server_context


@pytest.fixture
def no_mesh_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No MESHCLIENT_* variable: the material must come from the options the test gives."""
    for name in [k for k in os.environ if k.startswith("MESHCLIENT_")]:
        monkeypatch.delenv(name)


@pytest.fixture(scope="module")
def good(tmp_path_factory: pytest.TempPathFactory, client_leaf: IssuedLeaf) -> dict[str, Path]:
    """The client leaf's certificate, key and anchors written to files."""
    return client_leaf.write(tmp_path_factory.mktemp("good"))


@pytest.fixture(scope="module")
def server(server_creds: Credentials) -> Iterator[object]:
    with mtls_server(build_server_context(server_creds)) as srv:
        yield srv


@pytest.fixture(scope="module")
def url(server: object) -> str:
    return f"https://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
