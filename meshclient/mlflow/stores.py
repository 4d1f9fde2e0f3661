"""Entry points ``mlflow.tracking_store`` / ``mlflow.model_registry_store`` for ``mesh+https``.

MLflow's own ``RestStore`` classes do the work (every tracking and registry API, in whatever
MLflow version is installed); only their host is the https URL of the ``mesh+https`` URI, and
that origin's calls are carried by :mod:`meshclient.mlflow.transport` over the mesh.
"""

from __future__ import annotations

from typing import Any

from .client import current_client
from .transport import register_origin
from .uri import MeshURI

__all__ = ["tracking_store", "registry_store"]


def _host_creds(uri: MeshURI) -> Any:
    from mlflow.utils.rest_utils import MlflowHostCreds

    host = uri.https_url.rstrip("/")
    # MLflow's own auth settings (MLFLOW_TRACKING_TOKEN, ...) still apply on top of the mesh identity;
    # its TLS settings (verify, client cert) are not used: the mesh client has its own.
    try:
        from mlflow.utils.credentials import get_default_host_creds

        creds = get_default_host_creds(host)
        creds.host = host
        return creds
    except Exception:
        return MlflowHostCreds(host)


def _prepare(store_uri: str) -> MeshURI:
    uri = MeshURI.parse(store_uri)
    current_client()  # no identity: a clear error now, not a TLS failure later
    register_origin(uri.origin, uri.server_identity)
    return uri


def tracking_store(store_uri: str, artifact_uri: str | None = None, **_: Any) -> Any:
    """MLflow's REST tracking store for ``mesh+https://HOST:PORT[/PATH]?server_identity=ID``."""
    from mlflow.store.tracking.rest_store import RestStore

    uri = _prepare(store_uri)
    return RestStore(lambda: _host_creds(uri))


def registry_store(store_uri: str, tracking_uri: str | None = None, **_: Any) -> Any:
    """MLflow's REST model-registry store for a ``mesh+https`` URI."""
    from mlflow.store.model_registry.rest_store import RestStore

    uri = _prepare(store_uri)
    return RestStore(lambda: _host_creds(uri))
