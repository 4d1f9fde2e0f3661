"""Keeps the artifact benchmarks working: toy sizes, ratios printed, no timing checks."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from artifact_helpers import needs_mlflow, needs_nginx

BENCH = Path(__file__).resolve().parents[2] / "bench"


@needs_nginx
@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_webdav_bench_at_toy_size() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "artifacts_webdav.py"), "--size-mib", "4", "--runs", "1"],
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"ratio meshclient/curl \(throughput\): \d+\.\d{3}", done.stdout), done.stdout
    assert re.search(r"RSS growth during the push: max \d+\.\d MiB", done.stdout), done.stdout
    assert re.search(r"CPU budget: curl \+ nginx used \d+\.\d\d core-s .* best reachable ratio \d+\.\d{3}",
                     done.stdout), done.stdout
    assert "PRIVATE KEY" not in done.stdout + done.stderr


@needs_mlflow
@pytest.mark.slow
def test_mlflow_bench_at_toy_size() -> None:
    done = subprocess.run([sys.executable, str(BENCH / "artifacts_mlflow.py"), "--files", "12", "--total-mib", "2",
                           "--rounds", "1"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"ratio MLflow time / meshclient time: \d+\.\d\dx", done.stdout), done.stdout
    assert re.search(r"CPU budget on \d+ core\(s\): .*best reachable ratio \d+\.\d\dx", done.stdout), done.stdout
