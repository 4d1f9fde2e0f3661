"""Keeps bench/scoring_spark.py working: a toy-size run finishes and prints both ratios (no timing checks)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from meshclient_sandbox.apps.model_servers import venv_python

BENCH = Path(__file__).resolve().parents[2] / "bench" / "scoring_spark.py"


@pytest.mark.spark
def test_scoring_bench_runs_at_toy_size() -> None:
    pytest.importorskip("pyspark", reason="pyspark is not installed")
    if venv_python("mlflow") is None:
        pytest.skip(".venv-mlflow is missing (make model-servers)")
    done = subprocess.run([sys.executable, str(BENCH), "--rows", "4000", "--naive-rows", "40", "--rounds", "1",
                           "--scaling-rows", "0", "--proxy", "sandbox"],
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"ratio spark.score/naive: \d+\.\dx", done.stdout), done.stdout
    assert re.search(r"ratio spark.score/plain: \d+\.\d{3}x", done.stdout), done.stdout
    assert "PRIVATE KEY" not in done.stdout + done.stderr
