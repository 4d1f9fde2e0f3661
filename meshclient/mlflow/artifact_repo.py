"""Entry point ``mlflow.artifact_repository``: ``mesh+https`` artifact URIs, and ``mlflow-artifacts:``
URIs of runs whose tracking URI is ``mesh+https``.

``MeshArtifactRepository`` logs with :func:`meshclient.artifacts.push` (files in parallel,
streamed, each digest-checked) and lists, downloads and deletes through the same stores: an
MLflow artifact proxy (a path under ``/api/2.0/mlflow-artifacts/artifacts``) or a PUT store
that lists (``?protocol=put``, the default for other paths). The constructor takes MLflow 3's
``tracking_uri``/``registry_uri`` keywords and works with 2.x's single argument too.

MLflow resolves ``mlflow-artifacts:`` only against an http(s) tracking URI, so this module also
registers a factory for that scheme: with a ``mesh+https`` tracking URI it returns a
``MeshArtifactRepository`` on the tracking server's artifact proxy; with any other tracking URI
it builds MLflow's own ``MlflowArtifactsRepository`` exactly as MLflow would.
"""

from __future__ import annotations

import inspect
import posixpath
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from mlflow.entities import FileInfo
from mlflow.store.artifact.artifact_repo import ArtifactRepository

from ..artifacts.pull import fetch
from ..artifacts.push import push
from ..artifacts.stores import MLFLOW_ARTIFACTS, MlflowStore, Store, make_store
from ..errors import ConfigurationError
from .client import current_client
from .uri import SCHEME, MeshURI

__all__ = ["MeshArtifactRepository", "mlflow_artifacts_repository"]

_BASE_TAKES_URIS = "tracking_uri" in inspect.signature(ArtifactRepository.__init__).parameters


class MeshArtifactRepository(ArtifactRepository):  # type: ignore[misc]
    """Artifacts at ``mesh+https://HOST:PORT/PATH?server_identity=ID`` (see the module doc)."""

    def __init__(self, artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None,
                 **kwargs: Any) -> None:
        if _BASE_TAKES_URIS:
            super().__init__(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri)
        else:
            super().__init__(artifact_uri)
        self.mesh_uri = MeshURI.parse(artifact_uri)
        protocol = self.mesh_uri.param("protocol") or ("mlflow" if MLFLOW_ARTIFACTS in self.mesh_uri.path else "put")
        if protocol not in ("put", "mlflow"):
            raise ConfigurationError(f"{SCHEME} artifact URIs take protocol=put or protocol=mlflow, got {protocol!r:.20}.")
        self.protocol = protocol

    # -- helpers ---------------------------------------------------------------------------
    def _url(self, artifact_path: str | None = None) -> str:
        uri = self.mesh_uri
        if artifact_path:
            uri = uri.with_path(uri.path.rstrip("/") + "/" + quote(artifact_path.strip("/")))
        extra = tuple((k, v) for k, v in uri.extra if k != "protocol")
        return MeshURI(uri.netloc, uri.path, uri.server_identity, extra).https_url

    def _store(self) -> Store:
        return make_store(current_client(), self._url(), self.mesh_uri.server_identity, self.protocol, {})

    # -- MLflow's ArtifactRepository ----------------------------------------------------------
    def log_artifact(self, local_file: str, artifact_path: str | None = None) -> None:
        push(current_client(), local_file, to=self._url(artifact_path), server_identity=self.mesh_uri.server_identity,
             protocol=self.protocol, workers=1, manifest=False, progress=False)

    def log_artifacts(self, local_dir: str, artifact_path: str | None = None) -> None:
        push(current_client(), local_dir, to=self._url(artifact_path), server_identity=self.mesh_uri.server_identity,
             protocol=self.protocol, workers=8, manifest=False)

    def list_artifacts(self, path: str | None = None) -> list[FileInfo]:
        store = self._store()
        prefix = (path or "").strip("/")
        if isinstance(store, MlflowStore):
            if prefix and not store.list_dir(posixpath.dirname(prefix)).get(posixpath.basename(prefix), (True,))[0]:
                return []  # a file, not a directory: MLflow lists nothing
            listing = store.list_dir(prefix)
            return [FileInfo(posixpath.join(prefix, name) if prefix else name, is_dir, None if is_dir else size)
                    for name, (is_dir, size) in sorted(listing.items())]
        listed = store.list_files()
        if listed is None:
            raise ConfigurationError(f"The artifact store at {store.name} cannot list its files.",
                                     hint="Use an MLflow artifact proxy or a store that lists (protocol=put, JSON listing).")
        children: dict[str, FileInfo] = {}
        for rel, size in listed:
            if prefix and not rel.startswith(prefix + "/"):
                continue
            rest = rel[len(prefix) + 1:] if prefix else rel
            head, sep, _ = rest.partition("/")
            full = posixpath.join(prefix, head) if prefix else head
            children[full] = FileInfo(full, True, None) if sep else FileInfo(full, False, size)
        return [children[k] for k in sorted(children)]

    def _download_file(self, remote_file_path: str, local_path: str) -> None:
        fetch(self._store(), remote_file_path.strip("/"), Path(local_path))

    def delete_artifacts(self, artifact_path: str | None = None) -> None:
        store = self._store()
        rel = (artifact_path or "").strip("/")
        if isinstance(store, MlflowStore):
            response = store.request("DELETE", store.file_url(rel))
            if response.status_code not in (200, 204, 404):
                from ..artifacts.stores import unexpected
                raise unexpected(response, f"deleting {rel or '/'}")
            return
        for info in self.list_artifacts(rel or None):
            if info.is_dir:
                self.delete_artifacts(info.path)
            elif not store.delete(info.path):
                raise ConfigurationError(f"The artifact store at {store.name} does not allow deleting {info.path}.")


