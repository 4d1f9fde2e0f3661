"""``make wheels``' offline wheelhouse installs meshclient[databricks] on Databricks Runtime 15.4's
pins with no package index, as ``%pip install --no-index --find-links /Volumes/.../wheels/dbr-15.4``
does on a cluster without index access (a venv of the runtime's Python with its pins stands in)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def _script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("wheelhouse", ROOT / "scripts" / "wheelhouse.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_wheelhouse_alone_installs_meshclient_on_the_15_4_pins(tmp_path: Path) -> None:
    wheelhouse = _script()
    try:
        python = wheelhouse._python("3.11")
    except subprocess.CalledProcessError:
        pytest.skip("Python 3.11 is not installed (the runtime's Python)")
    built = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(built), str(ROOT)], check=True)
    (wheel,) = built.glob("meshclient-*.whl")
    house = tmp_path / "dbr-15.4"
    constraints = ROOT / "compat" / "dbr-15.4-lts.txt"
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "wheelhouse.py"), str(constraints), "3.11", str(house),
                           "--wheel", str(wheel)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (house / wheel.name).is_file()

    runtime = wheelhouse.runtime_venv(python, constraints, tmp_path / "runtime")
    install = subprocess.run([str(runtime), "-m", "pip", "install", "--no-index", "--find-links", str(house),
                              "meshclient[databricks]"], capture_output=True, text=True)
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    check = subprocess.run([str(runtime), "-c", "import meshclient, databricks.sdk, urllib3, cryptography; "
                            "print(meshclient.__version__, urllib3.__version__, cryptography.__version__)"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout.split()[1:] == ["1.26.16", "41.0.3"]  # the runtime's own, untouched
    assert subprocess.run([str(runtime), "-m", "pip", "check"], capture_output=True).returncode == 0
    version = subprocess.run([str(runtime.parent / "meshclient"), "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("meshclient ")

    # the check can fail: a bare venv of the same Python (no runtime pins) cannot install from it offline
    subprocess.run([python, "-m", "venv", str(tmp_path / "bare")], check=True)
    bare = subprocess.run([str(tmp_path / "bare" / "bin" / "python"), "-m", "pip", "install", "--no-index",
                           "--find-links", str(house), "meshclient[databricks]"], capture_output=True, text=True)
    assert bare.returncode != 0 and "No matching distribution" in bare.stdout + bare.stderr
