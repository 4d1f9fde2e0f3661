"""Fixtures for running the notebooks in notebooks/: one sandbox mesh with every service the
notebooks call, its workspace emulator behind ``dbutils``, and one local SparkSession.

The sandbox has the real MLflow tracking server and the real MLflow scoring server when they
are installed (``make mlflow``, ``make model-servers``); the notebooks that need them are
skipped, with the reason, when they are not. Tokens from its OIDC issuer live a few seconds, so
the long-job notebook sees them refreshed while it runs.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from notebook_env import TOKEN_LIFETIME, optional_services

from meshclient_sandbox.runner import Sandbox, SandboxSettings


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spark: runs a local Spark job (needs pyspark and Java; skipped without)")


@pytest.fixture(scope="module")
def mesh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """The plain sandbox, per module (overrides the session one: no server threads outlive the module)."""
    with Sandbox(tmp_path_factory.mktemp("mesh-sandbox")) as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def notebook_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """echo, results, artifacts, plus mlflow and mlflow-scoring where installed; stopped after the module."""
    extra = tuple(name for name, missing in optional_services().items() if missing is None)
    settings = SandboxSettings(tmp_path_factory.mktemp("notebook-sandbox"),
                               services=("echo", "results", "artifacts", *extra), token_lifetime=TOKEN_LIFETIME)
    with Sandbox(settings) as sandbox:
        yield sandbox


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        return str(Path(home, "bin", "java"))
    return shutil.which("java")


@pytest.fixture(scope="module")
def spark(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A local[2] SparkSession for the module (an already active one is reused and left running).

    Executors are started without any ``MESHCLIENT_*``/``DATABRICKS_*`` variable: whatever
    identity they use, the notebook shipped it (``meshclient.spark.share``, the data source).
    """
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'meshclient[spark]')")
    if _java() is None:
        pytest.skip("Spark needs Java (no JAVA_HOME and no java on PATH)")
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    base = tmp_path_factory.mktemp("notebook-spark")
    with pytest.MonkeyPatch.context() as mp:
        for name in list(os.environ):
            if name.startswith(("MESHCLIENT_", "DATABRICKS_")) or name.lower() in ("http_proxy", "https_proxy"):
                mp.delenv(name, raising=False)
        mp.delenv("PYSPARK_SUBMIT_ARGS", raising=False)
        mp.setenv("PYSPARK_PYTHON", sys.executable)
        mp.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
        mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        session = (
            SparkSession.builder.master("local[2]")
            .appName("meshclient-notebooks")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.default.parallelism", "2")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.local.dir", str(base / "local"))
            .config("spark.sql.warehouse.dir", str(base / "warehouse"))
            .config("spark.python.worker.reuse", "true")
            .getOrCreate()
        )
        session.sparkContext.setLogLevel("ERROR")
    try:
        yield session
    finally:
        session.stop()
