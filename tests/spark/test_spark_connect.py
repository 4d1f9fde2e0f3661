"""``meshclient.spark.share`` on Spark Connect (Databricks serverless and standard access mode):
no broadcast there, and task closures travel inside the plan the server receives and keeps.
The config is sealed with the cluster seal key (``MESHCLIENT_SEAL_KEY``, which a cluster sets
from a secret reference); the proof runs a real local Spark Connect server in a child process,
scores rows through the sandbox from its executors, and scans the plan bytes the client sent
for the private key (PEM, DER, base64, the private scalar) and the tokens."""

from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.serialization import load_pem_private_key

import meshclient.spark
from meshclient import Credentials, MeshClient
from meshclient.errors import ConfigurationError

pytestmark = pytest.mark.spark
CHILD = Path(__file__).with_name("connect_child.py")


def _run(mesh_sandbox: Any, tmp_path: Path, scenario: str) -> tuple[dict[str, Any], bytes, bytes]:
    info_path = tmp_path / "sandbox.json"
    info_path.write_text(json.dumps(mesh_sandbox.info))
    env = {**os.environ, "MESHCLIENT_SEAL_KEY": secrets.token_urlsafe(32), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "NO_PROXY": "127.0.0.1,localhost"}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "PYSPARK_SUBMIT_ARGS", "SPARK_REMOTE",
                 "SPARK_CONNECT_MODE_ENABLED"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, str(CHILD), str(info_path), str(tmp_path), scenario], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return (json.loads((tmp_path / "result.json").read_text()), (tmp_path / "plan.bin").read_bytes(),
            (tmp_path / "sealed.bin").read_bytes())


def _key_forms(mesh_sandbox: Any) -> list[bytes]:
    key_pem = Path(mesh_sandbox.info["client"]["key"]).read_bytes()
    key = load_pem_private_key(key_pem, None)
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    scalar = key.private_numbers().private_value.to_bytes(32, "big")  # type: ignore[union-attr]
    body = b"".join(line for line in key_pem.splitlines() if line and not line.startswith(b"-----"))
    return [key_pem, body, body[:48], der, scalar, base64.b64encode(der), base64.b64encode(scalar)]


@pytest.mark.usefixtures("spark_connect")
def test_executors_score_on_spark_connect_with_no_key_or_token_in_the_plan(mesh_sandbox: Any, tmp_path: Path) -> None:
    result, plan, sealed = _run(mesh_sandbox, tmp_path, "ok")
    assert result["mode"] == "sealed"
    rows = result["rows"]
    assert sorted(r["row"] for r in rows) == list(range(16))
    assert {(r["client_id"], r["subject"]) for r in rows} == {
        (mesh_sandbox.info["client"]["identity"], mesh_sandbox.info["oidc"]["client_id"])}
    assert sealed and sealed in plan  # the handle really is inside the plan: ciphertext only
    for form in _key_forms(mesh_sandbox):
        assert form not in plan, "private key material in the Spark Connect plan"
    o, ws = mesh_sandbox.info["oidc"], mesh_sandbox.info["workspace"]
    for secret in (o["client_secret"], ws["token"], ws["client_secret"]):
        assert secret.encode() not in plan
    assert b"eyJ" not in plan  # no JWT (bearer token) either
    assert b"PRIVATE KEY" not in plan


@pytest.mark.usefixtures("spark_connect")
def test_an_executor_with_another_seal_key_fails_clearly(mesh_sandbox: Any, tmp_path: Path) -> None:
    result, _, _ = _run(mesh_sandbox, tmp_path, "wrong-key")
    assert "rows" not in result
    assert "MESHCLIENT_SEAL_KEY" in result["error"] and "not the key the driver sealed" in result["error"]


def test_sharing_on_spark_connect_without_a_seal_key_is_refused(client_creds: Credentials,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Never fall back to pickling the key into the plan."""
    monkeypatch.delenv("MESHCLIENT_SEAL_KEY", raising=False)

    class ConnectSession:  # what share() sees of a Spark Connect session: its type's module
        pass

    ConnectSession.__module__ = "pyspark.sql.connect.session"
    with MeshClient(client_creds) as client, pytest.raises(ConfigurationError, match="MESHCLIENT_SEAL_KEY"):
        meshclient.spark.share(client, ConnectSession())


def test_a_short_seal_key_is_refused(client_creds: Credentials) -> None:
    with MeshClient(client_creds) as client, pytest.raises(ConfigurationError, match="at least 32"):
        meshclient.spark.share(client, seal_key="short")


def test_a_sealed_handle_opens_where_the_key_is_set(client_creds: Credentials,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import pickle

    key = secrets.token_urlsafe(32)
    with MeshClient(client_creds) as client:
        handle = meshclient.spark.share(client, seal_key=key)
        blob = pickle.dumps(handle)
    assert handle.mode == "sealed" and b"PRIVATE KEY" not in blob
    meshclient.spark.share.__globals__["_opened"].clear()
    monkeypatch.setenv("MESHCLIENT_SEAL_KEY", key)
    arrived = pickle.loads(blob)
    assert arrived.config.credentials.identity == client_creds.identity
