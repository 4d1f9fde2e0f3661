"""The results tests' receiver (the session sandbox's results service) and a client of it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from meshclient import MeshClient
from meshclient_sandbox.runner import Sandbox


@pytest.fixture
def sink(mesh_sandbox: Sandbox) -> dict[str, Any]:
    return mesh_sandbox.service("results")


@pytest.fixture
def client(mesh_sandbox: Sandbox) -> Iterator[MeshClient]:
    with MeshClient(mesh_sandbox.client_credentials()) as c:
        yield c
