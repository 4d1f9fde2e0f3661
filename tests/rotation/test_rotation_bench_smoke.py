"""Keeps bench/rotation.py working: a toy-size run finishes, rotates 3 times per row, fails nothing.

No timing checks: the figures are the benchmark's business, not the test suite's.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from meshclient_sandbox.nginx import find_nginx

BENCH = Path(__file__).resolve().parents[2] / "bench" / "rotation.py"


@pytest.mark.slow
@pytest.mark.peers
@pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (apt-get install nginx-light)")
def test_rotation_bench_runs_at_toy_size() -> None:
    done = subprocess.run([sys.executable, str(BENCH), "--seconds", "0.8", "--threads", "4"], capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    rows = re.findall(r"^\s+(nginx|proxy)\s+(file|issuer|anchors)\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+(\d+)\s+(\d+)",
                      done.stdout, re.M)
    assert len(rows) == 6, done.stdout
    assert all(failures == "0" and rotations == "3" for _, _, failures, rotations in rows), done.stdout
    assert "PRIVATE KEY" not in done.stdout + done.stderr
