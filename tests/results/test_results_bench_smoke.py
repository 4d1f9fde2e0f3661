"""Keeps bench/results_push.py working: a toy-size run (no Spark) finishes, reads every row back
and prints its ratio (no timing checks)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pyarrow")
pytest.importorskip("pandas")

BENCH = Path(__file__).resolve().parents[2] / "bench" / "results_push.py"


def test_results_bench_runs_at_toy_size() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--rows", "3000", "--rounds", "2", "--batch-rows", "1000",
                           "--spark-rows", "0"], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"ratio json/arrow \(time\): \d+\.\d\dx", done.stdout), done.stdout
    for side in ("arrow", "json", "pandas-json"):
        assert re.search(rf"^{side} +[\d,]+ rows/s", done.stdout, re.M), done.stdout
