"""A real ``mlflow server`` (tracking + ``--serve-artifacts``, SQLite backend) as a sandbox app.

The sandbox fronts it with an :class:`~meshclient_sandbox.proxy.InboundProxy` like any app, so
clients reach MLflow only over mTLS with a verified identity: tracking calls, the artifact
proxy (``/api/2.0/mlflow-artifacts/artifacts/...``) and the run's ``mlflow-artifacts:`` URIs.
Everything it writes (``mlflow.db``, ``artifacts/``, its log) stays in its workdir. It needs
``mlflow`` installed (``pip install mlflow``; the tests get it from ``make mlflow``); pass
``command=[".../bin/mlflow"]`` to run another installation (e.g. an older MLflow's venv).
"""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from ..nginx import PeerStartError, free_port, register_live, stop_process, tail, unregister_live, wait_for_port

__all__ = ["MlflowServer"]


class MlflowServer:
    """``mlflow server`` on loopback: :meth:`start` returns once ``/health`` answers; :meth:`stop` reaps it.

    Duck-types the :class:`~meshclient_sandbox.apps.App` lifecycle (``port``, ``url``,
    ``start()``, ``stop()``, ``with``) so the sandbox can put its inbound proxy in front.
    """

    name = "mlflow"

    def __init__(self, workdir: str | os.PathLike[str], *, host: str = "127.0.0.1", port: int = 0,
                 command: Sequence[str] | None = None, workers: int = 2, start_timeout: float = 120.0) -> None:
        self.workdir = Path(workdir)
        self.host = host
        self._port = port
        self.command = list(command) if command else [sys.executable, "-m", "mlflow"]
        self.workers = workers
        self.start_timeout = start_timeout
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    @property
    def artifacts_dir(self) -> Path:
        """Where the artifact proxy stores files (``--artifacts-destination``)."""
        return self.workdir / "artifacts"

    @property
    def log_path(self) -> Path:
        return self.workdir / "mlflow-server.log"

    def argv(self) -> list[str]:
        db = self.workdir / "mlflow.db"
        return [*self.command, "server", "--host", self.host, "--port", str(self._port),
                "--backend-store-uri", f"sqlite:///{db}", "--serve-artifacts",
                "--artifacts-destination", str(self.artifacts_dir),
                "--default-artifact-root", "mlflow-artifacts:/", "--workers", str(self.workers)]

    def start(self) -> MlflowServer:
        if self._proc is not None and self._proc.poll() is None:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        if not self._port:
            self._port = free_port(self.host)
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "PYTHONUNBUFFERED": "1"}
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(self.argv(), cwd=self.workdir, stdin=subprocess.DEVNULL, stdout=log,
                                          stderr=log, env=env, start_new_session=True)
        register_live(self)
        if not (wait_for_port(self.host, self._port, self._proc, timeout=self.start_timeout) and self._healthy()):
            self.stop()
            raise PeerStartError(f"mlflow server did not start on {self.host}:{self._port}:\n{tail(self.log_path, 30)}")
        return self

    def _healthy(self) -> bool:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline and self._proc is not None and self._proc.poll() is None:
            conn = http.client.HTTPConnection(self.host, self._port, timeout=5)
            try:
                conn.request("GET", "/health")
                if conn.getresponse().status == 200:
                    return True
            except OSError:
                pass
            finally:
                conn.close()
            time.sleep(0.2)
        return False

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc, grace=timeout)
        unregister_live(self)

    def __enter__(self) -> MlflowServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._proc is not None and self._proc.poll() is None else "stopped"
        return f"MlflowServer({self.host}:{self._port}, {state})"
