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
    offline = wheelhouse.runtime_env(offline=True)  # no PIP_* settings, no pip.conf (its find-links), no PYTHONPATH

    def run(*cmd: str | Path) -> subprocess.CompletedProcess[str]:  # outside the checkout: "" on sys.path is tmp
        return subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=offline, cwd=tmp_path)

    install = run(runtime, "-m", "pip", "install", "--no-index", "--find-links", house, "meshclient[databricks]")
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-2000:]
    assert "Successfully installed meshclient-" in install.stdout, install.stdout[-2000:]
    check = run(runtime, "-c", "import meshclient, databricks.sdk, urllib3, cryptography; print(meshclient.__version__, "
                "urllib3.__version__, cryptography.__version__, meshclient.__file__)")
    assert check.returncode == 0, check.stderr
    version, urllib3, cryptography, where = check.stdout.split()
    assert [urllib3, cryptography] == ["1.26.16", "41.0.3"]  # the runtime's own, untouched
    assert Path(where).is_relative_to(tmp_path / "runtime")  # the wheel's copy, not a checkout
    assert run(runtime, "-m", "pip", "check").returncode == 0
    for script in ("meshclient", "meshclient-score-table", "meshclient-push-artifacts", "meshclient-push-results"):
        assert (runtime.parent / script).is_file(), script  # what python_wheel_task entry points run
    shown = run(runtime.parent / "meshclient", "--version")
    assert shown.returncode == 0 and shown.stdout.strip() == f"meshclient {version}", shown.stdout + shown.stderr

    # the check can fail: a bare venv of the same Python (no runtime pins) cannot install from it offline
    assert run(python, "-m", "venv", tmp_path / "bare").returncode == 0
    bare = run(tmp_path / "bare" / "bin" / "python", "-m", "pip", "install", "--no-index", "--find-links", house,
               "meshclient[databricks]")
    assert bare.returncode != 0 and "No matching distribution" in bare.stdout + bare.stderr


def test_what_a_runtime_pins_is_never_downloaded() -> None:
    """The constraint file lists what the runtime ships: pandas for meshclient[pandas] on 15.4 is the runtime's."""
    needed = [("meshclient", "0.1.0"), ("pandas", "1.5.3"), ("PyJWT", "2.3.0"), ("mlflow_skinny", "2.11.4"),
              ("pytz", "2024.2")]
    assert _script().to_download(needed, ROOT / "compat" / "dbr-15.4-lts.txt") == ["pytz==2024.2"]
    assert _script().to_download(needed, ROOT / "compat" / "dbr-17.3-lts.txt") == ["pytz==2024.2"]

