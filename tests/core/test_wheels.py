"""The two distributions, as built: the library wheel (what clusters install) carries no sandbox,
nothing that imports pytest and no test material; the sandbox wheel carries the pytest plugin and
the ``meshclient sandbox``/``demo`` commands as entry points."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _build(source: Path, out: Path) -> zipfile.ZipFile:
    shutil.rmtree(source / "build", ignore_errors=True)  # a stale build/lib must not leak files into the wheel
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(source)], capture_output=True, text=True, timeout=300, cwd=out)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = out.glob("*.whl")
    return zipfile.ZipFile(wheel)


def test_the_library_wheel_has_no_sandbox_and_no_pytest(tmp_path: Path) -> None:
    wheel = _build(ROOT, tmp_path)
    names = wheel.namelist()
    code = [n for n in names if n.endswith(".py")]
    assert code and all(n.startswith("meshclient/") for n in code), [n for n in code if not n.startswith("meshclient/")]
    assert not [n for n in names if "sandbox" in n.split("/")[0] or n.startswith("meshclient/sandbox")]
    assert "meshclient/py.typed" in names
    importing_pytest = [n for n in code if b"import pytest" in wheel.read(n) or b"from pytest" in wheel.read(n)]
    assert importing_pytest == []
    entry_points = next(wheel.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "pytest11" not in entry_points and "meshclient.commands" not in entry_points
    assert "meshclient = meshclient.cli.main:main" in entry_points


def test_the_sandbox_wheel_brings_the_plugin_and_the_commands(tmp_path: Path) -> None:
    wheel = _build(ROOT / "sandbox", tmp_path)
    names = wheel.namelist()
    assert all(n.startswith(("meshclient_sandbox/", "meshclient_sandbox-")) for n in names), names
    entry_points = next(wheel.read(n).decode() for n in names if n.endswith("entry_points.txt"))
    assert "[pytest11]" in entry_points and "meshclient_sandbox.pytest_plugin" in entry_points
    assert "[meshclient.commands]" in entry_points and "sandbox = meshclient_sandbox.cli:register" in entry_points
    metadata = next(wheel.read(n).decode() for n in names if n.endswith("METADATA"))
    assert "Requires-Dist: meshclient" in metadata
