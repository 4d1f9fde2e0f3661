"""Artifacts into the mesh: files and trees pushed streamed, in parallel, digest-checked, manifest last.

::

    from meshclient import artifacts
    report = artifacts.push(client, "model_dir/", to="https://10.0.3.7:8443/runs/42",
                            server_identity=ID, protocol="put", workers=8)
    report.files, report.bytes, report.seconds, report.sha256
    artifacts.pull(client, "https://10.0.3.7:8443/runs/42", dest="restored/", server_identity=ID)

Protocols, store paths and the manifest format: ``docs/artifacts.md``.
"""

from __future__ import annotations

from .errors import (
    ArtifactChangedError,
    ArtifactError,
    ArtifactIntegrityError,
    ArtifactPullError,
    ArtifactPushError,
    FailedFile,
)
from .manifest import MANIFEST_NAME, Manifest, ManifestEntry
from .pull import PullReport, pull
from .push import FileResult, PushReport, push

__all__ = [
    "push",
    "pull",
    "PushReport",
    "PullReport",
    "FileResult",
    "Manifest",
    "ManifestEntry",
    "MANIFEST_NAME",
    "ArtifactError",
    "ArtifactPushError",
    "ArtifactPullError",
    "ArtifactIntegrityError",
    "ArtifactChangedError",
    "FailedFile",
]
