"""An in-process mTLS HTTP/1.1 server whose faults are scripted, for resilience tests.

Real TLS 1.3 handshakes (contexts from :func:`meshclient_sandbox.tls.build_server_context`) on a free
loopback port; one thread per connection. What the server does is chosen per request (an
:class:`Action`) and per connection (a :class:`ConnectionFault`):

* :class:`Respond` — a normal answer (any status, e.g. a 503 storm or a 429 with
  ``Retry-After``), optionally closing the connection afterwards;
* :class:`ResetMidResponse` — the status line, headers and part of the body, then a TCP RST
  (``SO_LINGER`` 0); :class:`CloseMidResponse` — the same ending with a plain FIN;
* :class:`Stall` — read the request and never answer within the client's read timeout;
* :class:`Hold` — wait for a test's :class:`threading.Event`, then do another action;
* :class:`Trickle` — answer the headers at once and the body one byte at a time;
* :class:`CloseWithoutAnswer` — read the request and close (FIN or RST);
* per connection: ``DROP_BEFORE_HANDSHAKE`` (accept TCP, close at once) and
  ``DROP_DURING_HANDSHAKE`` (read the ClientHello, then close), each with an RST variant.

What the server saw is counted on the server side, independently of the client: TCP
connections, completed handshakes, request heads per method and path (``attempts``), the
complete bodies received, and — with ALPN ``transport.l5d.io/v1`` — the decoded Linkerd
transport header of each direct connection. ``stop()`` closes every socket and joins every
thread; use the server as a context manager.
"""

from __future__ import annotations

import collections
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from meshclient.transport.header import ALPN, MAX_HEADER_LEN, PREFACE, TransportHeader, decode_header

__all__ = [
    "Action", "Respond", "ResetMidResponse", "CloseMidResponse", "Stall", "Hold", "Trickle", "CloseWithoutAnswer",
    "ConnectionFault", "ACCEPT", "DROP_BEFORE_HANDSHAKE", "DROP_DURING_HANDSHAKE",
    "RST_BEFORE_HANDSHAKE", "RST_DURING_HANDSHAKE", "ReceivedRequest", "FaultServer", "fault_servers",
]

_POLL = 0.1  # how often blocked server threads look at the stop flag
_MAX_WAIT = 30.0  # no server thread ever waits longer than this (a test bug, not a hang)


# -- what to do with one request ------------------------------------------------------------
@dataclass(frozen=True)
class Respond:
    status: int = 200
    body: bytes = b"ok"
    headers: tuple[tuple[str, str], ...] = ()
    close: bool = False  # send "Connection: close" and close after the response

    @classmethod
    def with_headers(cls, status: int, headers: dict[str, str], body: bytes = b"", close: bool = False) -> Respond:
        return cls(status=status, body=body, headers=tuple(headers.items()), close=close)


@dataclass(frozen=True)
class ResetMidResponse:
    """Declare ``Content-Length: len(body)``, send the head and ``body[:sent]``, then RST."""

    status: int = 200
    body: bytes = b"x" * 4096
    sent: int = 100
    pause: float = 0.05  # between the partial answer and the RST


@dataclass(frozen=True)
class CloseMidResponse:
    """Like :class:`ResetMidResponse`, but end with a plain close (FIN, no TLS close_notify)."""

    status: int = 200
    body: bytes = b"x" * 4096
    sent: int = 100


@dataclass(frozen=True)
class Stall:
    """Read the request, answer nothing for ``seconds`` (or until the server stops), then close."""

    seconds: float = _MAX_WAIT


@dataclass(frozen=True)
class Hold:
    """Wait until ``release`` is set (bounded), then carry out ``then``."""

    release: threading.Event
    then: Action = Respond()


@dataclass(frozen=True)
class Trickle:
    """Headers at once (``Content-Length: len(body)``), then one byte every ``interval`` seconds."""

    body: bytes = b"x" * 40
    interval: float = 0.1


@dataclass(frozen=True)
class CloseWithoutAnswer:
    rst: bool = False


Action = Respond | ResetMidResponse | CloseMidResponse | Stall | Hold | Trickle | CloseWithoutAnswer

# -- what to do with one connection ---------------------------------------------------------
ConnectionFault = str
ACCEPT = "accept"
DROP_BEFORE_HANDSHAKE = "drop-before-handshake"  # accept, then FIN before reading anything
RST_BEFORE_HANDSHAKE = "rst-before-handshake"  # accept, then RST
DROP_DURING_HANDSHAKE = "drop-during-handshake"  # read the ClientHello, then close (FIN)
RST_DURING_HANDSHAKE = "rst-during-handshake"  # read the ClientHello, then RST


