"""The server base of the sandbox's JSON APIs (OIDC issuer, workspace emulator, Vault PKI).

Two server bases live in the sandbox, on purpose: this one routes small JSON requests to
handlers that return a :class:`Response` (bodies buffered, like the APIs it imitates); the
apps' base (:mod:`meshclient_sandbox.apps._base`) streams gigabyte bodies and answers from
the handler directly. The inbound proxy parses HTTP itself (it relays, it never serves).

Why not bare ``http.server``: every sandbox service needs the same few things done right —
a free loopback port, keep-alive (the Databricks SDK and ``requests`` pool connections),
routing, JSON helpers, and a ``stop()`` that really ends every connection thread so tests
leave no thread or socket behind (``ThreadingHTTPServer`` alone hangs on idle keep-alive
connections or leaks daemon threads). Access logs go to the ``meshclient_sandbox.http``
logger at DEBUG and carry method, path (never the query string), status and size: no
headers, bodies or query values, which is where tokens and secrets travel.

Subclasses register routes with :meth:`SandboxHTTPServer.add_route` and override
:meth:`SandboxHTTPServer.error_response` to answer errors in their own JSON shape.
"""

from __future__ import annotations

import http.server
import json
import logging
import re
import socket
import ssl
import sys
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Mapping
from email.message import Message
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["ApiRequest", "Response", "HTTPError", "Handler", "SandboxHTTPServer"]

logger = logging.getLogger("meshclient_sandbox.http")

_S = TypeVar("_S", bound="SandboxHTTPServer")

_REASONS = {s.value: s.phrase for s in http.HTTPStatus}


class HTTPError(Exception):
    """Raised by a handler to end a request with an error status.

    With ``response`` the response is sent as is; otherwise the server formats
    ``status``/``message`` (and the optional machine ``code``) through its
    :meth:`~SandboxHTTPServer.error_response`, so handlers never build error JSON by hand.
    """

    def __init__(
        self,
        status: int,
        message: str = "",
        *,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
        response: Response | None = None,
    ) -> None:
        self.status = status
        self.message = message or _REASONS.get(status, "error")
        self.code = code
        self.headers = dict(headers or {})
        self.response = response
        super().__init__(f"{status} {self.message}")


class ApiRequest:
    """One parsed request, handed to a route handler."""

    __slots__ = ("method", "target", "path", "query", "headers", "body", "client_address", "peer_cert")

    def __init__(
        self,
        method: str,
        target: str,
        headers: Message,
        body: bytes,
        client_address: tuple[str, int],
        peer_cert: bytes | None = None,
    ) -> None:
        split = urllib.parse.urlsplit(target)
        self.method = method
        self.target = target
        self.path = split.path or "/"
        self.query: dict[str, list[str]] = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        self.headers = headers
        self.body = body
        self.client_address = client_address
        self.peer_cert = peer_cert  # DER of the TLS client certificate, when one was sent

    def __repr__(self) -> str:  # no query, headers or body: they may carry secrets
        return f"<ApiRequest {self.method} {self.path}>"

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def param(self, name: str) -> str | None:
        """The first value of a query parameter."""
        values = self.query.get(name)
        return values[0] if values else None

    def json(self) -> Any:
        """The body as JSON (``None`` for an empty body); 400 when it is not JSON."""
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError:
            raise HTTPError(400, "request body is not valid JSON", code="MALFORMED_REQUEST") from None

    def json_object(self) -> dict[str, Any]:
        """The body as a JSON object (empty body → ``{}``); 400 otherwise."""
        data = self.json()
        if data is None:
            return {}
        if not isinstance(data, dict):
            raise HTTPError(400, "request body must be a JSON object", code="MALFORMED_REQUEST")
        return data

    def form_lists(self) -> dict[str, list[str]]:
        """An ``application/x-www-form-urlencoded`` body, every value of every parameter."""
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        if self.body and ctype != "application/x-www-form-urlencoded":
            raise HTTPError(400, "expected an application/x-www-form-urlencoded body", code="invalid_request")
        try:
            pairs = urllib.parse.parse_qsl(self.body.decode("utf-8"), keep_blank_values=True)
        except UnicodeDecodeError:
            raise HTTPError(400, "form body is not UTF-8", code="invalid_request") from None
        out: dict[str, list[str]] = {}
        for name, value in pairs:
            out.setdefault(name, []).append(value)
        return out

    def form(self, *, repeatable: Iterable[str] = ()) -> dict[str, str]:
        """The form body, one value per parameter. A parameter sent twice is a 400 (RFC 6749
        §3.1: "parameters MUST NOT be included more than once") unless it is ``repeatable``,
        in which case its values are joined with spaces."""
        allowed = set(repeatable)
        out: dict[str, str] = {}
        for name, values in self.form_lists().items():
            if len(values) > 1 and name not in allowed:
                raise HTTPError(400, f"parameter {name!r} is repeated", code="invalid_request")
            out[name] = " ".join(values)
        return out

    def bearer_token(self) -> str | None:
        """The token of an ``Authorization: Bearer`` header, if there is one."""
        auth = self.headers.get("Authorization") or ""
        scheme, _, value = auth.strip().partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return None
        return value.strip()


