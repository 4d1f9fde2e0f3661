"""``meshclient.spark.share`` inside real Spark local jobs: executors call the sandbox echo
service with the driver's mesh identity (read from the secret scope) and a client-credentials
token; one client and at most one token fetch per Python worker; and no secret in a plan, a
log, an exception, a repr or a file Spark writes."""

from __future__ import annotations

import base64
import contextlib
import io
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

import meshclient.spark
from meshclient import Credentials, MeshClient
from meshclient.tokens import ClientCredentials
from meshclient_sandbox.runner import CLIENT_IDENTITY, Sandbox

pytestmark = pytest.mark.spark

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")
WRONG_ID = "scorer.ml-serving.serviceaccount.identity.linkerd.cluster.local"


# -- what the tasks run (closures, so cloudpickle ships them by value) --------------------------
def echo_rows(handle: Any, url: str, identity: str, log_dir: str) -> Callable[[Iterable[int]], Iterator[tuple[Any, ...]]]:
    """A ``mapPartitions`` function: one echo call per row through the worker's shared client,
    with the worker's root logger at DEBUG into ``log_dir`` (so executor logs can be scanned)."""

    def run(rows: Iterable[int]) -> Iterator[tuple[Any, ...]]:
        import logging
        import os

        root = logging.getLogger()
        if not getattr(root, "_meshclient_test_handler", False):
            handler = logging.FileHandler(os.path.join(log_dir, f"worker-{os.getpid()}.log"))
            handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
            root.addHandler(handler)
            root.setLevel(logging.DEBUG)
            root._meshclient_test_handler = True  # type: ignore[attr-defined]
        client = handle.client()
        for row in rows:
            body = client.request("GET", f"{url}/rows/{row}", server_identity=identity).json()
            yield row, os.getpid(), id(client), body["client_id"], body["subject"], body["token"]

    return run


def worker_tokens(handle: Any) -> Callable[[Iterable[int]], Iterator[tuple[int, str]]]:
    """Each worker's cached token (its own provider copy: no new fetch), to hunt for in logs."""

    def run(rows: Iterable[int]) -> Iterator[tuple[int, str]]:
        import os

        list(rows)
        token = handle.config.token
        yield os.getpid(), token.token().value

    return run


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def shared(mesh_sandbox: Sandbox, spark_env: Any) -> Iterator[meshclient.spark.SharedClient]:
    from databricks.sdk import WorkspaceClient

    ws, o = mesh_sandbox.info["workspace"], mesh_sandbox.info["oidc"]
    creds = Credentials.from_secret_scope("ml-mesh", workspace_client=WorkspaceClient(host=ws["host"], token=ws["token"]))
    token = ClientCredentials(token_url=o["token_url"], client_id=o["client_id"], client_secret=o["client_secret"],
                              audience=o["audience"])
    client = MeshClient(creds, token=token)
    handle = meshclient.spark.share(client)  # the one line a notebook needs
    yield handle
    client.close()


def secrets(sandbox: Sandbox) -> list[str]:
    key_pem = Path(sandbox.info["client"]["key"]).read_bytes()
    body = [ln for ln in key_pem.decode().splitlines() if ln and not ln.startswith("-----")]
    ws, o = sandbox.info["workspace"], sandbox.info["oidc"]
    return [*body, "".join(body), base64.b64encode(key_pem).decode()[60:100], ws["token"], ws["client_secret"],
            o["client_secret"]]


def assert_clean(what: str, text: str, hunted: list[str]) -> None:
    assert "PRIVATE KEY" not in text, f"key PEM in {what}"
    for secret in hunted:
        assert secret not in text, f"secret text ({secret[:6]}...) in {what}"
    assert not _JWT.search(text), f"a JWT in {what}"


# -- the tests ---------------------------------------------------------------------------------
def test_share_broadcasts_a_sealed_config(shared: meshclient.spark.SharedClient, spark_env: Any) -> None:
    assert shared.mode == "broadcast"
    assert CLIENT_IDENTITY in repr(shared)
    blob = shared._broadcast.value
    assert isinstance(blob, bytes) and b"PRIVATE KEY" not in blob  # ciphertext only


