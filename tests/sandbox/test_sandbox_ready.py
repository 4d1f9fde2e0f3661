"""``meshclient sandbox wait DIR``, atomic files and the env.sh exports, as the README uses them:
``meshclient sandbox --workdir D & meshclient sandbox wait D && source D/env.sh``, pasted as a script."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from meshclient.cli import plugins
from meshclient.cli.main import main as cli_main
from meshclient_sandbox.ready import SandboxNotReady, wait_ready
from meshclient_sandbox.runner import READY_FILE

REPO = Path(__file__).resolve().parents[2]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHCLIENT_", "DATABRICKS_", "MESH_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def test_the_readme_block_works_pasted_as_a_script(tmp_path: Path) -> None:
    workdir = tmp_path / "mesh"
    script = textwrap.dedent(f"""\
        set -e
        meshclient sandbox --workdir {workdir} > {tmp_path}/sandbox.log 2>&1 &
        pid=$!
        trap 'kill $pid; wait $pid' EXIT
        meshclient sandbox wait {workdir} --timeout 90
        . {workdir}/env.sh
        meshclient request GET "$MESH_ECHO_URL/hello" --server-identity "$MESH_ECHO_ID"
        echo "token url: ${{MESH_OIDC_TOKEN_URL%%/token*}}"
        """)
    done = subprocess.run(["bash", "-c", script], env=_env(), capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr + (tmp_path / "sandbox.log").read_text()
    assert '"client_id": "notebook.ml-team' in done.stdout  # the echo app saw the verified identity
    assert not (workdir / READY_FILE).exists()  # removed when the sandbox stopped


def test_wait_names_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(SandboxNotReady, match="no running sandbox has written"):
        wait_ready(tmp_path, timeout=0.3, poll=0.05)
    (tmp_path / READY_FILE).write_text("999999999\n")  # a stale marker of a sandbox that is gone
    with pytest.raises(SandboxNotReady, match="is not running"):
        wait_ready(tmp_path, timeout=0.1, poll=0.05)


def test_wait_on_the_command_line_is_exit_1_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["sandbox", "wait", str(tmp_path), "--timeout", "0.2"]) == 1
    assert "was not ready after 0.2 s" in capsys.readouterr().err
    assert cli_main(["sandbox", "wait", str(tmp_path), "--timeout", "-1"]) == 2


def test_a_workdir_that_cannot_be_used_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["sandbox", "--workdir", "/proc/forbidden/mesh"]) == 2
    err = capsys.readouterr().err
    assert "--workdir '/proc/forbidden/mesh' cannot be used" in err and "internal error" not in err


def test_without_the_sandbox_distribution_the_command_says_what_to_install(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(plugins, "entry_points", lambda group: [])
    assert cli_main(["sandbox", "--workdir", "x"]) == 2
    err = capsys.readouterr().err
    assert "pip install meshclient-sandbox" in err and "Traceback" not in err
    assert cli_main(["--help"]) == 0
    assert "not installed: pip install meshclient-sandbox" in " ".join(capsys.readouterr().out.split())