class Response:
    """A complete response: status, headers, body bytes."""

    __slots__ = ("status", "headers", "body")

    def __init__(
        self,
        status: int = 200,
        body: bytes = b"",
        *,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> None:
        self.status = status
        self.body = body
        items = headers.items() if isinstance(headers, Mapping) else (headers or ())
        self.headers: list[tuple[str, str]] = list(items)
        if content_type is not None:
            self.headers.append(("Content-Type", content_type))

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"

    @classmethod
    def json(cls, data: Any, status: int = 200, *, headers: Mapping[str, str] | None = None) -> Response:
        body = json.dumps(data, separators=(",", ":")).encode("utf-8")
        return cls(status, body, headers=headers, content_type="application/json")

    @classmethod
    def text(cls, text: str, status: int = 200, *, headers: Mapping[str, str] | None = None) -> Response:
        return cls(status, text.encode("utf-8"), headers=headers, content_type="text/plain; charset=utf-8")

    def header(self, name: str) -> str | None:
        lname = name.lower()
        for k, v in self.headers:
            if k.lower() == lname:
                return v
        return None


Handler = Callable[[ApiRequest], Response]


class _ThreadingServer(http.server.ThreadingHTTPServer):
    """Tracks live connections so ``stop()`` can end idle keep-alive threads."""

    daemon_threads = False  # joined in server_close(): nothing outlives stop()
    block_on_close = True

    def __init__(self, address: tuple[str, int], owner: SandboxHTTPServer) -> None:
        self.owner = owner
        self._conn_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        handler = type("_Handler", (_RequestHandler,), {"timeout": owner.idle_timeout})
        super().__init__(address, handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = self.socket.accept()
        ctx = self.owner.ssl_context
        if ctx is not None:  # handshake later, in the connection's own thread
            sock = ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, addr

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._conn_lock:
            conns = list(self._conns)
        for conn in conns:
            try:  # plain socket.shutdown even for SSLSocket: wakes the reader without TLS I/O
                socket.socket.shutdown(conn, socket.SHUT_RDWR)
            except OSError:
                pass

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        logger.debug("%s: connection from %s ended: %s", self.owner.name, client_address[0], type(exc).__name__)


_QUERY_RE = re.compile(r"\?\S*")


class _RequestHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _ThreadingServer
    server_version = "meshclient-sandbox"
    sys_version = ""
    # Buffered writes + TCP_NODELAY: status, headers and body leave in one segment, so a
    # keep-alive client never waits out Nagle against its delayed ACK (~40 ms a request).
    wbufsize = 64 * 1024

    def setup(self) -> None:
        super().setup()  # applies the class attribute ``timeout`` (idle keep-alive limit)
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        if isinstance(self.connection, ssl.SSLSocket):
            self.connection.do_handshake()

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # the access log is written by _write, without the query string

    def log_message(self, format: str, *args: Any) -> None:
        text = _QUERY_RE.sub("?…", format % args)
        logger.debug("%s: %s", self.server.owner.name, text)

    def _read_body(self) -> bytes | None:
        owner = self.server.owner
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(1024)
                if not line:
                    raise ValueError("connection closed inside a chunked body")
                size = int(line.split(b";")[0].strip(), 16)
                if size < 0:
                    raise ValueError("negative chunk size")
                if size == 0:
                    while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > owner.max_body:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(1024)
        length = int(self.headers.get("Content-Length") or 0)
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > owner.max_body:
            return None
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        owner = self.server.owner
        method = "GET" if self.command == "HEAD" else self.command
        try:
            body = self._read_body()
        except ValueError:
            body = None
            self.close_connection = True
            response = owner._format_error(HTTPError(400, "malformed request body"))
        else:
            if body is None:
                self.close_connection = True
                response = owner._format_error(HTTPError(413, f"request body larger than {owner.max_body} bytes"))
            else:
                peer: bytes | None = None
                if isinstance(self.connection, ssl.SSLSocket):
                    peer = self.connection.getpeercert(binary_form=True)
                request = ApiRequest(method, self.path, self.headers, body, self.client_address, peer)
                response = owner._respond(request)
        self._write(response, head=self.command == "HEAD")

    def _write(self, response: Response, *, head: bool) -> None:
        owner = self.server.owner
        # Logged before sending, so whoever got the response can rely on the line existing.
        logger.debug(
            "%s: %s %s -> %d (%d bytes)",
            owner.name,
            self.command,
            urllib.parse.urlsplit(self.path).path,
            response.status,
            len(response.body),
        )
        self.send_response(response.status)
        for name, value in response.headers:
            if name.lower() not in ("content-length", "connection"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        if self.close_connection or owner.stopping:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head and response.body:
            self.wfile.write(response.body)
        self.wfile.flush()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = do_OPTIONS = _dispatch


class SandboxHTTPServer:
    """Threaded HTTP/1.1 server on a free loopback port, with start/stop and routing.

    ``ssl_context`` (server side) turns it into HTTPS; the client certificate, if any, is
    then in :attr:`ApiRequest.peer_cert`. Use as a context manager or call :meth:`start` /
    :meth:`stop`; after ``stop()`` no thread or socket of the server is left.
    """

    name = "sandbox-http"

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
        max_body: int = 16 * 1024 * 1024,
        idle_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self._requested_port = port
        self.ssl_context = ssl_context
        self.max_body = max_body
        self.idle_timeout = idle_timeout
        self.stopping = False
        self._server: _ThreadingServer | None = None
        self._thread: threading.Thread | None = None
        self._lifecycle = threading.Lock()
        self._routes: dict[str, dict[str, Handler]] = {}
        self._prefix_routes: list[tuple[str, str, Handler]] = []

    # -- routing -----------------------------------------------------------------------

    def add_route(self, method: str, path: str, handler: Handler, *, prefix: bool = False) -> None:
        """Route ``method`` on ``path`` (exact, or every path under it with ``prefix``)."""
        if prefix:
            self._prefix_routes.append((method.upper(), path, handler))
            self._prefix_routes.sort(key=lambda r: len(r[1]), reverse=True)
        else:
            self._routes.setdefault(path, {})[method.upper()] = handler

    def handle(self, request: ApiRequest) -> Response:
        """Dispatch to a route: 404 for an unknown path, 405 (with ``Allow``) for a known
        path and another method. Override to route differently."""
        methods = self._routes.get(request.path)
        if methods is None:
            matching = [(m, h) for m, p, h in self._prefix_routes if request.path.startswith(p)]
            if matching:
                methods = {}
                for m, h in matching:
                    methods.setdefault(m, h)
        if not methods:
            raise HTTPError(404, f"no such endpoint: {request.path}", code="ENDPOINT_NOT_FOUND")
        handler = methods.get(request.method)
        if handler is None:
            allow = ", ".join(sorted(methods))
            raise HTTPError(405, f"method {request.method} not allowed on {request.path}", headers={"Allow": allow})
        return handler(request)

    def error_response(self, status: int, message: str, *, code: str | None = None) -> Response:
        """How this server answers an error; override for a service-specific JSON shape."""
        body: dict[str, Any] = {"error": code or _REASONS.get(status, "error"), "message": message}
        return Response.json(body, status)

    def _format_error(self, err: HTTPError) -> Response:
        response = err.response or self.error_response(err.status, err.message, code=err.code)
        if err.headers:
            response.headers.extend(err.headers.items())
        return response

    def _respond(self, request: ApiRequest) -> Response:
        try:
            return self.handle(request)
        except HTTPError as err:
            return self._format_error(err)
        except Exception as exc:  # a handler bug must not kill the connection thread silently
            logger.error("%s: handler for %s %s failed: %s", self.name, request.method, request.path,
                         type(exc).__name__, exc_info=logger.isEnabledFor(logging.DEBUG))
            return self.error_response(500, "internal error in the sandbox service", code="INTERNAL_ERROR")

    # -- lifecycle ---------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started; call start() first")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (no trailing slash)."""
        scheme = "https" if self.ssl_context is not None else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    def start(self: _S) -> _S:
        """Bind (port 0 → a free port) and serve in a background thread. Returns ``self``."""
        with self._lifecycle:
            if self._server is not None:
                return self
            self.stopping = False
            server = _ThreadingServer((self.host, self._requested_port), self)
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.name}-serve", daemon=True
            )
            thread.start()
            self._server, self._thread = server, thread
        logger.debug("%s: listening on %s", self.name, self.url)
        return self

    def stop(self) -> None:
        """Stop accepting, end open connections, join every thread, close the socket."""
        with self._lifecycle:
            server, thread = self._server, self._thread
            if server is None:
                return
            self.stopping = True
            server.shutdown()
            server.close_connections()
            server.server_close()  # joins the connection threads (block_on_close)
            if thread is not None:
                thread.join()
            self._server = self._thread = None
        logger.debug("%s: stopped", self.name)

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self.running else "stopped"
        return f"<{type(self).__name__} {where}>"
