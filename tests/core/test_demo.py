"""``make demo`` (``meshclient demo``) runs end to end on the sandbox and checks its own steps."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from meshclient_sandbox import demo, demo_ml
from meshclient_sandbox.runner import OUTSIDER_IDENTITY, Sandbox

REPO = Path(__file__).resolve().parents[2]


def _demo(tmp_path: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHCLIENT_", "DATABRICKS_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", "meshclient", "demo", "--workdir", str(tmp_path), *args], env=env,
                          cwd=tmp_path, capture_output=True, timeout=600, check=False)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    return out


@pytest.mark.slow
def test_the_whole_story_runs_and_checks_itself(tmp_path: Path) -> None:
    """``make demo``: the mesh, then the ML job (MLflow over mesh+https, Spark scoring against the real
    model server, results exactly once through a dying task, the audit trail), then the summary."""
    if demo_ml.missing():
        pytest.skip(f"the ML half needs {', '.join(demo_ml.missing())} (make demo installs them)")
    out = _demo(tmp_path)
    assert "$ meshclient doctor --secret-scope ml-mesh" in out and "doctor: all checks passed" in out
    assert "mesh+https://127.0.0.1:" in out and "loaded back with runs:/" in out
    assert "20,000 rows scored" in out and "the model server saw 20,001 rows" in out
    assert re.search(r"committed version 1 via .*: \d+ batches, 20,000 rows, 20,000 distinct ids", out)
    dead = re.search(r"the dead attempt's (\d+) were discarded", out)
    assert dead and int(dead.group(1)) > 0, out  # the dying attempt had staged rows; none became visible
    assert re.search(r"\d+ request events in audit.jsonl .* each with the client's identity", out)
    assert "-- Summary" in out and "Demo complete" in out and "FAILED" not in out and "!!" not in out
    assert "PRIVATE KEY" not in out and "eyJ" not in out
    # the receiver's side: the committed dataset holds each row once
    manifest = json.loads((tmp_path / "data" / "results" / "datasets" / "iris-scores" / "manifest.json").read_text())
    assert manifest["version"] == 1 and len(manifest["jobs"]) == 1


def test_demo_runs_and_exits_zero(tmp_path: Path) -> None:
    out = _demo(tmp_path, "--mesh-only")
    # each command is shown before its output, and each step's point is visible in it
    assert "$ meshclient doctor --secret-scope ml-mesh --target https://127.0.0.1:" in out
    assert "TLSv1.3" in out and "doctor: all checks passed" in out
    assert "$ meshclient request -i GET" in out and "HTTP/1.1 200 OK" in out
    assert f'"l5d-client-id": "{demo.CLIENT_ID}"' in out
    assert "No request was sent" in out and "the echo service's proxy received no request" in out
    assert "l5d-proxy-error: unauthorized" in out and OUTSIDER_IDENTITY in out
    assert "(exit status 22, as expected)" in out
    assert "--direct 127.0.0.1:" in out and '"path": "/direct"' in out
    assert '"subject": "ml-pipeline"' in out and '"token": "verified"' in out
    assert "Demo complete" in out and "!!" not in out
    assert "PRIVATE KEY" not in out
    assert (tmp_path / "identities" / "notebook" / "tls.key").stat().st_mode & 0o077 == 0


def test_demo_notices_a_step_that_misbehaves(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A demo that cannot fail proves nothing: a step whose expectation is wrong makes it fail."""
    with Sandbox(tmp_path) as sandbox:
        url = sandbox.service("echo")["url"]
        step = demo._Step("wrong expectation", ["request", "GET", url, "--server-identity", demo.ECHO_ID], 0,
                          ["never printed"], no_request=True)
        ok = demo._run_step(step, demo._command_env(os.environ, {}), sandbox)
    assert not ok
    out = capsys.readouterr().out
    assert "did not go as expected" in out and "exit status 1, expected 0" in out
