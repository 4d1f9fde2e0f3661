"""A Linkerd-like inbound proxy for the sandbox: mTLS in front of plain-HTTP apps on loopback.

It behaves like a Linkerd inbound proxy where a proxy-less client can tell the difference:

* **TLS**: 1.3 only, terminated only when the SNI is the proxy's own identity (any other name,
  or none, fails the handshake with an ``unrecognized_name`` alert); a client certificate is
  requested, optional on the transparent ports and required on the direct port, and must
  chain to the mesh trust anchors; the client identity is the **first** DNS or URI SAN.
* **Policy**: every request is checked against a :class:`~meshclient_sandbox.policy.ServerPolicy`;
  a denial is ``403`` with ``l5d-proxy-error`` (Linkerd's text) and ``l5d-proxy-connection:
  close``, and the connection is closed.
* **Headers**: any client-sent ``l5d-client-id`` is removed and the verified identity set.
* **Direct mode**: a second port with ALPN ``transport.l5d.io/v1``, a mandatory client
  identity and the transport header naming the app port (see :mod:`.transport_header`).
* **Streaming**: HTTP/1.1 keep-alive on both sides; bodies (Content-Length or chunked) are
  copied through a fixed per-connection buffer, never held whole, so multi-GB uploads use
  bounded memory.

One thread accepts on every listener; each connection gets a thread of its own, with its
own keep-alive connection to the app. :meth:`InboundProxy.stop` closes the listeners, shuts
down every open socket and joins every thread it started.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import select
import selectors
import socket
import ssl
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from meshclient.credentials import Credentials
from meshclient.errors import ConfigurationError, IdentityError
from meshclient.identity import Identity

from .http1 import (
    BUFFER_SIZE,
    Gone,
    Reject,
    Stream,
    shutdown_socket,
    ssl_pending,
)
from .policy import ClientInfo, ServerPolicy
from .proxy_relay import HTTPRelay, Upstream
from .tls import build_server_context
from .transport_header import ALPN_PROTOCOL, SessionProtocol, TransportHeaderError, read_prefaced

__all__ = ["InboundProxy", "ProxyStats", "client_identity_from_cert", "BUFFER_SIZE"]

log = logging.getLogger("meshclient_sandbox.proxy")

def client_identity_from_cert(cert: Mapping[str, Any] | None) -> Identity | None:
    """The client identity Linkerd derives from a verified leaf: its first DNS or URI SAN.

    ``cert`` is ``SSLSocket.getpeercert()``; ``None`` when there is no certificate or the first
    such SAN is not a valid identity (Linkerd then sees a TLS client without an identity).
    """
    if not cert:
        return None
    for kind, value in cert.get("subjectAltName", ()):
        if kind in ("DNS", "URI"):
            try:
                return Identity.parse(value)
            except IdentityError:
                return None
    return None


@dataclass
class ProxyStats:
    """Counters for tests and benchmarks (no identities, no paths)."""

    connections: int = 0
    direct_connections: int = 0
    handshake_failures: int = 0
    refused: int = 0
    requests: int = 0
    denied: int = 0
    upstream_errors: int = 0


# -- the proxy ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Listener:
    sock: socket.socket
    kind: str  # "transparent" | "direct"
    app_port: int  # 0 for the direct listener


class InboundProxy(HTTPRelay):
    """A Linkerd-like inbound proxy fronting plain-HTTP apps on loopback.

    Args:
        credentials: the proxy's own identity (its leaf, key and the mesh trust anchors).
        app_ports: the app ports it fronts; each gets a transparent TLS listener, and the
            direct listener forwards to any of them by the transport header's port.
        policy: one :class:`ServerPolicy` for every port, or ``{app_port: ServerPolicy}``
            (a mapping form ``{"access": ..., "allow": [...]}`` is accepted too).
            Default: ``all-unauthenticated``, Linkerd's default.
        host: where the listeners bind (loopback by default).
        app_host: where the apps listen.
        listen_ports: ``{app_port: listen_port}`` for fixed transparent ports (0: any free port).
        direct_port: the direct-mode port (0: any free port; ``None``: no direct listener).
        server_name: the SNI to terminate; defaults to the identity (required for SPIFFE identities).
        plaintext: serve clients that do not start TLS on the transparent ports, as Linkerd does
            (they have no identity, so only ``all-unauthenticated``-style policies let them in).

    Use :meth:`start` / :meth:`stop` or a ``with`` block; :meth:`url` and
    :attr:`direct_address` say where to connect.
    """

    def __init__(
        self,
        credentials: Credentials,
        app_ports: int | Iterable[int],
        *,
        policy: ServerPolicy | Mapping[str, Any] | Mapping[int, ServerPolicy] | str | None = None,
        host: str = "127.0.0.1",
        app_host: str = "127.0.0.1",
        listen_ports: Mapping[int, int] | None = None,
        direct_port: int | None = 0,
        server_name: str | None = None,
        plaintext: bool = True,
        idle_timeout: float = 120.0,
        io_timeout: float = 300.0,
        connect_timeout: float = 5.0,
        handshake_timeout: float = 10.0,
        max_connections: int = 2048,
    ) -> None:
        if not isinstance(credentials, Credentials):
            raise ConfigurationError("InboundProxy needs a meshclient.Credentials for its own identity.")
        ports = (app_ports,) if isinstance(app_ports, int) else tuple(app_ports)
        if not ports or any(not 0 < p <= 0xFFFF for p in ports) or len(set(ports)) != len(ports):
            raise ConfigurationError(f"InboundProxy needs distinct app ports in 1-65535, got {ports!r}.")
        self._creds = credentials
        self.identity: Identity = credentials.identity
        if server_name is None:
            if self.identity.is_spiffe:
                raise ConfigurationError(
                    f"A proxy with the SPIFFE identity '{self.identity}' needs server_name (the SNI it answers).",
                    hint="Pass server_name='<a DNS name>' like Linkerd's LINKERD2_PROXY_IDENTITY_SERVER_NAME.",
                )
            server_name = self.identity.value
        self.server_name = server_name
        self.plaintext = plaintext
        self.app_ports = ports
        self.host = host
        self.app_host = app_host
        self._listen_ports = dict(listen_ports or {})
        self._direct_port = direct_port
        self.idle_timeout = idle_timeout
        self.io_timeout = io_timeout
        self.connect_timeout = connect_timeout
        self.handshake_timeout = handshake_timeout
        self.max_connections = max_connections
        self._default_policy = ServerPolicy()
        self._policies: dict[int, ServerPolicy] = {}
        self.set_policy(policy)
        self.stats = ProxyStats()
        #: serial numbers (hex) of verified client certificates, one per TLS connection, newest last
        self.client_serials: collections.deque[str] = collections.deque(maxlen=10_000)
        self._stats_lock = threading.Lock()
        self._lock = threading.Lock()
        self._listeners: list[_Listener] = []
        self._sockets: set[socket.socket] = set()
        self._threads: set[threading.Thread] = set()
        self._acceptor: threading.Thread | None = None
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self._stopping = threading.Event()
        self._ids = itertools.count(1)
        self._transparent_ctx: ssl.SSLContext | None = None
        self._direct_ctx: ssl.SSLContext | None = None

    # -- configuration ---------------------------------------------------------------------
    def set_policy(self, policy: ServerPolicy | Mapping[str, Any] | Mapping[int, ServerPolicy] | str | None,
                   *, app_port: int | None = None) -> None:
        """Replace the policy (for every port, or one ``app_port``); applies to the next request."""
        if app_port is not None:
            if app_port not in self.app_ports:
                raise ConfigurationError(f"Port {app_port} is not fronted by this proxy ({self.app_ports}).")
            policies = dict(self._policies)
            policies[app_port] = ServerPolicy.from_config(policy)  # type: ignore[arg-type]
            self._policies = policies
            return
        if isinstance(policy, Mapping) and policy and all(isinstance(k, int) for k in policy):
            per_port = {int(k): ServerPolicy.from_config(v) for k, v in policy.items()}
            unknown = set(per_port) - set(self.app_ports)
            if unknown:
                raise ConfigurationError(f"Policies for ports not fronted by this proxy: {sorted(unknown)}.")
            self._policies = per_port
            return
        self._default_policy = ServerPolicy.from_config(policy)  # type: ignore[arg-type]
        self._policies = {}

    def policy_for(self, app_port: int) -> ServerPolicy:
        return self._policies.get(app_port, self._default_policy)

    # -- addresses -------------------------------------------------------------------------
    def _listener(self, kind: str, app_port: int = 0) -> _Listener:
        for lst in self._listeners:
            if lst.kind == kind and lst.app_port == app_port:
                return lst
        raise ConfigurationError(f"The proxy is not started or has no {kind} listener for port {app_port}.")

    def address(self, app_port: int | None = None) -> tuple[str, int]:
        """The transparent (TLS, no ALPN) listener for ``app_port`` (the only one by default)."""
        port = self.app_ports[0] if app_port is None else app_port
        addr = self._listener("transparent", port).sock.getsockname()
        return addr[0], addr[1]

    def url(self, app_port: int | None = None) -> str:
        host, port = self.address(app_port)
        return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"

    @property
    def direct_address(self) -> tuple[str, int] | None:
        if self._direct_port is None:
            return None
        addr = self._listener("direct").sock.getsockname()
        return addr[0], addr[1]

    def service_entry(self, app_port: int | None = None) -> dict[str, Any]:
        """This proxy as a ``sandbox.json`` service: url, identity, direct address, app port."""
        port = self.app_ports[0] if app_port is None else app_port
        direct = self.direct_address
        return {
            "url": self.url(port),
            "identity": self.identity.value,
            "direct": f"{direct[0]}:{direct[1]}" if direct else None,
            "app_port": port,
        }

    # -- lifecycle -------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._acceptor is not None and self._acceptor.is_alive()

    def start(self) -> InboundProxy:
        """Bind every listener and start accepting; returns ``self``."""
        if self._acceptor is not None:
            raise ConfigurationError("This InboundProxy was already started; create a new one.")
        self._transparent_ctx = self._context(direct=False)
        if self._direct_port is not None:
            self._direct_ctx = self._context(direct=True)
        try:
            for app_port in self.app_ports:
                sock = socket.create_server((self.host, self._listen_ports.get(app_port, 0)), backlog=512)
                self._listeners.append(_Listener(sock, "transparent", app_port))
            if self._direct_port is not None:
                sock = socket.create_server((self.host, self._direct_port), backlog=512)
                self._listeners.append(_Listener(sock, "direct", 0))
        except OSError:
            for lst in self._listeners:
                lst.sock.close()
            self._listeners.clear()
            raise
        for lst in self._listeners:
            lst.sock.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"proxy-accept-{self.identity.service_account}",
                                          daemon=True)
        self._acceptor.start()
        log.info("inbound proxy for '%s' listening: %s", self.identity,
                 ", ".join(f"{lst.kind}:{lst.app_port or '-'}@{lst.sock.getsockname()[1]}" for lst in self._listeners))
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop accepting, end every connection, join every thread. Idempotent."""
        if self._acceptor is None or self._stopping.is_set():
            return
        self._stopping.set()
        if self._wake_w is not None:
            with contextlib.suppress(OSError):
                self._wake_w.send(b"x")
        self._acceptor.join(timeout)
        for lst in self._listeners:
            lst.sock.close()
        for s in (self._wake_r, self._wake_w):
            if s is not None:
                s.close()
        with self._lock:
            sockets = list(self._sockets)
            threads = list(self._threads)
        for s in sockets:
            shutdown_socket(s)
        for t in threads:
            t.join(timeout)
        with self._lock:
            leftovers = list(self._sockets)
            self._sockets.clear()
        for s in leftovers:
            with contextlib.suppress(OSError):
                s.close()
        log.info("inbound proxy for '%s' stopped", self.identity)

    def __enter__(self) -> InboundProxy:
        return self.start() if self._acceptor is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"InboundProxy(identity='{self.identity}', app_ports={list(self.app_ports)}, running={self.running})"

    # -- internals: accepting ----------------------------------------------------------------
    def _context(self, *, direct: bool) -> ssl.SSLContext:
        ctx = build_server_context(self._creds, require_client_cert=direct, alpn=[ALPN_PROTOCOL] if direct else None)
        expected = self.server_name

        def check_sni(_sock: Any, server_name: str | None, _ctx: ssl.SSLContext) -> int | None:
            # Linkerd terminates only its own name; others would be passed through, which a
            # sandbox with one workload per proxy has nowhere to send: refuse like ssl_reject_handshake.
            if server_name != expected:
                return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME
            return None

        ctx.sni_callback = check_sni
        return ctx

    def _accept_loop(self) -> None:
        sel = selectors.DefaultSelector()
        try:
            assert self._wake_r is not None
            sel.register(self._wake_r, selectors.EVENT_READ, None)
            for lst in self._listeners:
                sel.register(lst.sock, selectors.EVENT_READ, lst)
            while not self._stopping.is_set():
                for key, _ in sel.select():
                    lst = key.data
                    if lst is None:
                        return
                    self._accept(lst)
        except Exception:  # pragma: no cover - a bug; keep the log, never the process
            log.exception("inbound proxy accept loop failed")
        finally:
            sel.close()

    def _accept(self, lst: _Listener) -> None:
        try:
            raw, addr = lst.sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            if not self._stopping.is_set():
                log.warning("accept failed: %s", exc)
            return
        with self._lock:
            if self._stopping.is_set() or len(self._threads) >= self.max_connections:
                raw.close()
                return
            self._sockets.add(raw)
            thread = threading.Thread(target=self._connection, args=(lst, raw, addr),
                                      name=f"proxy-conn-{next(self._ids)}", daemon=True)
            self._threads.add(thread)
            thread.start()
        self._count("connections")

    def _count(self, name: str) -> None:
        with self._stats_lock:
            setattr(self.stats, name, getattr(self.stats, name) + 1)

    def _track(self, old: socket.socket | None, new: socket.socket | None) -> None:
        with self._lock:
            if old is not None:
                self._sockets.discard(old)
            if new is not None:
                if self._stopping.is_set():
                    shutdown_socket(new)
                self._sockets.add(new)

    def _close(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        self._track(sock, None)
        with contextlib.suppress(OSError):
            sock.close()

    # -- internals: one connection -----------------------------------------------------------
    def _connection(self, lst: _Listener, raw: socket.socket, addr: Any) -> None:
        tls: ssl.SSLSocket | None = None
        upstream = Upstream()
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            raw.settimeout(self.handshake_timeout)
            if lst.kind == "transparent" and self.plaintext:
                try:
                    first = raw.recv(1, socket.MSG_PEEK)
                except OSError:
                    return
                if not first:
                    return
                if first != b"\x16":  # not a TLS handshake record: Linkerd's no_tls_from_remote
                    self._serve_http(Stream(raw), ClientInfo(address=addr[0], tls=False), lst.app_port, upstream)
                    return
            ctx = self._direct_ctx if lst.kind == "direct" else self._transparent_ctx
            assert ctx is not None
            try:
                tls = ctx.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
                self._track(raw, tls)
                tls.do_handshake()
            except (OSError, ValueError) as exc:
                self._count("handshake_failures")
                log.debug("TLS handshake from %s failed: %s", addr[0], exc)
                return
            peer = tls.getpeercert()
            identity = client_identity_from_cert(peer)
            if peer and peer.get("serialNumber"):
                with self._stats_lock:  # test hook: which client certificates were verified, in order
                    self.client_serials.append(str(peer["serialNumber"]).upper())
            client = ClientInfo(address=addr[0], tls=True, identity=identity)
            down = Stream(tls)
            if lst.kind == "direct":
                self._direct(down, client, upstream)
            else:
                self._serve_http(down, client, lst.app_port, upstream)
        except Exception:  # pragma: no cover - a bug; one connection fails, the proxy lives
            if not self._stopping.is_set():
                log.exception("inbound proxy connection from %s failed", addr[0])
        finally:
            if upstream.stream is not None:
                self._close(upstream.stream.sock)
            self._close(tls)
            self._close(raw)
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _direct(self, down: Stream, client: ClientInfo, upstream: Upstream) -> None:
        """Linkerd's port 4143: ALPN, a client identity, then the transport header."""
        self._count("direct_connections")
        tls = down.sock
        assert isinstance(tls, ssl.SSLSocket)
        if tls.selected_alpn_protocol() != ALPN_PROTOCOL:
            self._count("refused")
            log.info("direct connection from %s refused: ALPN %s not negotiated", client.address, ALPN_PROTOCOL)
            return
        if client.identity is None:
            self._count("refused")
            log.info("direct connection from %s refused: direct connections must be mutually authenticated",
                     client.address)
            return
        try:
            header = read_prefaced(down.read_exact)
        except (TransportHeaderError, Gone, OSError) as exc:
            self._count("refused")
            log.info("direct connection from '%s' refused: transport header required (%s)", client.identity, exc)
            return
        if header.port not in self.app_ports:
            self._count("refused")
            log.info("direct connection from '%s' refused: connection denied on unknown port %d",
                     client.identity, header.port)
            return
        if header.name is not None:
            self._count("refused")
            log.info("direct connection from '%s' refused: gateway mode (name in header) is not supported",
                     client.identity)
            return
        tls.settimeout(self.io_timeout)
        if header.protocol is SessionProtocol.HTTP1:
            self._serve_http(down, client, header.port, upstream)
        elif header.protocol is None:
            self._tunnel(down, client, header.port, upstream)
        else:
            self._count("refused")
            log.info("direct connection from '%s' refused: HTTP/2 is not supported by the sandbox proxy",
                     client.identity)

    def _tunnel(self, down: Stream, client: ClientInfo, app_port: int, upstream: Upstream) -> None:
        """An opaque session: policy once per connection, then bytes both ways."""
        decision = self.policy_for(app_port).check(client, server=self.identity.value)
        if not decision.allowed:
            self._count("denied")
            log.info("opaque connection denied: %s", decision.detail)
            return
        try:
            up = self._connect(app_port)
        except Reject as exc:
            log.info("opaque connection to app port %d failed: %s", app_port, exc.message)
            return
        upstream.stream = up
        # One thread for both directions: an SSL object must not be read and written from two threads.
        view = memoryview(bytearray(BUFFER_SIZE))
        down_open = True
        while not self._stopping.is_set():
            ready: list[Any] = []
            if down_open and (down.buf or ssl_pending(down.sock)):
                ready = [down.sock]
            if not ready:
                watched = [down.sock, up.sock] if down_open else [up.sock]
                try:
                    ready, _, _ = select.select(watched, [], [], self.idle_timeout)
                except (OSError, ValueError):
                    return
                if not ready:
                    return  # idle for too long
            if down_open and down.sock in ready:
                try:
                    n = down.readinto(view)
                except OSError:
                    return
                if n == 0:
                    down_open = False  # half-close: the app may still answer
                    with contextlib.suppress(OSError):
                        up.sock.shutdown(socket.SHUT_WR)
                else:
                    try:
                        up.sock.sendall(view[:n])
                    except OSError:
                        return
            if up.sock in ready:
                try:
                    n = up.readinto(view)
                    if n == 0:
                        return
                    down.sock.sendall(view[:n])
                except OSError:
                    return
