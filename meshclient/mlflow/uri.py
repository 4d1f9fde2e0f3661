"""``mesh+https://HOST:PORT/PATH?server_identity=ID``: the MLflow URIs that go through the mesh.

The identity travels in the query, which MLflow keeps when it appends a path
(``append_to_uri_path`` edits the path only). A URI whose path was glued after the query by
a cruder join (``...?server_identity=ID/more/path``) is read the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import ConfigurationError
from ..identity import Identity
from ..redaction import redact_url

__all__ = ["SCHEME", "MeshURI"]

SCHEME = "mesh+https"
_EXAMPLE = "mesh+https://10.0.3.10:5000?server_identity=mlflow.mlops.serviceaccount.identity.linkerd.cluster.local"


@dataclass(frozen=True)
class MeshURI:
    """A parsed ``mesh+https`` URI: the https URL it names, the identity that must serve it, other query pairs."""

    netloc: str
    path: str
    server_identity: Identity
    extra: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, uri: str) -> MeshURI:
        if not isinstance(uri, str) or not uri.lower().startswith(SCHEME + "://"):
            raise ConfigurationError(f"{redact_url(str(uri))!r} is not a {SCHEME}:// URI.", hint=f"Write e.g. {_EXAMPLE}.")
        parts = urlsplit(uri)
        if not parts.netloc or "@" in parts.netloc:
            raise ConfigurationError(f"{redact_url(uri)!r} has no HOST:PORT (or carries user info).",
                                     hint=f"Write e.g. {_EXAMPLE}.")
        path = parts.path
        pairs: list[tuple[str, str]] = []
        identity = None
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            if key == "server_identity":
                value, slash, tail = value.partition("/")
                if slash:  # a path appended after the query
                    path = path.rstrip("/") + "/" + tail
                identity = value
            else:
                pairs.append((key, value))
        if not identity:
            raise ConfigurationError(
                f"{redact_url(uri)} names no server identity: meshclient needs ?server_identity=ID to know who "
                "must answer (it never falls back to plain HTTPS).", hint=f"Write e.g. {_EXAMPLE}.")
        return cls(parts.netloc, path, Identity.parse(identity), tuple(pairs))

    @property
    def origin(self) -> str:
        return f"https://{self.netloc}"

    @property
    def https_url(self) -> str:
        """The https URL (path included, the identity left out of the query)."""
        return urlunsplit(("https", self.netloc, self.path, urlencode(self.extra), ""))

    def param(self, name: str) -> str | None:
        return next((v for k, v in self.extra if k == name), None)

    def with_path(self, path: str) -> MeshURI:
        return MeshURI(self.netloc, "/" + path.lstrip("/") if path else "", self.server_identity, self.extra)

    def __str__(self) -> str:
        query = urlencode([("server_identity", self.server_identity.value), *self.extra])
        return urlunsplit((SCHEME, self.netloc, self.path, query, ""))
