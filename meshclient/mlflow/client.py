"""Which mesh identity MLflow's plugins use: ``meshclient.mlflow.use(client)``, else the environment.

A notebook calls ``use(client)`` once; a job or an executor sets ``MESHCLIENT_CERT``,
``MESHCLIENT_KEY`` and ``MESHCLIENT_TRUST_ANCHORS`` (paths or PEM text) or
``MESHCLIENT_SECRET_SCOPE`` (a Databricks secret scope with ``tls.crt``/``tls.key``/``ca.crt``).
Without any of them every ``mesh+https`` call fails with a clear error: there is no fallback to
plain HTTPS, and no identity is ever guessed.
"""

from __future__ import annotations

import os
import threading
from typing import TYPE_CHECKING

from ..credentials import Credentials
from ..credentials.loaders import ENV_CERT, ENV_KEY, ENV_TRUST_ANCHORS
from ..errors import ArgumentTypeError, MaterialNotFoundError

if TYPE_CHECKING:
    from ..client import MeshClient

__all__ = ["use", "current_client", "ENV_SECRET_SCOPE"]

ENV_SECRET_SCOPE = "MESHCLIENT_SECRET_SCOPE"

_lock = threading.Lock()
_chosen: MeshClient | None = None
_from_env: tuple[tuple[str, ...], MeshClient] | None = None  # (the variables it was built from, the client)


def use(client: MeshClient | None) -> None:
    """Make ``client`` the identity of every ``mesh+https`` MLflow call in this process (``None``: back to the environment)."""
    from ..client import MeshClient

    if client is not None and not isinstance(client, MeshClient):
        raise ArgumentTypeError(f"meshclient.mlflow.use takes a MeshClient, got {type(client).__name__}.",
                                hint="Build one: meshclient.MeshClient(meshclient.Credentials.from_files(...)).")
    global _chosen
    with _lock:
        _chosen = client


def current_client() -> MeshClient:
    """The client of :func:`use`, else one built once from the environment; a clear error without either."""
    global _from_env
    with _lock:
        if _chosen is not None:
            return _chosen
        names = (ENV_SECRET_SCOPE, ENV_CERT, ENV_KEY, ENV_TRUST_ANCHORS)
        key = tuple(os.environ.get(n, "") for n in names)
        if _from_env is not None and _from_env[0] == key:
            return _from_env[1]
        from ..client import MeshClient

        scope = os.environ.get(ENV_SECRET_SCOPE, "").strip()
        if scope:
            creds = Credentials.from_secret_scope(scope)
        elif any(os.environ.get(n, "").strip() for n in (ENV_CERT, ENV_KEY, ENV_TRUST_ANCHORS)):
            creds = Credentials.from_env()
        else:
            raise MaterialNotFoundError(
                "MLflow was given a mesh+https URI but no mesh identity is configured for it; meshclient never "
                "falls back to plain HTTPS.",
                hint=f"In a notebook call meshclient.mlflow.use(client); in a job set {ENV_CERT}, {ENV_KEY} and "
                f"{ENV_TRUST_ANCHORS} (paths or PEM), or {ENV_SECRET_SCOPE}=<secret scope with tls.crt, tls.key, ca.crt>.",
            )
        if _from_env is not None:  # the environment changed: rebuild (the old client's pools go)
            _from_env[1].close()
        _from_env = (key, MeshClient(creds))
        return _from_env[1]
