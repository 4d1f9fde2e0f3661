"""``meshclient.spark.score`` on Spark Connect (Databricks serverless, standard access mode): a
real local Spark Connect server in a child process scores through the sandbox's inbound proxy
against the real MLflow scoring server; predictions equal the model's own, every row is scored
once at the server, and the plan the client sent carries no key or token (``share``'s sealed mode)."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from meshclient_sandbox.apps.model_servers import ScoringRelay, local_predictions, venv_python
from meshclient_sandbox.runner import Sandbox, SandboxSettings

pytestmark = [pytest.mark.spark, pytest.mark.usefixtures("spark_connect")]
CHILD = Path(__file__).with_name("connect_score_child.py")
COLUMNS = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
ROWS = 12_000


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    if venv_python("mlflow") is None:
        pytest.skip(".venv-mlflow is missing (make model-servers)")
    settings = SandboxSettings(tmp_path_factory.mktemp("model-sandbox"), services=("mlflow-scoring",))
    with Sandbox(settings) as sandbox:
        yield sandbox


def test_spark_score_on_spark_connect(models: Sandbox, tmp_path: Path, key_forms: Any) -> None:
    relay = models.apps["mlflow-scoring"]
    assert isinstance(relay, ScoringRelay)
    relay.reset()
    info_path = tmp_path / "sandbox.json"
    info_path.write_text(json.dumps(models.info))
    env = {**os.environ, "MESHCLIENT_SEAL_KEY": secrets.token_urlsafe(32), "SPARK_LOCAL_IP": "127.0.0.1",
           "PYSPARK_PYTHON": sys.executable, "PYSPARK_DRIVER_PYTHON": sys.executable, "NO_PROXY": "127.0.0.1,localhost"}
    for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "PYSPARK_SUBMIT_ARGS", "SPARK_REMOTE",
                 "SPARK_CONNECT_MODE_ENABLED"):
        env.pop(name, None)
    done = subprocess.run([sys.executable, str(CHILD), str(info_path), str(tmp_path), str(ROWS)], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((tmp_path / "result.json").read_text())
    plan = (tmp_path / "plan.bin").read_bytes()

    assert result["schema"] == "double"  # typed from a one-row sample scored on the driver
    rows = sorted(result["rows"], key=lambda r: r["id"])
    assert [r["id"] for r in rows] == list(range(ROWS))
    import pandas as pd

    features = pd.DataFrame([[r[c] for c in COLUMNS] for r in rows], columns=COLUMNS)
    expected = local_predictions("mlflow", models.workdir, features)["prediction"].tolist()
    assert [r["prediction"] for r in rows] == expected
    scored = [(k, n) for k, n in relay.scored_rows.items()]
    assert sum(n for _, n in scored) == ROWS + 1  # every row once, plus the driver's one-row sample
    assert relay.max_in_flight <= 2
    assert result["job_rows"] == 0  # Spark Connect has no accumulators: figures are not collected

    for form in key_forms(models.info):
        assert form not in plan, "private key material in the Spark Connect plan"
    assert b"PRIVATE KEY" not in plan and b"eyJ" not in plan  # no key, no JWT (the bearer token)
    assert models.info["oidc"]["client_secret"].encode() not in plan
