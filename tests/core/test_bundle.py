"""bundle/databricks.yml is a bundle Databricks would accept, and names what the wheel really holds.

The job resources are checked against the bundle configuration schema through
``databricks-bundles``' models, which are generated from that schema and refuse unknown or
mistyped fields; the artifact is built exactly as the bundle builds it (``python3 setup.py
bdist_wheel``) and the wheel tasks' package and entry points are looked up in the wheel.
"""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest

yaml = pytest.importorskip("yaml")

ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "bundle"
TOP_LEVEL = {"bundle", "variables", "artifacts", "resources", "targets", "include", "workspace", "sync",
             "permissions", "run_as", "presets", "experimental"}


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    return dict(yaml.safe_load((BUNDLE / "databricks.yml").read_text()))


def _jobs(config: dict[str, Any]) -> dict[str, Any]:
    return dict(config["resources"]["jobs"])


def test_the_bundle_has_only_known_sections_and_declares_every_variable(config: dict[str, Any]) -> None:
    assert set(config) <= TOP_LEVEL and config["bundle"]["name"] == "meshclient"
    text = (BUNDLE / "databricks.yml").read_text()
    used = set(re.findall(r"\$\{var\.([A-Za-z_][A-Za-z0-9_]*)\}", text))
    assert used and used <= set(config["variables"]), used - set(config["variables"])
    assert "secret_scope" in used  # the identity's scope is a variable, never a literal secret
    assert "BEGIN" not in text and "PRIVATE KEY" not in text
    assert set(config["targets"]) == {"dev", "prod"}


def test_the_jobs_validate_against_the_bundle_schema(config: dict[str, Any]) -> None:
    jobs = pytest.importorskip("databricks.bundles.jobs", reason="pip install databricks-bundles")
    for name, job in _jobs(config).items():
        model = jobs.Job.from_dict(job)  # raises on an unknown or mistyped field anywhere in the job
        kinds = {("notebook" if t.notebook_task else "wheel" if t.python_wheel_task else "other")
                 for t in model.tasks}
        assert kinds == {"notebook", "wheel"}, name
    with pytest.raises(ValueError):  # the check can fail
        jobs.Job.from_dict({**_jobs(config)["meshclient_scoring"], "tasks": [{"task_key": "x", "bogus": 1}]})


def test_notebook_tasks_point_at_notebooks_in_the_repository(config: dict[str, Any]) -> None:
    for job in _jobs(config).values():
        for task in job["tasks"]:
            if "notebook_task" in task:
                path = (BUNDLE / task["notebook_task"]["notebook_path"]).resolve()
                assert path.is_file() and path.read_text().startswith("# Databricks notebook source")


def test_the_artifact_builds_the_wheel_the_tasks_name(config: dict[str, Any], tmp_path: Path) -> None:
    (artifact,) = config["artifacts"].values()
    assert artifact["type"] == "whl" and artifact["build"] == "python3 setup.py bdist_wheel"
    source = (BUNDLE / artifact["path"]).resolve()
    assert source == ROOT
    done = subprocess.run([sys.executable, "setup.py", "-q", "bdist_wheel", "--dist-dir", str(tmp_path)], cwd=source,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("meshclient-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        (eps,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
        scripts = dict(re.findall(r"^(\S+) = (\S+)$", zf.read(eps).decode(), re.M))
        (meta,) = [n for n in names if n.endswith(".dist-info/METADATA")]
        dist_name = re.search(r"^Name: (\S+)$", zf.read(meta).decode(), re.M).group(1)  # type: ignore[union-attr]
    for job in _jobs(config).values():
        for task in job["tasks"]:
            assert task["libraries"] == [{"whl": "../dist/*.whl"}]  # what bdist_wheel writes into dist/
            wheel_task = task.get("python_wheel_task")
            if wheel_task:
                assert wheel_task["package_name"] == dist_name == "meshclient"
                assert wheel_task["entry_point"] in scripts, (wheel_task["entry_point"], sorted(scripts))
