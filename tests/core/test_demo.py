"""``make demo`` (``meshclient demo``) runs end to end on the sandbox and checks its own steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshclient_sandbox import demo
from meshclient_sandbox.runner import OUTSIDER_IDENTITY, Sandbox

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_and_exits_zero(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHCLIENT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", "meshclient", "demo", "--workdir", str(tmp_path)], env=env,
                          cwd=tmp_path, capture_output=True, timeout=180, check=False)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    # each command is shown before its output, and each step's point is visible in it
    assert "$ meshclient doctor --target https://127.0.0.1:" in out
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
