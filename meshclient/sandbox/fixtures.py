"""pytest fixtures for the local mesh, for meshclient's tests and for users' own.

In a ``conftest.py``::

    from meshclient.sandbox.fixtures import mesh_sandbox  # noqa: F401

then take ``mesh_sandbox`` (a started :class:`~meshclient.sandbox.runner.Sandbox`, one per
test session) in a test: ``mesh_sandbox.info`` is the ``sandbox.json`` document.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .runner import Sandbox

__all__ = ["mesh_sandbox"]


@pytest.fixture(scope="session")
def mesh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A running sandbox mesh for the whole test session, stopped at the end."""
    with Sandbox(tmp_path_factory.mktemp("mesh-sandbox")) as sandbox:
        yield sandbox
