"""``meshclient.spark.write_results`` on Spark Connect (Databricks serverless, standard access
mode): a real local Spark Connect server in a child process writes through the sandbox's inbound
proxy to the results receiver, through the data source and through ``mapInArrow``; every row is
committed once, and nothing the Connect client sent (plans, commands, the registered data source)
carries the key: the handle travels sealed (``share``'s sealed mode)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from meshclient import MeshClient, results
from meshclient.spark.results import has_data_source
from meshclient_sandbox.runner import Sandbox

pytestmark = [pytest.mark.spark, pytest.mark.timeout(600), pytest.mark.usefixtures("spark_connect")]
CHILD = Path(__file__).with_name("connect_results_child.py")
ROWS = 5_000


def test_write_results_on_spark_connect_commits_every_row_once_with_no_key_in_the_plan(
        mesh_sandbox: Sandbox, tmp_path: Path, key_forms: Any) -> None:
    info_path = tmp_path / "sandbox.json"
    info_path.write_text(json.dumps(mesh_sandbox.info))
    seal = secrets.token_urlsafe(32)
    env = {**os.environ, "MESHCLIENT_SEAL_KEY": seal, "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "NO_PROXY": "127.0.0.1,localhost"}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "PYSPARK_SUBMIT_ARGS", "SPARK_REMOTE",
                 "SPARK_CONNECT_MODE_ENABLED"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, str(CHILD), str(info_path), str(tmp_path), str(ROWS)], env=env,
                          capture_output=True, text=True, timeout=540)
    assert done.returncode == 0, done.stderr[-3000:]
    reports = json.loads((tmp_path / "reports.json").read_text())
    sent = (tmp_path / "sent.bin").read_bytes()
    assert "mia" in reports and sent, "the child wrote nothing or recorded no request"
    if has_data_source():
        assert reports["ds"]["via"] == "data source"
        # the registered data source (with its handle) was among what was recorded
        assert b"RegisteredResultsDataSource" in sent

    svc = mesh_sandbox.service("results")
    with MeshClient(mesh_sandbox.client_credentials()) as client:
        for via, report in reports.items():
            table = results.read(client, url=svc["url"], server_identity=svc["identity"], dataset=f"connect-{via}")
            ids = table.column("id").to_pylist()
            assert sorted(ids) == list(range(ROWS)), f"{via}: rows missing or twice"
            assert table.column("doubled").to_pylist() == [i * 2 for i in ids]
            assert report["batches"] >= 4  # one per partition at least (700 rows per batch)

    for form in key_forms(mesh_sandbox.info):
        assert form not in sent, "private key material in what the Spark Connect client sent"
    assert b"PRIVATE KEY" not in sent and seal.encode() not in sent
