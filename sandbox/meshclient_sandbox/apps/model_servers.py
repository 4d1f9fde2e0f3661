"""Real model servers for the sandbox: MLflow's scoring server and KServe's, each a subprocess
run from its own virtual environment (``make model-servers``: ``.venv-mlflow``, ``.venv-kserve``;
their pins conflict), plus a :class:`ScoringRelay` that sits between the inbound proxy and a
server to record what the server side sees (requests in flight, rows scored) and to answer 503
to chosen first attempts.

Each class is app-like: ``port``, ``url``, ``start()`` (returns once the server answers),
``stop()``. The relay's counters are what the scoring tests assert on.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._base import App, AppError, Request

__all__ = ["venv_python", "ModelServerProcess", "MlflowModelServer", "KServeModelServer", "ScoringRelay",
           "sandbox_model_server", "model_dir", "run_in_venv", "local_predictions", "KSERVE_SCRIPT", "MLFLOW_TRAIN", "MLFLOW_PREDICT"]

log = logging.getLogger("meshclient_sandbox.models")

KSERVE_SCRIPT = str(Path(__file__).with_name("kserve_model.py"))
_REPO = Path(__file__).resolve().parents[3]

#: Trains a scikit-learn decision-tree regressor on iris and saves it as an MLflow model (argv[1]:
#: the directory). Floats out, so exact float transport is tested; a tree's answer for a row does
#: not depend on the batch around it (a linear model's BLAS sums do, in the last bit).
MLFLOW_TRAIN = """
import sys, mlflow.sklearn, pandas as pd
from mlflow.models import infer_signature
from sklearn.datasets import load_iris
from sklearn.tree import DecisionTreeRegressor
x, y = load_iris(return_X_y=True, as_frame=True)
x.columns = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
model = DecisionTreeRegressor(max_depth=8, random_state=0).fit(x, y.astype("float64") * 1.37 + 0.01 * x["sepal_width"])
signature = infer_signature(x, model.predict(x))
try:
    mlflow.sklearn.save_model(model, sys.argv[1], signature=signature, skops_trusted_types=["sklearn.tree._tree.Tree"])
except TypeError:  # MLflow before skops serialization
    mlflow.sklearn.save_model(model, sys.argv[1], signature=signature)
