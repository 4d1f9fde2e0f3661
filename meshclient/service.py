"""``MeshService``: a base URL bound to the identity that must serve it.

``svc = client.service("https://fraud-model.ml-serving.svc.cluster.local:8080", server_identity=ID)``
then ``svc.post("/invocations", json=...)``. Every call goes through the client's public
:meth:`~meshclient.MeshClient.request`; the service only fills in the URL, identity, SNI,
direct mode and its endpoints (whose latency and breaker state it keeps across calls).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from .errors import ConfigurationError
from .identity import Identity
from .redaction import redact_url
from .transport.balancer import DnsEndpoints, Endpoint, StaticEndpoints
from .transport.route import target_for

if TYPE_CHECKING:
    from .client import MeshClient
    from .transport.response import MeshResponse

__all__ = ["MeshService"]


class MeshService:
    """A base URL bound to a server identity: ``svc.post("/invocations", json=...)``.

    ``endpoints`` spreads requests over several addresses serving that identity: a list of
    ``host[:port]`` (the port defaults to the base URL's), or :class:`DnsEndpoints` for the
    A records of a headless service. ``direct`` as in :meth:`MeshClient.request` (with
    endpoints, ``direct=True``: each endpoint through its own inbound proxy).
    """

    def __init__(self, client: MeshClient, base_url: str, server_identity: Identity, *,
                 server_name: str | None = None,
                 endpoints: Iterable[str] | StaticEndpoints | DnsEndpoints | None = None,
                 direct: bool | str | None = None) -> None:
        if isinstance(base_url, str):
            base_url = base_url.rstrip("/")
        # checks URL, direct= and endpoints= now, and turns a list into endpoints that keep state
        target = target_for(base_url, server_identity, server_name=server_name, direct=direct, endpoints=endpoints)
        self.client = client
        self.base_url = base_url
        self.server_identity = server_identity
        self.server_name = server_name
        self.direct = direct
        self._endpoints = target.balancer.endpoints if target.balancer is not None else None

    @property
    def endpoints(self) -> list[Endpoint]:
        return list(self._endpoints.current()) if self._endpoints is not None else []

    def url(self, path: str) -> str:
        if not isinstance(path, str):
            raise ConfigurationError(f"MeshService paths are strings, got {type(path).__name__}.")
        if "://" in path:
            raise ConfigurationError(f"MeshService paths are relative; got the URL {redact_url(path)!r}.",
                                     hint="Use client.request(...) for another address.")
        return f"{self.base_url}/{path.lstrip('/')}" if path else self.base_url

    def request(self, method: str, path: str = "", **kwargs: Any) -> MeshResponse:
        return self.client.request(method, self.url(path), server_identity=self.server_identity,
                                   server_name=self.server_name, direct=self.direct, endpoints=self._endpoints,
                                   **kwargs)

    def get(self, path: str = "", **kwargs: Any) -> MeshResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str = "", **kwargs: Any) -> MeshResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str = "", **kwargs: Any) -> MeshResponse:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str = "", **kwargs: Any) -> MeshResponse:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str = "", **kwargs: Any) -> MeshResponse:
        return self.request("DELETE", path, **kwargs)

    def head(self, path: str = "", **kwargs: Any) -> MeshResponse:
        return self.request("HEAD", path, **kwargs)

    def __repr__(self) -> str:
        return f"MeshService({redact_url(self.base_url)!r}, server_identity='{self.server_identity}')"
