"""MLflow over the mesh: ``mesh+https`` tracking, model registry and artifact URIs (entry points).

::

    import meshclient, meshclient.mlflow, mlflow
    meshclient.mlflow.use(client)        # or MESHCLIENT_CERT/KEY/TRUST_ANCHORS, or MESHCLIENT_SECRET_SCOPE
    mlflow.set_tracking_uri("mesh+https://10.0.3.10:5000?server_identity=mlflow.mlops.serviceaccount.identity.linkerd.cluster.local")

Nothing else changes in user code: MLflow finds the plugins through the entry points
``mlflow.tracking_store``, ``mlflow.model_registry_store`` and ``mlflow.artifact_repository``
(scheme ``mesh+https``; plus ``mlflow-artifacts`` so a run's proxied artifacts follow its
tracking URI into the mesh). Importing this package does not import mlflow.
"""

from __future__ import annotations

from .client import ENV_SECRET_SCOPE, current_client, use
from .uri import SCHEME, MeshURI

__all__ = ["use", "current_client", "MeshURI", "SCHEME", "ENV_SECRET_SCOPE"]
