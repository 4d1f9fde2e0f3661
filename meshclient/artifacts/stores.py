"""Where artifacts go: a WebDAV-style ``PUT`` store, or an MLflow artifact proxy.

Both are spoken through the client's public :meth:`~meshclient.MeshClient.request` (one
request path: identity, policy, retries, audit). A store knows its URLs, what its answer to
a ``PUT`` proves, how to check a stored file without reading it back, and how to list.

* ``put``: ``PUT <to>/<path>`` (nginx ``dav_methods PUT``, the sandbox artifact store). A
  ``Content-Digest``/``Repr-Digest`` header or a JSON ``sha256`` in the answer is compared;
  otherwise ``HEAD`` gives the stored digest or at least its size. Listing: a JSON
  ``{"files": [{"path", "size"}]}`` answer to ``GET <to>/`` (the sandbox store); nginx cannot.
* ``mlflow``: ``mlflow server --serve-artifacts``: ``PUT/GET/DELETE
  /api/2.0/mlflow-artifacts/artifacts/<path>``; sizes checked by listing each directory
  (``GET ...artifacts?path=<dir>``, which answers basenames and ``file_size``).
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit, urlunsplit

from ..errors import ConfigurationError, HTTPStatusError, PolicyDeniedError
from ..identity import Identity
from ..redaction import redact_text, redact_url
from ..transport.response import MeshResponse, raise_for_status
from .digest import parse_sha256
from .manifest import MANIFEST_NAME
from .paths import check_base_url, check_relative, join_url, quote_path

__all__ = ["Store", "PutStore", "MlflowStore", "make_store", "PROTOCOLS", "MLFLOW_ARTIFACTS"]

PROTOCOLS = ("put", "mlflow")
MLFLOW_ARTIFACTS = "/api/2.0/mlflow-artifacts/artifacts"


class Store:
    """A base URL on a meshed server, plus the headers every request of one push/pull shares."""

    protocol = ""

    def __init__(self, client: Any, url: str, server_identity: Identity, headers: Mapping[str, str]) -> None:
        self.client = client
        self.url = url
        self.server_identity = server_identity
        self.headers = dict(headers)

    @property
    def name(self) -> str:
        """How messages show the store: its URL without query values."""
        return redact_url(self.url)

    def request(self, method: str, url: str, **kwargs: Any) -> MeshResponse:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        response: MeshResponse = self.client.request(method, url, server_identity=self.server_identity,
                                                     headers=headers, **kwargs)
        return response

    def file_url(self, rel: str) -> str:
        raise NotImplementedError

    @property
    def manifest_url(self) -> str:
        return self.file_url(MANIFEST_NAME)

    def refuse(self, rel: str) -> str | None:
        """Why this store cannot hold ``rel`` under that name (checked before anything is sent)."""
        return None

    def answer_sha256(self, response: MeshResponse) -> str | None:
        """The digest the store reports for what it stored, if its answer carries one."""
        found = parse_sha256(response.headers.get("Content-Digest")) or parse_sha256(response.headers.get("Repr-Digest"))
        if found:
            return found
        if "json" in response.headers.get("Content-Type", ""):
            try:
                doc = json.loads(response.content or b"null")
            except ValueError:
                return None
            value = doc.get("sha256") if isinstance(doc, dict) else None
            return value.lower() if isinstance(value, str) and len(value) == 64 else None
        return None

    def stat(self, rel: str) -> tuple[str | None, int | None]:
        """(sha-256, size) of a stored file without reading it, as far as the store tells."""
        raise NotImplementedError

    def stat_many(self, rels: list[str]) -> dict[str, tuple[str | None, int | None]] | None:
        """The same for many files at once where the store can (``None``: ask file by file)."""
        return None

    def list_files(self) -> list[tuple[str, int]] | None:
        """Every stored file (relative path, size), or ``None`` when the store cannot list."""
        raise NotImplementedError

    def delete(self, rel: str) -> bool:
        """Remove a file; ``False`` when the store does not allow deleting."""
        response = self.request("DELETE", self.file_url(rel))
        if response.status_code in (200, 202, 204, 404):
            return True
        if response.status_code in (405, 501):
            return False
        raise_for_status(response)
        return False


def _snippet(response: MeshResponse) -> str:
    """The start of an error answer's body (read if it was streamed: error bodies are small)."""
    try:
        text = response.text
    except Exception:  # a body that cannot be read or decoded adds nothing to the message
        text = ""
    return redact_text(" ".join((text or "").split())[:200])


def unexpected(response: MeshResponse, what: str) -> Exception:
    """The error for an answer that is not what ``what`` needed: the client's own status error
    (policy denials keep their type), with the start of the server's message."""
    snippet = _snippet(response)
    try:
        raise_for_status(response)
    except PolicyDeniedError as exc:
        return exc
    except HTTPStatusError as exc:
        message = f"{what}: {exc.message}" + (f" The server said: {snippet}" if snippet else "")
        return HTTPStatusError(message, status=exc.status, url=exc.url, hint=exc.hint)
    return ConfigurationError(f"{what}: unexpected answer {response.status_code}" + (f" ({snippet})." if snippet else "."))


