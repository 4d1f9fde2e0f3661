"""Connection pools keyed by route and credentials generation, and one send over them.

The pools own the TLS contexts: one immutable context per credentials generation (plus the
direct-mode one, with ALPN ``transport.l5d.io/v1``, built when first needed). A pool is keyed
by (address, server identity, SNI, direct target port, generation), so a rotation or another
identity never shares a connection; a new generation retires the old pools (in-flight
responses keep their sockets). ``requests``' own adapter is not used: it would load certifi
into the context when ``verify=True`` and needs the route smuggled onto the request.
"""

from __future__ import annotations

import ssl
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from urllib3.connectionpool import HTTPSConnectionPool
from urllib3.exceptions import ClosedPoolError
from urllib3.response import HTTPResponse
from urllib3.util.timeout import Timeout

from ..credentials import Credentials
from ..credentials.sources import IdentitySource
from ..tls import PeerInfo, build_client_context
from .connections import DirectHTTPSConnectionPool, MeshHTTPSConnection, MeshHTTPSConnectionPool
from .header import ALPN
from .route import Route

__all__ = ["TLSContexts", "ConnectionPools", "Sent"]


@dataclass(frozen=True)
class _Generation:
    number: int
    context: ssl.SSLContext
    direct_context: ssl.SSLContext | None = None


class TLSContexts:
    """The current credentials generation's client contexts, rebuilt when the source rotates."""

    def __init__(self, credentials: Credentials | IdentitySource, *, allow_tls12: bool) -> None:
        self._source = credentials
        self._allow_tls12 = allow_tls12
        self._lock = threading.Lock()
        self._current: _Generation | None = None

    def credentials(self) -> Credentials:
        source = self._source
        return source.current() if isinstance(source, IdentitySource) else source

    def current(self, *, direct: bool = False) -> tuple[int, ssl.SSLContext]:
        """(generation, context) for a transparent or a direct-mode connection."""
        creds = self.credentials()  # a rotation shows up here as a new generation
        gen = self._current
        if gen is None or gen.number != creds.generation or (direct and gen.direct_context is None):
            with self._lock:
                gen = self._current
                if gen is None or gen.number != creds.generation:
                    gen = _Generation(creds.generation, build_client_context(creds, allow_tls12=self._allow_tls12))
                if direct and gen.direct_context is None:
                    gen = _Generation(gen.number, gen.context,
                                      build_client_context(creds, allow_tls12=False, alpn=[ALPN]))
                self._current = gen
        if direct:
            assert gen.direct_context is not None
            return gen.number, gen.direct_context
        return gen.number, gen.context


@dataclass(frozen=True)
class Sent:
    """urllib3's response (body not read yet) and what the connection's handshake proved."""

    raw: HTTPResponse
    peer: PeerInfo | None


class ConnectionPools:
    """Keep-alive pools per route and generation; :meth:`send` puts one request on the wire."""

    def __init__(self, contexts: TLSContexts, *, maxsize: int = 10, block: bool = False,
                 max_pools: int = 64) -> None:
        self.contexts = contexts
        self._maxsize = maxsize
        self._block = block
        self._max_pools = max_pools
        self._pools: OrderedDict[tuple[Any, ...], HTTPSConnectionPool] = OrderedDict()
        self._lock = threading.Lock()

    def pool_for(self, route: Route) -> HTTPSConnectionPool:
        generation, context = self.contexts.current(direct=route.is_direct)
        key = (route.host, route.port, route.server_identity.value, route.sni, route.direct_target_port, generation)
        with self._lock:
            pool = self._pools.get(key)
            if pool is not None:
                self._pools.move_to_end(key)
                return pool
            for stale in [k for k in self._pools if k[-1] != generation]:
                self._pools.pop(stale).close()
            extra: dict[str, Any] = {}
            pool_cls: type[HTTPSConnectionPool] = MeshHTTPSConnectionPool
            if route.direct_target_port is not None:
                pool_cls = DirectHTTPSConnectionPool
                extra["mesh_target_port"] = route.direct_target_port
            pool = pool_cls(
                route.host,
                route.port,
                maxsize=self._maxsize,
                block=self._block,
                ssl_context=context,
                cert_reqs="CERT_REQUIRED",
                server_hostname=route.sni,
                assert_hostname=False,  # the identity is checked by MeshHTTPSConnection.connect
                mesh_identity=route.server_identity,
                **extra,
            )
            self._pools[key] = pool
            while len(self._pools) > self._max_pools:
                self._pools.popitem(last=False)[1].close()
            return pool

    def send(self, route: Route, method: str, path: str, headers: Mapping[str, str], body: Any,
             timeout: tuple[float, float]) -> Sent:
        """One request on a pooled connection to ``route``; urllib3's own errors propagate as they are.

        ``retries=False`` makes urllib3 raise the original error (no ``MaxRetryError`` quoting
        the URL) and never retry or follow a redirect itself: retrying is the pipeline's job.
        """
        chunked = body is not None and "Content-Length" not in headers
        for attempt in range(3):
            pool = self.pool_for(route)
            try:
                raw = pool.urlopen(
                    method, path, body=body, headers=headers, retries=False, redirect=False,
                    assert_same_host=False, preload_content=False, decode_content=False,
                    timeout=Timeout(connect=timeout[0], read=timeout[1]), chunked=chunked,
                )
            except ClosedPoolError:
                # A rotation retired this pool between pool_for and urlopen: nothing was sent,
                # and the next lookup gives the new generation's pool.
                if attempt < 2:
                    continue
                raise
            conn = raw.connection
            peer = conn.verified_peer if isinstance(conn, MeshHTTPSConnection) else None
            return Sent(raw, peer)  # type: ignore[arg-type]  # urllib3 2.x types it as BaseHTTPResponse
        raise AssertionError("unreachable")

    def pool_count(self) -> int:
        with self._lock:
            return len(self._pools)

    def close(self) -> None:
        with self._lock:
            pools = list(self._pools.values())
            self._pools.clear()
        for pool in pools:
            pool.close()
