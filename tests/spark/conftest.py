"""A small local SparkSession for the executor tests (one per module), and the ``spark`` marker.

pyspark is never a dependency of meshclient (it breaks Databricks runtimes), and it needs a
JVM: without either, these tests are skipped with the reason. Spark listens on loopback only,
its UI is off, and its driver log goes to a file the tests read (``spark_log``).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from meshclient_sandbox.runner import Sandbox

_LOG4J = """\
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
appender.file.type = File
appender.file.name = file
appender.file.fileName = {path}
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = %d{{HH:mm:ss.SSS}} %p %c: %m%n%ex
logger.python.name = org.apache.spark.api.python
logger.python.level = debug
logger.scheduler.name = org.apache.spark.scheduler
logger.scheduler.level = debug
"""


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "spark: runs a local Spark job (needs pyspark and Java; skipped without)")


@pytest.fixture(scope="module")
def mesh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A sandbox per test module, stopped after it (overrides the session one for this directory).

    Starting one takes milliseconds; a session-wide one would keep server threads alive into
    later directories whose tests prove that servers leave no thread behind.
    """
    with Sandbox(tmp_path_factory.mktemp("mesh-sandbox")) as sandbox:
        yield sandbox


def _java() -> str | None:
    home = os.environ.get("JAVA_HOME")
    if home and Path(home, "bin", "java").exists():
        return str(Path(home, "bin", "java"))
    return shutil.which("java")


@dataclass
class SparkEnv:
    """The session plus where its logs and local files go."""

    spark: Any
    driver_log: Path
    local_dir: Path
    worker_logs: Path


@pytest.fixture(scope="session")  # one JVM per process: a second session would not get this log4j config
def spark_env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SparkEnv]:
    pytest.importorskip("pyspark", reason="pyspark is not installed (pip install 'meshclient[spark]')")
    if _java() is None:
        pytest.skip("Spark needs Java (no JAVA_HOME and no java on PATH)")
    from pyspark.sql import SparkSession

    base = tmp_path_factory.mktemp("spark")
    local_dir, worker_logs = base / "local", base / "worker-logs"
    local_dir.mkdir()
    worker_logs.mkdir()
    # One driver log for the whole session: log4j is configured when the JVM starts, and later
    # modules' sessions run in the same JVM (a per-module path would never be written).
    driver_log = tmp_path_factory.getbasetemp() / "spark-driver.log"
    log4j = tmp_path_factory.getbasetemp() / "spark-log4j2.properties"
    if not log4j.exists():
        log4j.write_text(_LOG4J.format(path=driver_log))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYSPARK_PYTHON", sys.executable)
        mp.setenv("PYSPARK_DRIVER_PYTHON", sys.executable)
        mp.setenv("SPARK_LOCAL_IP", "127.0.0.1")
        mp.setenv("NO_PROXY", "127.0.0.1,localhost")
        for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "PYSPARK_SUBMIT_ARGS"):
            mp.delenv(name, raising=False)
        spark = (
            SparkSession.builder.master("local[2]")
            .appName("meshclient-tests")
            .config("spark.ui.enabled", "false")
            .config("spark.ui.showConsoleProgress", "false")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.default.parallelism", "2")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.local.dir", str(local_dir))
            .config("spark.python.worker.reuse", "true")
            .config("spark.sql.execution.pythonUDF.arrow.enabled", "false")
            .config("spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile=file:{log4j}")
            .getOrCreate()
        )
        # A JVM started earlier in this process (another directory's Spark tests) ignores the option
        # above: point its log4j at the file now.
        jvm = spark.sparkContext._jvm
        jvm.org.apache.logging.log4j.core.config.Configurator.reconfigure(jvm.java.net.URI.create(f"file:{log4j}"))
        try:
            yield SparkEnv(spark, driver_log, local_dir, worker_logs)
        finally:
            spark.stop()


def _key_forms(info: dict[str, Any]) -> list[bytes]:
    """Every form the sandbox client's private key could take in a serialized plan."""
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    key_pem = Path(info["client"]["key"]).read_bytes()
    key = load_pem_private_key(key_pem, None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    body = b"".join(line for line in key_pem.splitlines() if line and not line.startswith(b"-----"))
    return [key_pem, body, body[:48], der, scalar, base64.b64encode(der), base64.b64encode(scalar)]


@pytest.fixture
def key_forms() -> Any:
    """``key_forms(sandbox.info)``: the byte forms of the client key to look for in a Spark plan."""
    return _key_forms


@pytest.fixture
def spark_connect() -> None:
    """Skip unless a local Spark Connect server can run here: pyspark[connect] (grpcio) and a
    pyspark whose jars carry the Connect server (the pip package does from Spark 4.0 on)."""
    _require_spark_connect()


def _require_spark_connect() -> None:
    """Skip unless a local Spark Connect server can run here: pyspark[connect] (grpcio) and a
    pyspark whose jars carry the Connect server (the pip package does from Spark 4.0 on)."""
    pytest.importorskip("grpc", reason="pyspark[connect] is not installed (grpcio)")
    pytest.importorskip("pyspark.sql.connect.session", reason="pyspark[connect] is not installed",
                        exc_type=ImportError)
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    if not list(jars.glob("spark-connect*.jar")):
        pytest.skip(f"pyspark {pyspark.__version__}'s package has no Spark Connect server (Spark >= 4.0 has)")