class PutStore(Store):
    protocol = "put"

    def file_url(self, rel: str) -> str:
        return join_url(self.url, quote_path(rel))

    def stat(self, rel: str) -> tuple[str | None, int | None]:
        response = self.request("HEAD", self.file_url(rel))
        if response.status_code == 404:
            return None, None
        if response.status_code != 200:
            raise unexpected(response, f"HEAD {rel}")
        digest = parse_sha256(response.headers.get("Repr-Digest")) or parse_sha256(response.headers.get("Content-Digest"))
        length = response.headers.get("Content-Length", "")
        return digest, int(length) if length.isdigit() else None

    def list_files(self) -> list[tuple[str, int]] | None:
        response = self.request("GET", self.url.rstrip("/") + "/", headers={"Accept": "application/json"})
        if response.status_code != 200 or "json" not in response.headers.get("Content-Type", ""):
            return None
        try:
            doc = json.loads(response.content)
        except ValueError:
            return None
        files = doc.get("files") if isinstance(doc, dict) else None
        if not isinstance(files, list):
            return None
        prefix = str(doc.get("path") or "").strip("/")
        out = []
        for item in files:
            if isinstance(item, dict) and isinstance(item.get("path"), str) and isinstance(item.get("size"), int):
                rel = item["path"]
                if prefix and rel.startswith(prefix + "/"):
                    rel = rel[len(prefix) + 1:]
                out.append((check_relative(rel, f"the listing of {self.name}"), item["size"]))
        return out


class MlflowStore(Store):
    """``<to>`` = the server's base URL plus the artifact path; or a URL that already contains
    ``/api/2.0/mlflow-artifacts/artifacts/`` (a server under a path prefix)."""

    protocol = "mlflow"

    def __init__(self, client: Any, url: str, server_identity: Identity, headers: Mapping[str, str]) -> None:
        super().__init__(client, url, server_identity, headers)
        parts = urlsplit(url)
        path = parts.path
        if MLFLOW_ARTIFACTS in path:
            prefix, _, rest = path.partition(MLFLOW_ARTIFACTS)
        else:
            prefix, rest = "", path
        self.server = urlunsplit((parts.scheme, parts.netloc, prefix.rstrip("/"), "", ""))
        self.root = "/".join(unquote(seg) for seg in rest.split("/") if seg)
        self.query = parts.query

    def _api(self, rel_path: str) -> str:
        url = self.server + MLFLOW_ARTIFACTS + ("/" + quote_path(rel_path) if rel_path else "")
        return url + (f"?{self.query}" if self.query else "")

    def refuse(self, rel: str) -> str | None:
        # MLflow's server refuses '#' ("Invalid path") and percent-decodes paths twice, so a
        # literal '%20' in a name would be stored as a space: refused here, before sending.
        bad = sorted({c for c in rel if c in "#%"})
        if bad:
            return (f"MLflow's artifact server cannot store names containing {' or '.join(repr(c) for c in bad)} "
                    "(it refuses '#' and decodes '%' twice); rename the file or use protocol='put'")
        return None

    def full(self, rel: str) -> str:
        return f"{self.root}/{rel}" if self.root else rel

    def file_url(self, rel: str) -> str:
        return self._api(self.full(rel) if rel else self.root)

    def list_dir(self, rel_dir: str) -> dict[str, tuple[bool, int | None]]:
        """{basename: (is_dir, size)} of a directory under the root ('' = the root itself)."""
        path = self.full(rel_dir) if rel_dir else self.root
        response = self.request("GET", self.server + MLFLOW_ARTIFACTS, params={"path": path} if path else None)
        if response.status_code != 200:
            raise unexpected(response, f"listing {path or '/'} on {self.name}")
        try:
            files = response.json().get("files") or []
        except (ValueError, AttributeError):
            raise ConfigurationError(f"The MLflow listing of {path or '/'} at {self.name} is not JSON.") from None
        out: dict[str, tuple[bool, int | None]] = {}
        for item in files:
            name = posixpath.basename(str(item.get("path", "")))
            if name:
                is_dir = bool(item.get("is_dir"))
                size = item.get("file_size", None if is_dir else 0)  # protobuf JSON leaves out a 0
                out[name] = (is_dir, int(size) if size is not None else None)
        return out

    def stat(self, rel: str) -> tuple[str | None, int | None]:
        found = self.list_dir(posixpath.dirname(rel)).get(posixpath.basename(rel))
        return (None, found[1]) if found and not found[0] else (None, None)

    def stat_many(self, rels: list[str]) -> dict[str, tuple[str | None, int | None]] | None:
        by_dir: dict[str, list[str]] = {}
        for rel in rels:
            by_dir.setdefault(posixpath.dirname(rel), []).append(rel)
        out: dict[str, tuple[str | None, int | None]] = {}
        for directory, members in by_dir.items():
            listing = self.list_dir(directory)
            for rel in members:
                found = listing.get(posixpath.basename(rel))
                out[rel] = (None, found[1]) if found and not found[0] else (None, None)
        return out

    def list_files(self) -> list[tuple[str, int]] | None:
        out: list[tuple[str, int]] = []
        todo = [""]
        while todo:
            directory = todo.pop()
            for name, (is_dir, size) in sorted(self.list_dir(directory).items()):
                rel = f"{directory}/{name}" if directory else name
                if is_dir:
                    todo.append(rel)
                else:
                    out.append((check_relative(rel, f"the listing of {self.name}"), size or 0))
        return sorted(out)


def make_store(client: Any, url: str, server_identity: str | Identity, protocol: str,
               headers: Mapping[str, str]) -> Store:
    check_base_url(url, "The artifact URL")
    identity = Identity.parse(server_identity)
    if protocol == "put":
        return PutStore(client, url, identity, headers)
    if protocol == "mlflow":
        return MlflowStore(client, url, identity, headers)
    raise ConfigurationError(f"protocol must be one of {', '.join(PROTOCOLS)}, got {protocol!r:.40}.",
                             hint='Use protocol="put" for a WebDAV-style store, "mlflow" for an MLflow artifact proxy.')