"""
#: The model's own predictions, loaded with pyfunc (argv: model dir, input Parquet, output Parquet).
MLFLOW_PREDICT = """
import sys, mlflow.pyfunc, pandas as pd
pdf = pd.read_parquet(sys.argv[2])
pd.DataFrame({"prediction": mlflow.pyfunc.load_model(sys.argv[1]).predict(pdf)}).to_parquet(sys.argv[3])
"""


def venv_python(name: str) -> Path | None:
    """``<repo>/.venv-<name>/bin/python`` (or ``$MESHCLIENT_<NAME>_VENV``) when it was made, else ``None``."""
    root = os.environ.get(f"MESHCLIENT_{name.upper()}_VENV")
    for base in ([Path(root)] if root else []) + [_REPO / f".venv-{name}", Path.cwd() / f".venv-{name}"]:
        python = base / "bin" / "python"
        if python.exists() and (base / ".installed").exists():
            return python
    return None


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class ModelServerProcess:
    """A model server subprocess on loopback; ``start()`` waits until ``ready_path`` answers 200."""

    name = "model-server"

    def __init__(self, command: Sequence[str], *, ready_path: str, host: str = "127.0.0.1", port: int = 0,
                 log_path: str | os.PathLike[str] | None = None, start_timeout: float = 120.0,
                 env: dict[str, str] | None = None) -> None:
        self.host = host
        self._port = port or _free_port(host)
        self.command = [c.replace("{port}", str(self._port)) for c in command]
        self.ready_path = ready_path
        self.log_path = Path(log_path) if log_path else None
        self.start_timeout = start_timeout
        self.env = env
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._port}"

    def start(self) -> ModelServerProcess:
        out: Any = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        env = {**os.environ, **(self.env or {})}
        env.pop("PYTHONPATH", None)
        try:
            self._proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=env,
                                          start_new_session=True)
        finally:
            if out is not subprocess.DEVNULL:
                out.close()
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self._proc.returncode} while starting "
                                   f"(log: {self.log_path})")
            try:
                conn = http.client.HTTPConnection(self.host, self._port, timeout=2)
                conn.request("GET", self.ready_path)
                if conn.getresponse().status == 200:
                    conn.close()
                    log.info("%s ready on %s", self.name, self.url)
                    return self
                conn.close()
            except OSError:
                pass
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"{self.name} did not get ready in {self.start_timeout:.0f} s (log: {self.log_path})")

    def stop(self, timeout: float = 10.0) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)


class MlflowModelServer(ModelServerProcess):
    """``mlflow models serve --env-manager local -m MODEL_DIR -p PORT -h 127.0.0.1`` from ``.venv-mlflow``."""

    name = "mlflow-scoring-server"

    def __init__(self, model_dir: str | os.PathLike[str], *, python: str | os.PathLike[str] | None = None,
                 workers: int = 1, **kwargs: Any) -> None:
        py = Path(python) if python else venv_python("mlflow")
        if py is None:
            raise RuntimeError("The MLflow scoring server needs .venv-mlflow (make model-servers).")
        mlflow = str(Path(py).with_name("mlflow"))
        path = f"{Path(py).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # it execs the venv's uvicorn
        super().__init__([mlflow, "models", "serve", "--env-manager", "local", "-m", str(model_dir), "-p", "{port}",
                          "-h", kwargs.get("host", "127.0.0.1"), "-w", str(workers)], ready_path="/ping",
                         env={"MLFLOW_DISABLE_TELEMETRY": "true", "DO_NOT_TRACK": "true", "PATH": path}, **kwargs)


class KServeModelServer(ModelServerProcess):
    """KServe's ``ModelServer`` with the sandbox's v2 iris model (``kserve_model.py``) from ``.venv-kserve``."""

    name = "kserve-model-server"

    def __init__(self, model_dir: str | os.PathLike[str], *, model_name: str = "iris",
                 python: str | os.PathLike[str] | None = None, **kwargs: Any) -> None:
        py = Path(python) if python else venv_python("kserve")
        if py is None:
            raise RuntimeError("The KServe model server needs .venv-kserve (make model-servers).")
        self.model_name = model_name
        super().__init__([str(py), KSERVE_SCRIPT, "serve", "--model-dir", str(model_dir), "--name", model_name,
                          "--http_port", "{port}", "--enable_grpc", "false"],
                         ready_path=f"/v2/models/{model_name}/ready", **kwargs)


def _rows_of(body: bytes, headers: Any) -> list[tuple[Any, ...]]:
    """The rows a scoring request carries (MLflow ``dataframe_split``, or v2's first input)."""
    length = headers.get("Inference-Header-Content-Length")
    try:
        if length is None:
            doc = json.loads(body)
            if "dataframe_split" in doc:
                return [tuple(r) for r in doc["dataframe_split"]["data"]]
            first = doc["inputs"][0]
            flat, shape = first["data"], first["shape"]
        else:
            import numpy as np

            size = int(length)
            doc = json.loads(body[:size])
            first = doc["inputs"][0]
            shape = first["shape"]
            raw = body[size:size + int(first["parameters"]["binary_data_size"])]
            flat = np.frombuffer(raw, dtype="<f8").tolist()
        width = int(shape[1]) if len(shape) > 1 else 1
        return [tuple(flat[i:i + width]) for i in range(0, len(flat), width)]
    except (ValueError, KeyError, IndexError, TypeError):
        return []


class ScoringRelay(App):
    """A plain-HTTP relay in front of a model server that records the server side of scoring.

    Records requests in flight (``max_in_flight``), scoring requests, and (``record_rows``) every
    row the server scored with a 200 — so tests can prove no row was lost or scored twice.
    ``fail_every=k`` answers 503 to the first attempt of every k-th scoring request (by its
    ``Idempotency-Key``, else its body's digest); ``delay`` holds each scoring request that long.
    """

    name = "scoring-relay"

    def __init__(self, upstream_port: int, *, upstream_host: str = "127.0.0.1", fail_every: int = 0,
                 delay: float = 0.0, record_rows: bool = True, server: ModelServerProcess | None = None,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.server = server
        self.upstream = (upstream_host, upstream_port)
        self.fail_every, self.delay, self.record_rows = fail_every, delay, record_rows
        self._lock = threading.Lock()
        self._local = threading.local()
        self.reset()

    def reset(self) -> None:
        """Clear the counters (between tests)."""
        with self._lock:
            self.in_flight = 0
            self.max_in_flight = 0
            self.requests = 0
            self.faults = 0
            self.scored_rows: Counter[tuple[Any, ...]] = Counter()
            self.client_ids: Counter[str] = Counter()
            self._seen_keys: set[str] = set()

    def _fault(self, key: str) -> bool:
        if not self.fail_every or not key:
            return False
        with self._lock:
            if key in self._seen_keys:
                return False
            self._seen_keys.add(key)
            digest = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16)
            if digest % self.fail_every == 0:
                self.faults += 1
                return True
        return False

    def _forward(self, method: str, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, list[tuple[str, str]], bytes]:
        for attempt in (1, 2):
            conn = getattr(self._local, "conn", None)
            if conn is None:
                conn = self._local.conn = http.client.HTTPConnection(*self.upstream, timeout=300)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                return resp.status, resp.getheaders(), resp.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def start(self) -> ScoringRelay:
        """Start the model server (when the relay owns one), then the relay."""
        if self.server is not None:
            self.server.start()
            self.upstream = (self.server.host, self.server.port)
        try:
            super().start()
        except BaseException:
            if self.server is not None:
                self.server.stop()
            raise
        return self

    def stop(self, timeout: float = 10.0) -> None:
        super().stop(timeout)
        if self.server is not None:
            self.server.stop(timeout)

    def handle(self, request: Request) -> None:
        body = request.body.read_all(512 * 1024 * 1024)
        scoring = request.method == "POST"
        key = request.headers.get("Idempotency-Key") or hashlib.sha256(body).hexdigest()  # same on a retry
        if scoring and self._fault(key):
            request.send_json(503, {"error": "injected fault: try again"}, headers={"Retry-After": "0"})
            return
        headers = {k: v for k, v in request.headers.items()
                   if k.lower() in ("content-type", "inference-header-content-length", "accept")}
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.client_ids[request.client_id or "-"] += 1
        try:
            if scoring and self.delay:
                time.sleep(self.delay)
            try:
                status, resp_headers, data = self._forward(request.method, request.path + (
                    f"?{request.query}" if request.query else ""), body, headers)
            except (OSError, http.client.HTTPException):
                raise AppError(502, "upstream_error", "The model server did not answer.") from None
        finally:
            with self._lock:
                self.in_flight -= 1
        if scoring:
            rows = _rows_of(body, request.headers) if self.record_rows and status == 200 else []
            with self._lock:
                self.requests += 1
                self.scored_rows.update(rows)
        keep = {k: v for k, v in resp_headers if k.lower() in ("content-type", "inference-header-content-length")}
        request.send_bytes(status, data, keep.pop("Content-Type", keep.pop("content-type", "application/json")), keep)


def model_dir(kind: str, workdir: str | os.PathLike[str]) -> Path:
    """The sandbox's trained model for ``kind`` (``mlflow`` or ``kserve``) under ``workdir``, made once."""
    target = Path(workdir) / "models" / kind
    python = venv_python(kind)
    if python is None:
        raise RuntimeError(f"The {kind} model server needs .venv-{kind} (make model-servers).")
    if kind == "mlflow" and not (target / "MLmodel").exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        run_in_venv(python, MLFLOW_TRAIN, str(target))
    elif kind == "kserve" and not (target / "model.joblib").exists():
        run_in_venv(python, f"import runpy, sys; sys.argv = ['kserve_model', 'train', '--model-dir', {str(target)!r}];"
                            f" runpy.run_path({KSERVE_SCRIPT!r}, run_name='__main__')")
    return target


def sandbox_model_server(kind: str, workdir: str | os.PathLike[str], options: dict[str, Any] | None = None,
                         host: str = "127.0.0.1") -> ScoringRelay:
    """The sandbox service ``mlflow`` or ``kserve``: the real server behind a :class:`ScoringRelay`."""
    options = dict(options or {})
    logs = Path(workdir) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    directory = model_dir(kind, workdir)
    server: ModelServerProcess
    if kind == "mlflow":
        server = MlflowModelServer(directory, host=host, log_path=logs / "mlflow-scoring.log")
    else:
        server = KServeModelServer(directory, host=host, log_path=logs / "kserve.log")
    return ScoringRelay(0, server=server, host=host, fail_every=int(options.get("fail_every", 0)),
                        delay=float(options.get("delay", 0.0)))


def run_in_venv(python: str | os.PathLike[str], code: str, *args: str, timeout: float = 300.0) -> None:
    """Run ``code`` with a model server venv's Python (training a model, local predictions)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(MLFLOW_DISABLE_TELEMETRY="true", DO_NOT_TRACK="true")
    done = subprocess.run([str(python), "-c", code, *args], capture_output=True, timeout=timeout, env=env)
    if done.returncode != 0:
        sys.stderr.write(done.stderr.decode(errors="replace")[-4000:])
        raise RuntimeError(f"the model venv's Python failed with {done.returncode}")


def local_predictions(kind: str, workdir: str | os.PathLike[str], features: Any) -> Any:
    """The sandbox model's own predictions for a pandas DataFrame, computed in its venv (the tests' truth).

    ``mlflow``: a DataFrame with ``prediction`` (pyfunc ``predict``); ``kserve``: ``label`` and ``proba``.
    """
    import tempfile

    import numpy as np
    import pandas as pd

    directory = model_dir(kind, workdir)
    python = venv_python(kind)
    assert python is not None
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        if kind == "mlflow":
            features.to_parquet(os.path.join(tmp, "in.parquet"))
            run_in_venv(python, MLFLOW_PREDICT, str(directory), os.path.join(tmp, "in.parquet"),
                        os.path.join(tmp, "out.parquet"))
            return pd.read_parquet(os.path.join(tmp, "out.parquet"))
        np.save(os.path.join(tmp, "in.npy"), features.to_numpy(dtype="float64"))
        done = subprocess.run([str(python), KSERVE_SCRIPT, "predict", "--model-dir", str(directory), "--input",
                               os.path.join(tmp, "in.npy"), "--output", os.path.join(tmp, "out.npz")],
                              capture_output=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"local KServe model predictions failed: {done.stderr.decode(errors='replace')[-2000:]}")
        out = np.load(os.path.join(tmp, "out.npz"))
        return pd.DataFrame({"label": out["label"], "proba": list(out["proba"].tolist())})
