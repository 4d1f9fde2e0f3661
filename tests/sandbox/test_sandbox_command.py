"""``meshclient sandbox`` as a newcomer runs it: a foreground process that writes sandbox.json,
serves the mesh, and stops cleanly on SIGTERM / Ctrl-C leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import meshclient
from meshclient_sandbox.runner import CLIENT_IDENTITY, OUTSIDER_IDENTITY, READY_FILE

REPO = Path(__file__).resolve().parents[2]


def _start(workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHCLIENT_", "DATABRICKS_"))}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return subprocess.Popen([sys.executable, "-m", "meshclient", "sandbox", "--workdir", str(workdir), *extra],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _wait_ready(proc: subprocess.Popen[bytes], workdir: Path) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"sandbox exited early: {proc.stdout.read().decode() if proc.stdout else ''}")
        path = workdir / "sandbox.json"
        if (workdir / READY_FILE).exists():  # written last, after sandbox.json and env.sh
            try:
                return dict(json.loads(path.read_text()))
            except ValueError:
                pass  # being written
        time.sleep(0.1)
    raise AssertionError("sandbox.json did not appear within 60 s")


def _port_closed(url: str) -> bool:
    host, port = url.removeprefix("https://").rsplit(":", 1)
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, int(port))) != 0


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_sandbox_command_serves_and_stops_cleanly(tmp_path: Path, stop_signal: int) -> None:
    proc = _start(tmp_path)
    try:
        info = _wait_ready(proc, tmp_path)
        # the documented shape
        assert set(info["services"]) == {"echo", "results", "artifacts"}
        for name, svc in info["services"].items():
            assert svc["identity"] == f"{name}.ml-platform.serviceaccount.identity.linkerd.cluster.local"
            assert svc["url"].startswith("https://127.0.0.1:") and svc["direct"].startswith("127.0.0.1:")
            assert isinstance(svc["app_port"], int)
        assert info["client"]["identity"] == CLIENT_IDENTITY
        assert {"cert", "key"} <= set(info["issuer"]) and Path(info["trust_anchors"]).is_file()
        assert {"issuer", "token_url", "client_id", "client_secret", "audience"} <= set(info["oidc"])
        assert {"host", "token", "secret_scope"} <= set(info["workspace"])
        assert {"address", "role", "pki_mount", "auth_mount", "audience"} <= set(info["vault"])
        assert (tmp_path / "sandbox.json").stat().st_mode & 0o077 == 0
        env_sh = (tmp_path / "env.sh").read_text()
        assert "export MESHCLIENT_CERT=" in env_sh and "export DATABRICKS_HOST=" in env_sh

        echo = info["services"]["echo"]
        creds = meshclient.Credentials.from_files(info["client"]["cert"], info["client"]["key"], info["trust_anchors"])
        with meshclient.MeshClient(creds) as client:
            body = client.get(f"{echo['url']}/hi", server_identity=echo["identity"]).json()
            assert body["client_id"] == CLIENT_IDENTITY
        outsider = meshclient.Credentials.from_files(info["outsider"]["cert"], info["outsider"]["key"],
                                                     info["trust_anchors"])
        with meshclient.MeshClient(outsider) as client:
            resp = client.get(f"{echo['url']}/hi", server_identity=echo["identity"])
            assert resp.status_code == 403 and resp.headers["l5d-proxy-error"]
            assert OUTSIDER_IDENTITY in resp.text
    finally:
        proc.send_signal(stop_signal)
        out = proc.communicate(timeout=30)[0].decode()
    assert proc.returncode == 0, out
    assert "meshclient sandbox running" in out and "stopping the sandbox" in out
    assert "PRIVATE KEY" not in out
    for svc in info["services"].values():
        assert _port_closed(svc["url"]), f"{svc['url']} still accepts connections after stop"


def test_sandbox_restart_keeps_pki_and_data(tmp_path: Path) -> None:
    """The workdir survives a restart: the same trust anchor (issued material stays valid)."""
    proc = _start(tmp_path)
    try:
        first = _wait_ready(proc, tmp_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    anchor = Path(first["trust_anchors"]).read_bytes()
    (tmp_path / "sandbox.json").unlink()
    proc = _start(tmp_path, "--allow", "etl.finance.serviceaccount.identity.linkerd.cluster.local")
    try:
        second = _wait_ready(proc, tmp_path)
        assert Path(second["trust_anchors"]).read_bytes() == anchor
        assert second["policy"]["allow"] == ["etl.finance.serviceaccount.identity.linkerd.cluster.local"]
        echo = second["services"]["echo"]
        outsider = meshclient.Credentials.from_files(second["outsider"]["cert"], second["outsider"]["key"],
                                                     second["trust_anchors"])
        with meshclient.MeshClient(outsider) as client:
            assert client.get(f"{echo['url']}/hi", server_identity=echo["identity"]).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    assert proc.returncode == 0
