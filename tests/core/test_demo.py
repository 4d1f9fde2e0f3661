"""``make demo`` (``python -m meshclient.demo``) runs end to end and checks its own steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshclient import demo

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_and_exits_zero(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHCLIENT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    proc = subprocess.run([sys.executable, "-m", "meshclient.demo", "--workdir", str(tmp_path)], env=env,
                          cwd=tmp_path, capture_output=True, timeout=120, check=False)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    # each command is shown before its output, and each step's point is visible in it
    assert "$ meshclient doctor --target https://127.0.0.1:" in out
    assert "TLSv1.3" in out and "doctor: all checks passed" in out
    assert "$ meshclient request -i GET" in out and "HTTP/1.1 200 OK" in out
    assert f'"l5d-client-id": "{demo.CLIENT_ID}"' in out
    assert "No request was sent" in out and "the echo service received no request" in out
    assert "mesh policy" in out and "(exit status 22, as expected)" in out
    assert "Demo complete" in out and "!!" not in out
    assert "PRIVATE KEY" not in out
    assert (tmp_path / "notebook" / "tls.key").stat().st_mode & 0o077 == 0


def test_demo_notices_a_step_that_misbehaves(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """A demo that cannot fail proves nothing: a step whose expectation is wrong makes it fail."""
    from meshclient.credentials import Credentials
    from meshclient.sandbox.pki import SandboxPKI

    pki = SandboxPKI.create()
    leaf = pki.issue(demo.ECHO_ID)
    creds = Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem)
    with demo.echo_server(creds) as server:
        step = demo._Step("wrong expectation", ["request", "GET", server.url, "--server-identity", demo.ECHO_ID], 0,
                          ["never printed"])
        ok = demo._run_step(step, demo._command_env(os.environ, {}), server)
    assert not ok
    out = capsys.readouterr().out
    assert "did not go as expected" in out and "exit status 1, expected 0" in out
