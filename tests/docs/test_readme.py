"""The README's snippets, run as written against the local sandbox mesh, in README order.

The sandbox block (``meshclient sandbox --workdir /tmp/mesh &`` ...) runs first, as a newcomer pastes
it; then every ``python`` block in one interpreter (they build on each other: ``creds``, ``client``),
then the other ``sh`` blocks. Notebook magics (``%pip``) are the only lines left out: the package
is already installed here. The ``make`` block is checked with ``make -n``; the install block (fenced
``sh install``, it would reinstall this environment) is checked against what ``make wheel`` builds.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
WORKDIR = Path("/tmp/mesh")  # the README's own path
pytestmark = pytest.mark.slow

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```$", re.M | re.S)


def blocks() -> list[tuple[str, str, int]]:
    """(info string, code, line number) of every fenced block with a language."""
    text = README.read_text()
    found = []
    for m in _FENCE.finditer(text):
        info = m.group(1).strip()
        if info:
            found.append((info, m.group(2), text[: m.start()].count("\n") + 1))
    return found


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHCLIENT_", "DATABRICKS_", "MESH_"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


def _sourced(env: dict[str, str]) -> dict[str, str]:
    done = subprocess.run(["bash", "-c", f"source {WORKDIR}/env.sh && env -0"], env=env, capture_output=True,
                          check=True)
    pairs = (item.split("=", 1) for item in done.stdout.decode().split("\0") if "=" in item)
    return dict(pairs)


def _python_runner(codes: list[tuple[str, int]]) -> str:
    parts = ["import sys, traceback", "ns = {'__name__': '__main__'}"]
    for code, line in codes:
        body = "\n".join(ln for ln in code.splitlines() if not ln.lstrip().startswith("%"))
        parts.append(f"print('--- README line {line}', flush=True)")
        parts.append(f"exec(compile({body!r}, 'README.md:{line}', 'exec'), ns)")
    return "\n".join(parts) + "\n"


def test_every_readme_snippet_runs_as_written(tmp_path: Path) -> None:
    found = blocks()
    sandbox_blocks = [b for b in found if b[0] == "sh" and "meshclient sandbox --workdir /tmp/mesh" in b[1]]
    assert len(sandbox_blocks) == 1
    if (WORKDIR / "sandbox.pid").exists():
        pytest.fail(f"a sandbox already runs in {WORKDIR} (the README's path): stop it first")
    work = tmp_path / "work"
    work.mkdir()
    env = _env()
    starter = subprocess.Popen(["bash", "-ec", sandbox_blocks[0][1]], cwd=work, env=env, start_new_session=True,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        out = starter.communicate(timeout=180)[0].decode()
        assert starter.returncode == 0, out + _log()
        assert '"client_id": "notebook.ml-team' in out  # the echo app saw the verified identity
        env = _sourced(env)

        codes = [(code, line) for info, code, line in found if info == "python"]
        done = subprocess.run([sys.executable, "-c", _python_runner(codes)], cwd=work, env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        assert (work / "restored" / "weights" / "model.bin").read_bytes() == (
            work / "model_dir" / "weights" / "model.bin").read_bytes()

        for info, code, line in found:
            if info != "sh" or (info, code, line) == sandbox_blocks[0]:
                continue
            if code.lstrip().startswith("make "):
                targets = [ln.split()[1] for ln in code.splitlines() if ln.startswith("make ")]
                assert subprocess.run(["make", "-n", *targets], cwd=ROOT, capture_output=True).returncode == 0
                continue
            run = subprocess.run(["bash", "-ec", code], cwd=work, env=env, capture_output=True, text=True,
                                 timeout=180)
            assert run.returncode == 0, f"README.md:{line}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}"
    finally:
        _stop(starter)


def test_the_install_block_names_the_wheels_make_wheel_builds() -> None:
    (install,) = [code for info, code, _ in blocks() if info == "sh install"]
    assert "make wheel" in install and "wheels/meshclient-*.whl" in install
    assert "wheel: venv" in (ROOT / "Makefile").read_text() and "-w wheels . ./sandbox" in (ROOT / "Makefile").read_text()
    other = {info for info, _, _ in blocks()} - {"python", "sh", "sh install"}
    assert other == set(), f"README blocks this test does not run: {other}"


def _log() -> str:
    try:
        return Path("/tmp/mesh.log").read_text()[-3000:]
    except OSError:
        return ""


def _stop(starter: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(starter.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    for _ in range(100):
        if not (WORKDIR / "sandbox.pid").exists():
            break
        subprocess.run(["sleep", "0.1"])
    shutil.rmtree(WORKDIR, ignore_errors=True)
