"""The sandbox's services come from one registry (``meshclient_sandbox.services``): the runner
builds what settings name, an unknown name is a clear error listing the known ones, and the
CLI's ``--service`` takes the same names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from meshclient_sandbox.runner import Sandbox, SandboxSettings
from meshclient_sandbox.services import DEFAULT_SERVICES, SERVICES, service_spec


def test_the_registry_lists_every_service_with_a_summary() -> None:
    assert set(DEFAULT_SERVICES) <= set(SERVICES)
    assert list(SERVICES) == ["echo", "results", "artifacts", "mlflow", "mlflow-scoring", "kserve"]
    assert all(spec.summary and callable(spec.build) for spec in SERVICES.values())


def test_an_unknown_service_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"unknown sandbox service 'nope' \(known: echo, results, artifacts"):
        service_spec("nope")
    with pytest.raises(ValueError, match="unknown sandbox service 'nope'"):
        Sandbox(SandboxSettings(tmp_path, services=("echo", "nope"))).start()


def test_the_runner_builds_exactly_the_services_named(tmp_path: Path) -> None:
    with Sandbox(SandboxSettings(tmp_path, services=("results",))) as sandbox:
        info = json.loads((tmp_path / "sandbox.json").read_text())
        assert list(info["services"]) == ["results"] and list(sandbox.apps) == ["results"]
        assert type(sandbox.apps["results"]).__name__ == "ResultsSink"


def test_the_cli_refuses_an_unknown_service(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-m", "meshclient", "sandbox", "--workdir", str(tmp_path / "m"),
                           "--service", "nope"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "--service 'nope' is not a sandbox service" in done.stderr
