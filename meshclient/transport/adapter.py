"""A ``requests`` adapter that pins every connection to a verified mesh identity.

Pools are keyed by (address, server identity, SNI, credentials generation), so a rotation
or a different identity never shares a connection. The adapter owns its pools instead of
using ``requests``' PoolManager: that keeps certifi out of the mesh context (``requests``
calls ``load_verify_locations(certifi)`` on any context when ``verify=True``) and works the
same on requests 2.31 (Databricks Runtime 15.4) and 2.32+.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool

from ..identity import Identity
from ..tls import PeerInfo, verify_server_identity

__all__ = ["Route", "TLSState", "MeshAdapter", "MeshHTTPSConnection", "MeshHTTPSConnectionPool"]


@dataclass(frozen=True)
class Route:
    """Where one request goes and who must answer: the unit of connection pooling."""

    host: str
    port: int
    server_identity: Identity
    sni: str

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True)
class TLSState:
    """One credentials generation's TLS context."""

    generation: int
    context: Any  # ssl.SSLContext


class MeshHTTPSConnection(HTTPSConnection):
    """An HTTPS connection that checks the server identity right after the handshake."""

    def __init__(self, *args: Any, mesh_identity: Identity, **kwargs: Any) -> None:
        self.mesh_identity = mesh_identity
        self.mesh_peer: PeerInfo | None = None
        super().__init__(*args, **kwargs)

    def connect(self) -> None:
        super().connect()
        try:
            self.mesh_peer = verify_server_identity(
                self.sock,  # type: ignore[arg-type]
                self.mesh_identity,
                where=f"{self.host}:{self.port}",
            )
        except BaseException:
            self.close()
            raise


class MeshHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = MeshHTTPSConnection  # type: ignore[assignment]


class MeshAdapter(HTTPAdapter):
    """Sends each prepared request over a pool chosen by its :class:`Route`.

    The client attaches the route to the prepared request (``request.mesh_route``) and the
    adapter picks the pool; ``tls_state`` returns the current generation's context.
    """

    def __init__(
        self,
        tls_state: Callable[[], TLSState],
        *,
        pool_maxsize: int = 10,
        max_pools: int = 64,
    ) -> None:
        self._tls_state = tls_state
        self._pool_maxsize = pool_maxsize
        self._max_pools = max_pools
        self._pools: OrderedDict[tuple[Any, ...], MeshHTTPSConnectionPool] = OrderedDict()
        self._pools_lock = threading.Lock()
        self._current = threading.local()
        super().__init__(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0)

    # -- pool selection -------------------------------------------------------------------
    def pool_for(self, route: Route) -> MeshHTTPSConnectionPool:
        state = self._tls_state()
        key = (route.host, route.port, route.server_identity.value, route.sni, state.generation)
        with self._pools_lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            stale = [k for k in self._pools if k[4] != state.generation]
            for k in stale:  # a new generation: old pools drain (in-flight responses keep their sockets)
                self._pools.pop(k).close()
            pool = MeshHTTPSConnectionPool(
                route.host,
                route.port,
                maxsize=self._pool_maxsize,
                block=False,
                ssl_context=state.context,
                cert_reqs="CERT_REQUIRED",
                server_hostname=route.sni,
                assert_hostname=False,  # identity is checked by MeshHTTPSConnection.connect
                mesh_identity=route.server_identity,
            )
            self._pools[key] = pool
            while len(self._pools) > self._max_pools:
                self._pools.popitem(last=False)[1].close()
            return pool

    def send(self, request: requests.PreparedRequest, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        route = getattr(request, "mesh_route", None)
        if route is None:
            raise requests.exceptions.InvalidURL("meshclient: request has no mesh route", request=request)
        self._current.route = route
        try:
            return super().send(request, *args, **kwargs)
        finally:
            self._current.route = None

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None, cert: Any = None) -> Any:
        return self.pool_for(request.mesh_route)

    def get_connection(self, url: Any, proxies: Any = None) -> Any:  # requests < 2.32.2
        return self.pool_for(self._current.route)

    def cert_verify(self, conn: Any, url: Any, verify: Any, cert: Any) -> None:
        """Never let requests load certifi or a client cert file into the mesh context."""
        return None

    def close(self) -> None:
        with self._pools_lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()
        super().close()

    def pool_count(self) -> int:
        with self._pools_lock:
            return len(self._pools)
