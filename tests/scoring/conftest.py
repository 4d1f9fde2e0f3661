"""A sandbox with the real model servers (MLflow's scoring server, KServe's) behind inbound proxies.

Both run from their own venvs (``make model-servers``); without them these tests are skipped
with the reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from meshclient_sandbox.apps.model_servers import venv_python
from meshclient_sandbox.runner import Sandbox, SandboxSettings


@pytest.fixture(scope="module")
def model_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    missing = [k for k in ("mlflow", "kserve") if venv_python(k) is None]
    if missing:
        pytest.skip(f"model server venvs missing: {', '.join(missing)} (make model-servers)")
    settings = SandboxSettings(tmp_path_factory.mktemp("model-sandbox"), services=("mlflow-scoring", "kserve"))
    with Sandbox(settings) as sandbox:
        yield sandbox
