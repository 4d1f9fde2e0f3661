"""Keeps bench/run.py working: a toy-size run must finish and print its ratio (no timing checks)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from meshclient_sandbox.nginx import find_nginx

BENCH = Path(__file__).resolve().parents[2] / "bench" / "run.py"


@pytest.mark.peers
@pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (apt-get install nginx-light)")
def test_bench_runs_at_toy_size() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--requests", "40"], capture_output=True, text=True,
                          timeout=120, check=False)

    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"ratio meshclient/hand-written \(time\): \d+\.\d{3}", done.stdout), done.stdout
    # every request (2 warm-up + 20 x 2 per side) reached nginx with a verified client certificate
    assert "84 requests logged, 84 verified-client 200s" in done.stdout, done.stdout
    assert "PRIVATE KEY" not in done.stdout + done.stderr


def test_full_stack_bench_runs_at_toy_size() -> None:
    bench = BENCH.parent / "full_stack.py"
    done = subprocess.run([sys.executable, str(bench), "--requests", "40", "--rounds", "4", "--server", "inprocess"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert re.search(r"ratio full-stack/hand-written \(time\): \d+\.\d{3}", done.stdout), done.stdout
    assert "PRIVATE KEY" not in done.stdout + done.stderr
