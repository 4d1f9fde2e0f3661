"""Build an offline wheelhouse for one Databricks runtime: meshclient's wheel plus the wheels of
whatever ``meshclient[EXTRAS]`` needs that the runtime does not already ship, so that on a
cluster without index access

    %pip install --no-index --find-links /Volumes/<catalog>/<schema>/<volume>/wheels/dbr-15.4 'meshclient[databricks]'

works. "What the runtime ships" is its constraint file in ``compat/``: a throwaway venv of the
runtime's Python gets those pins (the packages meshclient's extras touch), then pip is asked,
without installing, what ``meshclient[EXTRAS]`` would add (``--dry-run --report``); exactly those
wheels are downloaded for that Python.

Usage: python scripts/wheelhouse.py compat/dbr-15.4-lts.txt 3.11 wheels/dbr-15.4 [--extras databricks]
       [--wheel wheels/meshclient-0.1.0-py3-none-any.whl]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
#: pins a runtime ships that meshclient's extras need (the rest — pyspark, pandas, ... — stay out of the venv)
RUNTIME_PACKAGES = ("requests", "urllib3", "certifi", "charset-normalizer", "idna", "cryptography", "cffi",
                    "pycparser", "pyjwt", "databricks-sdk", "google-auth", "protobuf")


def runtime_env(*, offline: bool = False) -> dict[str, str]:
    """The environment for the stand-in runtime's pip and Python: no ``PYTHONPATH`` (a source checkout
    on it makes pip think meshclient is installed already, and ``import meshclient`` find the checkout
    instead of the wheel). ``offline``: no pip configuration at all either (no ``PIP_*`` variables, no
    pip.conf: a machine-wide ``find-links`` would be a second wheelhouse), as on a cluster with nothing
    but ``--no-index --find-links``."""
    drop = ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "VIRTUAL_ENV")
    env = {k: v for k, v in os.environ.items() if k not in drop and not (offline and k.startswith("PIP_"))}
    if offline:
        env["PIP_CONFIG_FILE"] = os.devnull  # pip reads no configuration file at all
    return env


def _python(version: str) -> str:
    return subprocess.run([str(ROOT / "scripts" / "find-python"), version], check=True, capture_output=True,
                          text=True).stdout.strip()


def _normal(name: str) -> str:
    """A distribution name as PEP 503 compares them (PyJWT = pyjwt, mlflow_skinny = mlflow-skinny)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def runtime_pins(constraints: Path) -> dict[str, str]:
    pins = {}
    for line in constraints.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;#]+)", line.strip())
        if m:
            pins[_normal(m.group(1))] = m.group(2)
    return pins


def runtime_venv(python: str, constraints: Path, where: Path) -> Path:
    """A venv standing in for the runtime: its Python and its pins of the packages that matter here."""
    env = runtime_env()
    subprocess.run([python, "-m", "venv", str(where)], check=True, env=env)
    py = where / "bin" / "python"
    pins = runtime_pins(constraints)
    wanted = [f"{name}=={pins[name]}" for name in RUNTIME_PACKAGES if name in pins]
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True, env=env)
    subprocess.run([str(py), "-m", "pip", "install", "-q", *wanted], check=True, env=env)
    return py


def missing_from_runtime(py: Path, wheel: Path, extras: str, constraints: Path) -> list[tuple[str, str]]:
    """(name, version) of every distribution ``pip install wheel[extras]`` would add to the runtime."""
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([str(py), "-m", "pip", "install", "-q", "--dry-run", "--report", str(report),
                        "-c", str(constraints), f"{wheel}[{extras}]" if extras else str(wheel)], check=True,
                       env=runtime_env())
        doc = json.loads(report.read_text())
    return [(item["metadata"]["name"], item["metadata"]["version"]) for item in doc["install"]]


def to_download(needed: list[tuple[str, str]], constraints: Path) -> list[str]:
    """``name==version`` of what pip would add, less meshclient (copied in) and every package the constraint
    file pins: the runtime ships those (the stand-in venv holds only the ``RUNTIME_PACKAGES`` among them)."""
    shipped = set(runtime_pins(constraints)) | {"meshclient"}
    return [f"{name}=={version}" for name, version in needed if _normal(name) not in shipped]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("constraints", type=Path)
    ap.add_argument("python_version")
    ap.add_argument("out", type=Path)
    ap.add_argument("--extras", default="databricks")
    ap.add_argument("--wheel", type=Path, help="meshclient's wheel (default: the one in wheels/)")
    args = ap.parse_args()
    wheel = args.wheel or max((ROOT / "wheels").glob("meshclient-[0-9]*.whl"), key=lambda p: p.stat().st_mtime)
    python = _python(args.python_version)
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.whl"):
        old.unlink()
    with tempfile.TemporaryDirectory() as tmp:
        py = runtime_venv(python, args.constraints, Path(tmp) / "runtime")
        others = to_download(missing_from_runtime(py, wheel, args.extras, args.constraints), args.constraints)
        if others:  # only wheels (a cluster cannot build sdists offline), for the runtime's Python
            subprocess.run([str(py), "-m", "pip", "download", "-q", "--no-deps", "--only-binary", ":all:",
                            "-d", str(args.out), *others], check=True, env=runtime_env())
    shutil.copy2(wheel, args.out / wheel.name)
    names = sorted(p.name for p in args.out.glob("*.whl"))
    print(f"{args.out}: {len(names)} wheel(s) for Python {args.python_version} under {args.constraints.name} "
          f"(meshclient[{args.extras}] minus what the runtime ships): {', '.join(names)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