@dataclass
class ReceivedRequest:
    """One request head (and body, once complete) as the server received it."""

    connection: int
    method: str
    target: str  # as sent, with the query string
    headers: dict[str, str]  # names lower-cased
    client_sans: list[str]
    alpn: str | None
    transport_header: TransportHeader | None
    body: bytes | None = None  # None while (or if never) completely received

    @property
    def path(self) -> str:
        return self.target.split("?", 1)[0]


class _Closed(Exception):
    """The peer closed, or the server is stopping."""


@dataclass
class _Conn:
    number: int
    sock: socket.socket
    buf: bytearray = field(default_factory=bytearray)


class FaultServer:
    """A scriptable mTLS server on ``127.0.0.1:<free port>``.

    Script it with :meth:`push` (actions for the next requests, FIFO, optionally only for
    one method and/or path), ``default`` (the action when nothing was pushed), ``on_request``
    (a callable deciding per :class:`ReceivedRequest`; return ``None`` to fall through),
    :meth:`push_connections` (faults for the next TCP connections) and ``connection_default``
    (the fault for every other connection, ``ACCEPT`` unless set).
    """

    def __init__(self, context: ssl.SSLContext, *, default: Action | None = None, host: str = "127.0.0.1",
                 port: int = 0) -> None:
        self.context = context
        self.default: Action = default or Respond()
        self.on_request: Callable[[ReceivedRequest], Action | None] | None = None
        self.connection_default: ConnectionFault = ACCEPT
        self.host = host
        self._lock = threading.RLock()  # re-entrant: wait_for's predicate reads the counters under it
        self._changed = threading.Condition(self._lock)
        self._queues: dict[tuple[str | None, str | None], collections.deque[Action]] = {}
        self._conn_faults: collections.deque[ConnectionFault] = collections.deque()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._live: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self.port = port  # 0: a free port, chosen at start()
        # what the server saw
        self.tcp_connections = 0
        self.handshakes = 0
        self.failed_handshakes = 0
        self.requests: list[ReceivedRequest] = []
        self.transport_headers: list[TransportHeader] = []
        self.errors: list[str] = []

    # -- lifecycle -----------------------------------------------------------------------------
    def start(self) -> FaultServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(128)
        listener.settimeout(_POLL)
        self._listener = listener
        self.port = listener.getsockname()[1]
        self._spawn(self._accept_loop, "fault-accept")
        return self

    def stop(self) -> None:
        self._stop.set()
        with self._lock:
            live = list(self._live)
            self._changed.notify_all()
        for sock in live:
            try:
                # the plain socket's shutdown: SSLSocket.shutdown() would also drop the SSL object
                # under the feet of the thread still using it
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
            except OSError:
                pass
        deadline = time.monotonic() + 10.0
        for thread in list(self._threads):
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._listener is not None:
            self._listener.close()
        alive = [t.name for t in self._threads if t.is_alive()]
        if alive:  # pragma: no cover - a server thread ignored the stop flag
            raise RuntimeError(f"fault server threads still running after stop(): {alive}")

    def __enter__(self) -> FaultServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _spawn(self, target: Callable[..., None], name: str, *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, name=name, daemon=True)
        with self._lock:
            self._threads.append(thread)
        thread.start()

    # -- addresses -----------------------------------------------------------------------------
    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        return f"https://{self.address}"

    # -- scripting -----------------------------------------------------------------------------
    def push(self, *actions: Action, method: str | None = None, path: str | None = None) -> None:
        """Queue actions for the next matching requests (then ``default`` again)."""
        with self._lock:
            self._queues.setdefault((method, path), collections.deque()).extend(actions)

    def push_connections(self, *faults: ConnectionFault) -> None:
        """Queue faults for the next TCP connections (then ``connection_default`` again)."""
        with self._lock:
            self._conn_faults.extend(faults)

    def _next_action(self, req: ReceivedRequest) -> Action:
        if self.on_request is not None:
            chosen = self.on_request(req)
            if chosen is not None:
                return chosen
        with self._lock:
            for key in ((req.method, req.path), (None, req.path), (req.method, None), (None, None)):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
        return self.default

    # -- what the server saw ---------------------------------------------------------------------
    def attempts(self, method: str | None = None, path: str | None = None) -> int:
        """Request heads received (every attempt that reached the server)."""
        with self._lock:
            return sum(1 for r in self.requests
                       if (method is None or r.method == method) and (path is None or r.path == path))

    def bodies(self, method: str | None = None, path: str | None = None) -> list[bytes]:
        """Complete bodies received, in order."""
        with self._lock:
            return [r.body for r in self.requests
                    if r.body is not None and (method is None or r.method == method)
                    and (path is None or r.path == path)]

    @property
    def open_connections(self) -> int:
        """Connections the server still holds open."""
        with self._lock:
            return len(self._live)

    def wait_for(self, predicate: Callable[[FaultServer], bool], timeout: float = 5.0) -> bool:
        """Block until ``predicate(self)`` holds (re-checked whenever the server records something)."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(min(remaining, _POLL))
        return True

    def _record(self, fn: Callable[[], None]) -> None:
        with self._changed:
            fn()
            self._changed.notify_all()

    # -- accept loop and connections ---------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        number = 0
        while not self._stop.is_set():
            try:
                raw, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            number += 1

            def count() -> None:
                self.tcp_connections += 1

            self._record(count)
            with self._lock:
                fault = self._conn_faults.popleft() if self._conn_faults else self.connection_default
                self._live.add(raw)
            self._spawn(self._serve_connection, f"fault-conn-{number}", raw, number, fault)

    def _serve_connection(self, raw: socket.socket, number: int, fault: ConnectionFault) -> None:
        sock: socket.socket = raw
        try:
            raw.settimeout(_POLL)
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if fault in (RST_BEFORE_HANDSHAKE, RST_DURING_HANDSHAKE):
                if fault == RST_DURING_HANDSHAKE:
                    self._read_some_raw(raw)  # the ClientHello
                _set_rst(raw)
                return
            if fault in (DROP_BEFORE_HANDSHAKE, DROP_DURING_HANDSHAKE):
                if fault == DROP_DURING_HANDSHAKE:
                    self._read_some_raw(raw)  # the ClientHello
                # A FIN, deterministically: closing with unread input (the ClientHello may
                # already be queued) would make the kernel send an RST instead. So send the FIN
                # first, then drain until the client closes its side.
                raw.shutdown(socket.SHUT_WR)
                while self._read_some_raw(raw):
                    pass
                return
            tls = self.context.wrap_socket(raw, server_side=True, do_handshake_on_connect=False)
            with self._lock:
                self._live.discard(raw)
                self._live.add(tls)
            sock = tls
            if not self._handshake(tls):
                return
            conn = _Conn(number, tls)
            header = self._read_transport_header(conn) if tls.selected_alpn_protocol() == ALPN else None
            if tls.selected_alpn_protocol() == ALPN and header is None:
                return
            peer = tls.getpeercert() or {}
            sans = [str(v) for _, v in peer.get("subjectAltName", ())]
            while not self._stop.is_set():
                if not self._serve_request(conn, sans, tls.selected_alpn_protocol(), header):
                    return
        except _Closed:
            return
        except OSError as exc:  # the client went away: part of the game
            self._note(f"connection {number}: {exc!r}")
        finally:
            with self._lock:
                self._live.discard(sock)
                self._live.discard(raw)
            try:
                sock.close()
            except OSError:
                pass

    def _note(self, text: str) -> None:
        with self._lock:
            self.errors.append(text)

    def _read_some_raw(self, raw: socket.socket) -> bytes:
        deadline = time.monotonic() + _MAX_WAIT
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                data = raw.recv(65536)
            except TimeoutError:
                continue
            return data
        return b""

    def _handshake(self, tls: ssl.SSLSocket) -> bool:
        tls.settimeout(10.0)
        try:
            tls.do_handshake()
        except (ssl.SSLError, OSError) as exc:
            self._note(f"handshake failed: {exc!r}")

            def failed() -> None:
                self.failed_handshakes += 1

            self._record(failed)
            return False
        tls.settimeout(_POLL)

        def done() -> None:
            self.handshakes += 1

        self._record(done)
        return True

    # -- byte-level reading ------------------------------------------------------------------------
    def _fill(self, conn: _Conn) -> None:
        """Read more bytes into the connection buffer; raise :class:`_Closed` at EOF or stop."""
        deadline = time.monotonic() + _MAX_WAIT
        while True:
            if self._stop.is_set() or time.monotonic() > deadline:
                raise _Closed()
            try:
                data = conn.sock.recv(65536)
            except (TimeoutError, ssl.SSLWantReadError):
                continue
            if not data:
                raise _Closed()
            conn.buf += data
            return

    def _read_exact(self, conn: _Conn, n: int) -> bytes:
        while len(conn.buf) < n:
            self._fill(conn)
        out = bytes(conn.buf[:n])
        del conn.buf[:n]
        return out

    def _read_until(self, conn: _Conn, marker: bytes, limit: int = 256 * 1024) -> bytes:
        while True:
            idx = conn.buf.find(marker)
            if idx >= 0:
                out = bytes(conn.buf[: idx + len(marker)])
                del conn.buf[: idx + len(marker)]
                return out
            if len(conn.buf) > limit:
                raise _Closed()
            self._fill(conn)

    def _read_transport_header(self, conn: _Conn) -> TransportHeader | None:
        start = self._read_exact(conn, len(PREFACE) + 4)
        (length,) = struct.unpack(">I", start[len(PREFACE):])
        if length > MAX_HEADER_LEN:
            return None
        message = self._read_exact(conn, length)
        header, used = decode_header(start + message)
        assert used == len(start) + length

        def keep() -> None:
            self.transport_headers.append(header)

        self._record(keep)
        return header

    def _read_body(self, conn: _Conn, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = bytearray()
            while True:
                size_line = self._read_until(conn, b"\r\n")
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    self._read_until(conn, b"\r\n")  # no trailers from requests
                    return bytes(body)
                body += self._read_exact(conn, size)
                self._read_exact(conn, 2)
        length = int(headers.get("content-length") or 0)
        return self._read_exact(conn, length) if length else b""

    # -- one request -------------------------------------------------------------------------------
    def _serve_request(self, conn: _Conn, sans: list[str], alpn: str | None,
                       header: TransportHeader | None) -> bool:
        head = self._read_until(conn, b"\r\n\r\n").decode("latin-1")
        lines = head.split("\r\n")
        method, target, _version = lines[0].split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
        req = ReceivedRequest(conn.number, method, target, headers, sans, alpn, header)
        self._record(lambda: self.requests.append(req))
        body = self._read_body(conn, headers)

        def complete() -> None:
            req.body = body

        self._record(complete)
        keep_alive = headers.get("connection", "").lower() != "close"
        return self._act(conn, self._next_action(req), method) and keep_alive

    def _act(self, conn: _Conn, action: Action, method: str) -> bool:
        """Carry out ``action``; True when the connection stays open for the next request."""
        sock = conn.sock
        if isinstance(action, Hold):
            if not self._wait(action.release):
                return False
            return self._act(conn, action.then, method)
        if isinstance(action, Respond):
            extra = [("Connection", "close")] if action.close else []
            head = _head(action.status, len(action.body), [*action.headers, *extra])
            sock.sendall(head + action.body if method != "HEAD" else head)  # one write: no Nagle stall
            return not action.close
        if isinstance(action, ResetMidResponse):
            sock.sendall(_head(action.status, len(action.body), []) + action.body[: action.sent])
            # Give the client a moment to read the partial answer: Linux drops unread input
            # when the RST arrives, and the client would then see "closed without response"
            # (also a failure after sending, so the tests hold either way).
            self._stop.wait(action.pause)
            _set_rst(sock)
            return False
        if isinstance(action, CloseMidResponse):
            sock.sendall(_head(action.status, len(action.body), []) + action.body[: action.sent])
            return False  # the caller closes: a FIN after a truncated body
        if isinstance(action, Stall):
            self._stop.wait(min(action.seconds, _MAX_WAIT))
            return False
        if isinstance(action, Trickle):
            sock.sendall(_head(200, len(action.body), []))
            for i in range(len(action.body)):
                if self._stop.wait(action.interval):
                    return False
                try:
                    sock.sendall(action.body[i : i + 1])
                except OSError:
                    return False
            return True
        if isinstance(action, CloseWithoutAnswer):
            if action.rst:
                _set_rst(sock)
            return False
        raise TypeError(f"unknown action {action!r}")

    def _wait(self, event: threading.Event) -> bool:
        deadline = time.monotonic() + _MAX_WAIT
        while not self._stop.is_set() and time.monotonic() < deadline:
            if event.wait(_POLL):
                return True
        return False


def _head(status: int, length: int, headers: list[tuple[str, str]]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", f"Content-Length: {length}",
             "Content-Type: text/plain"]
    lines += [f"{k}: {v}" for k, v in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _set_rst(sock: socket.socket) -> None:
    """Make the coming close() send a TCP RST instead of a FIN."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass


_REASONS = {200: "OK", 201: "Created", 204: "No Content", 301: "Moved Permanently", 302: "Found",
            400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 404: "Not Found",
            429: "Too Many Requests", 500: "Internal Server Error", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


@contextmanager
def fault_servers(context: ssl.SSLContext, count: int, **kwargs: Any) -> Iterator[list[FaultServer]]:
    """``count`` servers with the same context (instances of one identity); all stopped on exit."""
    servers: list[FaultServer] = []
    try:
        for _ in range(count):
            servers.append(FaultServer(context, **kwargs).start())
        yield servers
    finally:
        for server in servers:
            server.stop()