def test_executors_get_identity_and_token_with_one_client_and_fetch_per_worker(
        shared: meshclient.spark.SharedClient, mesh_sandbox: Sandbox, spark_env: Any) -> None:
    assert mesh_sandbox.issuer is not None
    svc = mesh_sandbox.service("echo")
    sc = spark_env.spark.sparkContext
    job = echo_rows(shared, svc["url"], svc["identity"], str(spark_env.worker_logs))
    before = mesh_sandbox.issuer.token_requests
    rows = sc.parallelize(range(12), 4).mapPartitions(job).collect()
    rows += sc.parallelize(range(12, 20), 4).mapPartitions(job).collect()  # a second job: reused workers
    fetched = mesh_sandbox.issuer.token_requests - before

    assert sorted(r[0] for r in rows) == list(range(20))
    assert {(r[3], r[4], r[5]) for r in rows} == {(CLIENT_IDENTITY, "ml-pipeline", "verified")}
    clients_per_pid: dict[int, set[int]] = {}
    for _, pid, client_id, *_ in rows:
        clients_per_pid.setdefault(pid, set()).add(client_id)
    assert all(len(ids) == 1 for ids in clients_per_pid.values()), clients_per_pid
    assert 1 <= fetched <= len(clients_per_pid), (fetched, sorted(clients_per_pid))


def test_no_secret_in_plans_logs_errors_reprs_or_files(
        shared: meshclient.spark.SharedClient, mesh_sandbox: Sandbox, spark_env: Any,
        capfd: pytest.CaptureFixture[str]) -> None:
    from pyspark.sql.functions import udf

    spark, sc = spark_env.spark, spark_env.spark.sparkContext
    svc = mesh_sandbox.service("echo")
    url, identity = svc["url"], svc["identity"]

    def subject(row):  # no type hints: Spark 4 would try to infer a pandas eval type from them
        body = shared.client().request("GET", f"{url}/udf/{row}", server_identity=identity).json()
        return f"{body['client_id']}|{body['subject']}"

    df = spark.createDataFrame([(i,) for i in range(4)], "row long").select(udf(subject, "string")("row").alias("who"))
    plan = io.StringIO()
    with contextlib.redirect_stdout(plan):
        df.explain(True)
    assert "BatchEvalPython" in plan.getvalue()
    assert {r.who for r in df.collect()} == {f"{CLIENT_IDENTITY}|ml-pipeline"}

    # a deliberately failing task: the server is not who the task expects
    failing = echo_rows(shared, url, WRONG_ID, str(spark_env.worker_logs))
    with pytest.raises(Exception) as info:
        sc.parallelize(range(2), 1).mapPartitions(failing).collect()
    error_text = f"{info.value}\n{info.value!r}"
    assert "ServerIdentityError" in error_text or "TLSHandshakeError" in error_text

    tokens = [value for _, value in sc.parallelize(range(4), 4).mapPartitions(worker_tokens(shared)).collect()]
    hunted = [*secrets(mesh_sandbox), *tokens]
    captured = capfd.readouterr()

    assert_clean("the query plan", plan.getvalue(), hunted)
    assert_clean("the task exception", error_text, hunted)
    assert_clean("repr(handle)", repr(shared) + str(shared), hunted)
    assert_clean("repr(config)", repr(shared.config) + repr(shared.config.credentials) + repr(shared.config.token),
                 hunted)
    assert_clean("the Spark conf", repr(sc.getConf().getAll()), hunted)
    assert_clean("process stdout/stderr", captured.out + captured.err, hunted)
    driver_log = spark_env.driver_log.read_text(errors="replace")
    assert "TaskSetManager" in driver_log or "DAGScheduler" in driver_log  # the log4j file is live
    assert_clean("the Spark driver log", driver_log, hunted)
    worker_logs = list(spark_env.worker_logs.glob("worker-*.log"))
    assert worker_logs
    worker_text = "\n".join(p.read_text(errors="replace") for p in worker_logs)
    assert "meshclient" in worker_text and "urllib3" in worker_text  # DEBUG records were written
    assert_clean("the executor Python logs", worker_text, hunted)
    # nothing Spark wrote to its local directories holds key text: PySpark writes each broadcast's
    # pickled value to a file there (in clear unless spark.io.encryption.enabled), hence the seal
    broadcast_files = [p for p in Path(sc._temp_dir).rglob("*") if p.is_file()]
    assert broadcast_files, "no broadcast file to scan"
    for path in [*spark_env.local_dir.rglob("*"), *broadcast_files]:
        if path.is_file():
            assert_clean(f"the Spark file {path.name}", path.read_bytes().decode("latin-1"), hunted)


def test_share_without_spark_is_local(mesh_sandbox: Sandbox) -> None:
    """No SparkContext given (a plain process, Spark Connect): the handle carries the config."""
    creds = mesh_sandbox.client_credentials()
    with MeshClient(creds) as client:
        handle = meshclient.spark.share(client.config(), spark=object())
    assert handle.mode == "local"
    assert handle.client() is handle.client()
