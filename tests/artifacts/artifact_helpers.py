"""Helpers shared by the artifact tests (constants, trees, skip marks); fixtures are in conftest.py."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from meshclient_sandbox.nginx import find_nginx

STORE_ID = "store.ml-platform.serviceaccount.identity.linkerd.cluster.local"
OTHER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"

needs_nginx = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (apt-get install nginx-light)")
needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None,
                                  reason="mlflow is not installed (make mlflow)")

def make_tree(root: Path, *, hash_names: bool = True) -> Path:
    """Nested folders, empty files and an empty folder's sibling, non-ASCII and awkward names.

    ``hash_names=False`` leaves out '#' and '%' (MLflow's server refuses '#' and decodes '%' twice).
    """
    files = {
        "MLmodel": b"artifact_path: model\nflavors: {}\n",
        "empty.txt": b"",
        "data/weights.bin": os.urandom(3 * 1024 * 1024 + 17),
        "data/nested/deeper/empty": b"",
        "data/nested/deeper/tiny": b"x",
        "données/modèle – v1.json": "{\"clé\": \"valeur\"}".encode(),
        "日本語/ファイル.txt": "こんにちは\n".encode(),
        "with space/a+b=c & ~.txt": b"odd names travel percent-encoded\n",
    }
    if hash_names:
        files["with space/#hash?.txt"] = b"fragment and query characters\n"
        files["with space/100%20.txt"] = b"a literal percent sign\n"
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
