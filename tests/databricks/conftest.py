"""Fixtures for the Databricks tests: a clean databricks-sdk environment and a simulated notebook."""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Iterator
from pathlib import Path

import pytest
from databricks_helpers import FakeDbutils

from meshclient_sandbox.runner import Sandbox


@pytest.fixture(scope="module")
def mesh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox per test module, stopped after it (overrides the session one for this directory).

    Starting one takes milliseconds; a session-wide one would keep server threads alive into
    later directories whose tests prove that servers leave no thread behind.
    """
    with Sandbox(tmp_path_factory.mktemp("mesh-sandbox")) as sandbox:
        yield sandbox


@pytest.fixture
def sdk_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No DATABRICKS_* variable, no profile, no proxy: the SDK sees only what a test sets."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "MESHCLIENT_", "ARM_", "AZURE_", "GOOGLE_")) or name.lower() in (
            "http_proxy", "https_proxy", "all_proxy", "no_proxy", "requests_ca_bundle", "curl_ca_bundle",
        ):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-such-databrickscfg"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return monkeypatch


@pytest.fixture
def notebook(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch) -> Iterator[FakeDbutils]:
    """A simulated Databricks notebook: DATABRICKS_RUNTIME_VERSION set and ``dbutils`` in an
    IPython user namespace (a stand-in ``IPython`` module: IPython is not a dependency)."""
    assert mesh_sandbox.workspace is not None
    dbutils = FakeDbutils(mesh_sandbox.workspace)
    shell = types.SimpleNamespace(user_ns={"dbutils": dbutils, "spark": None})
    fake_ipython = types.ModuleType("IPython")
    fake_ipython.get_ipython = lambda: shell  # type: ignore[attr-defined]
    sdk_env.setitem(sys.modules, "IPython", fake_ipython)
    sdk_env.setenv("DATABRICKS_RUNTIME_VERSION", "15.4")
    yield dbutils
