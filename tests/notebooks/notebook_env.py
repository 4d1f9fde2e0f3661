"""What the notebook tests share by import (a module of its own: ``from conftest import`` would
find whichever tests/*/conftest.py Python loaded first)."""

from __future__ import annotations

import importlib.util

from meshclient_sandbox.apps.model_servers import venv_python

__all__ = ["TOKEN_LIFETIME", "optional_services"]

#: seconds an OIDC token from the sandbox issuer lives (the long-job notebook runs longer than this)
TOKEN_LIFETIME = 6.0


def optional_services() -> dict[str, str | None]:
    """Each optional service and why it is missing (``None``: available)."""
    return {
        "mlflow": None if importlib.util.find_spec("mlflow") and importlib.util.find_spec("sklearn")
        else "mlflow and scikit-learn are not installed (make mlflow)",
        "mlflow-scoring": None if venv_python("mlflow") is not None
        else "the MLflow scoring server's venv is missing (make model-servers)",
    }