def _construct(cls: Any, artifact_uri: str, tracking_uri: str | None, registry_uri: str | None) -> Any:
    params = inspect.signature(cls.__init__).parameters
    kwargs = {k: v for k, v in (("tracking_uri", tracking_uri), ("registry_uri", registry_uri)) if k in params}
    return cls(artifact_uri, **kwargs)


def mesh_uri_for_mlflow_artifacts(artifact_uri: str, tracking: MeshURI) -> MeshURI:
    """``mlflow-artifacts:/1/<run>/artifacts`` on a mesh tracking server → its artifact proxy URL."""
    parts = urlsplit(artifact_uri)
    path = parts.path or "/"
    if not path.startswith(MLFLOW_ARTIFACTS):
        path = tracking.path.rstrip("/") + MLFLOW_ARTIFACTS + "/" + path.lstrip("/")
    return MeshURI(parts.netloc or tracking.netloc, quote(path.rstrip("/") or "/"), tracking.server_identity,
                   tuple((k, v) for k, v in tracking.extra if k != "protocol"))


def mlflow_artifacts_repository(artifact_uri: str, tracking_uri: str | None = None,
                                registry_uri: str | None = None, **_: Any) -> Any:
    """The ``mlflow-artifacts`` scheme: through the mesh when the tracking URI is ``mesh+https``, else MLflow's own."""
    from mlflow.store.artifact.mlflow_artifacts_repo import MlflowArtifactsRepository

    effective = tracking_uri
    if effective is None:
        from mlflow.tracking._tracking_service.utils import get_tracking_uri

        effective = get_tracking_uri()
    if isinstance(effective, str) and effective.lower().startswith(SCHEME + "://"):
        uri = mesh_uri_for_mlflow_artifacts(artifact_uri, MeshURI.parse(effective))
        return MeshArtifactRepository(str(uri), tracking_uri=tracking_uri, registry_uri=registry_uri)
    return _construct(MlflowArtifactsRepository, artifact_uri, tracking_uri, registry_uri)
