"""A ``requests`` adapter that pins every connection to a verified mesh identity.

Pools are keyed by (address, server identity, SNI, credentials generation), so a rotation
or a different identity never shares a connection. The adapter owns its pools instead of
using ``requests``' PoolManager: that keeps certifi out of the mesh context (``requests``
calls ``load_verify_locations(certifi)`` on any context when ``verify=True``) and works the
same on requests 2.31 (Databricks Runtime 15.4) and 2.32+.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPSConnection
from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import ClosedPoolError, ConnectTimeoutError
from urllib3.response import HTTPResponse

from ..errors import TLSHandshakeError
from ..identity import Identity
from ..redaction import redact_query
from ..tls import PeerInfo, verify_server_identity
from .header import ALPN, TransportHeader, encode_header

__all__ = ["Route", "TLSState", "MeshAdapter", "MeshHTTPSConnection", "MeshHTTPSConnectionPool",
           "DirectHTTPSConnection", "DirectHTTPSConnectionPool"]


@dataclass(frozen=True)
class Route:
    """Where one request goes and who must answer: the unit of connection pooling."""

    host: str
    port: int
    server_identity: Identity
    sni: str
    #: Linkerd direct mode: the application port to name in the transport header, while
    #: ``host:port`` is the proxy's inbound port (4143 in a cluster).
    direct_target_port: int | None = None

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def is_direct(self) -> bool:
        return self.direct_target_port is not None


@dataclass(frozen=True)
class TLSState:
    """One credentials generation's TLS contexts: transparent, and direct (ALPN) when needed."""

    generation: int
    context: Any  # ssl.SSLContext
    direct_context: Any = None


class _RedactQueryValues(logging.Filter):
    """urllib3 logs every request line at DEBUG, query string included; query values may be
    secrets (API keys, signed URLs). Keep the names, drop the values."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 5 and isinstance(args[4], str) and "?" in args[4]:
            path, _, query = args[4].partition("?")
            record.args = (*args[:4], f"{path}?{redact_query(query)}", *args[5:])
        return True


_urllib3_log = logging.getLogger("urllib3.connectionpool")
if not any(isinstance(f, _RedactQueryValues) for f in _urllib3_log.filters):
    _urllib3_log.addFilter(_RedactQueryValues())


class _StrictHTTPResponse(HTTPResponse):
    """urllib3 1.26 returns a body cut short as a success; 2.x refuses. Refuse on both."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("enforce_content_length", True)
        super().__init__(*args, **kwargs)


class MeshHTTPSConnection(HTTPSConnection):
    """An HTTPS connection that checks the server identity right after the handshake."""

    def __init__(self, *args: Any, mesh_identity: Identity, **kwargs: Any) -> None:
        self.mesh_identity = mesh_identity
        self.mesh_peer: PeerInfo | None = None
        super().__init__(*args, **kwargs)

    def connect(self) -> None:
        try:
            super().connect()
        except TimeoutError as exc:  # TCP accepted, TLS handshake stalled: still a connect failure
            self.close()
            raise ConnectTimeoutError(
                self, f"TLS handshake with {self.host}:{self.port} timed out (connect timeout {self.timeout})"
            ) from exc
        except OSError as exc:  # reset during connect/handshake: nothing of the request was sent
            exc.mesh_before_send = True  # type: ignore[attr-defined]
            raise
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
    ResponseCls = _StrictHTTPResponse  # type: ignore[assignment]


class DirectHTTPSConnection(MeshHTTPSConnection):
    """Linkerd direct mode: after the verified handshake, write the transport header."""

    def __init__(self, *args: Any, mesh_target_port: int, **kwargs: Any) -> None:
        self.mesh_target_port = mesh_target_port
        super().__init__(*args, **kwargs)

    def connect(self) -> None:
        super().connect()
        try:
            negotiated = self.sock.selected_alpn_protocol()  # type: ignore[union-attr]
            if negotiated != ALPN:
                raise TLSHandshakeError(
                    f"The server at {self.host}:{self.port} did not accept ALPN '{ALPN}' (got {negotiated!r}): "
                    "it is not a Linkerd inbound proxy's direct port.",
                    hint="Use the proxy's inbound port (4143 in a cluster) for direct mode, or drop direct=.",
                )
            self.sock.sendall(encode_header(TransportHeader(port=self.mesh_target_port)))  # type: ignore[union-attr]
        except BaseException:
            self.close()
            raise


class DirectHTTPSConnectionPool(HTTPSConnectionPool):
    ConnectionCls = DirectHTTPSConnection  # type: ignore[assignment]
    ResponseCls = _StrictHTTPResponse  # type: ignore[assignment]


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
        self._pools: OrderedDict[tuple[Any, ...], HTTPSConnectionPool] = OrderedDict()
        self._pools_lock = threading.Lock()
        self._current = threading.local()
        super().__init__(pool_connections=1, pool_maxsize=pool_maxsize, max_retries=0)

    # -- pool selection -------------------------------------------------------------------
    def pool_for(self, route: Route) -> HTTPSConnectionPool:
        state = self._tls_state()
        key = (route.host, route.port, route.server_identity.value, route.sni, route.direct_target_port,
               state.generation)
        with self._pools_lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            stale = [k for k in self._pools if k[-1] != state.generation]
            for k in stale:  # a new generation: old pools drain (in-flight responses keep their sockets)
                self._pools.pop(k).close()
            extra: dict[str, Any] = {}
            pool_cls: type[HTTPSConnectionPool] = MeshHTTPSConnectionPool
            context = state.context
            if route.direct_target_port is not None:
                pool_cls, context = DirectHTTPSConnectionPool, state.direct_context
                extra["mesh_target_port"] = route.direct_target_port
            pool = pool_cls(
                route.host,
                route.port,
                maxsize=self._pool_maxsize,
                block=False,
                ssl_context=context,
                cert_reqs="CERT_REQUIRED",
                server_hostname=route.sni,
                assert_hostname=False,  # identity is checked by MeshHTTPSConnection.connect
                mesh_identity=route.server_identity,
                **extra,
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
            for attempt in range(3):
                try:
                    return super().send(request, *args, **kwargs)
                except requests.exceptions.ConnectionError as exc:
                    # A rotation retired this pool between pool_for and urlopen: nothing was sent,
                    # and the next lookup gives the new generation's pool.
                    if attempt < 2 and exc.args and isinstance(exc.args[0], ClosedPoolError):
                        continue
                    raise
            raise AssertionError("unreachable")
        finally:
            self._current.route = None

    def get_connection_with_tls_context(self, request: Any, verify: Any, proxies: Any = None, cert: Any = None) -> Any:
        return self.pool_for(request.mesh_route)

    def get_connection(self, url: Any, proxies: Any = None) -> Any:  # requests < 2.32.2
        return self.pool_for(self._current.route)

    def build_response(self, req: Any, resp: Any) -> requests.Response:
        """Attach what the handshake proved (``response.mesh_peer``) for audit and callers."""
        response = super().build_response(req, resp)
        conn = getattr(resp, "_connection", None) or getattr(resp, "connection", None)
        response.mesh_peer = getattr(conn, "mesh_peer", None)  # type: ignore[attr-defined]
        return response

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
