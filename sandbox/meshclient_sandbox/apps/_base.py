"""The plain-HTTP app server the sandbox apps share: streaming bodies, bearer tokens, clean stop.

Each app is a loopback HTTP/1.1 server behind an :class:`~meshclient_sandbox.proxy.InboundProxy`.
Bodies are read as a stream (Content-Length or chunked) and responses can be files sent
with ``socket.sendfile``, so gigabyte uploads and downloads never sit in memory. Access logs
go to ``meshclient_sandbox.apps`` at DEBUG with method, path (no query) and status only: no
headers, where tokens travel.
"""

from __future__ import annotations

import contextlib
import email.message
import http.server
import io
import json
import logging
import os
import re
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, TypeVar

__all__ = ["TokenValidator", "AppError", "Body", "Request", "App"]

log = logging.getLogger("meshclient_sandbox.apps")

#: Validates a bearer token: returns its claims or raises (any exception means "invalid").
TokenValidator = Callable[[str], Mapping[str, Any]]

CHUNK = 256 * 1024
_LINGER_SECONDS = 1.0
_LINGER_BYTES = 16 * 1024 * 1024
_HEX = re.compile(r"^[0-9A-Fa-f]{1,15}$")
_A = TypeVar("_A", bound="App")


class AppError(Exception):
    """Ends a request with ``status`` and a JSON body ``{"error": code, "message": message}``."""

    def __init__(self, status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None,
                 extra: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})


class Body:
    """A request body read as a stream of chunks; it is never held whole.

    ``consumed`` tells the server whether the connection can be kept: a body left unread
    would be parsed as the next request.
    """

    def __init__(self, rfile: io.BufferedIOBase, headers: email.message.Message) -> None:
        self._rfile = rfile
        te = (headers.get("Transfer-Encoding") or "").lower()
        cl = headers.get("Content-Length")
        self.chunked = "chunked" in te
        self.length: int | None = None
        if self.chunked:
            if cl is not None:
                raise AppError(400, "invalid_request", "Content-Length and Transfer-Encoding together.")
        elif cl is not None:
            if not cl.strip().isdigit():
                raise AppError(400, "invalid_request", "Invalid Content-Length.")
            self.length = int(cl)
        else:
            self.length = 0
        self.consumed = not self.chunked and self.length == 0
        self.received = 0
        self._started = False

    def chunks(self, size: int = CHUNK) -> Iterator[bytes]:
        """Yield the body in pieces of at most ``size`` bytes; raises AppError if it is cut short."""
        if self.consumed:
            return
        if self._started:
            raise AppError(500, "internal_error", "The request body was already read.")
        self._started = True
        if self.chunked:
            yield from self._chunked(size)
        else:
            assert self.length is not None
            remaining = self.length
            while remaining:
                data = self._rfile.read(min(size, remaining))
                if not data:
                    raise AppError(400, "incomplete_body", "The request body ended early.")
                remaining -= len(data)
                self.received += len(data)
                yield data
        self.consumed = True

    def _chunked(self, size: int) -> Iterator[bytes]:
        while True:
            line = self._rfile.readline(8192)
            if not line.endswith(b"\n"):
                raise AppError(400, "incomplete_body", "The chunked request body ended early.")
            text = line.split(b";", 1)[0].strip().decode("ascii", "replace")
            if not _HEX.match(text):
                raise AppError(400, "invalid_request", "Invalid chunk size.")
            remaining = int(text, 16)
            if remaining == 0:
                while self._rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                    pass  # trailers: ignored
                return
            while remaining:
                data = self._rfile.read(min(size, remaining))
                if not data:
                    raise AppError(400, "incomplete_body", "The chunked request body ended early.")
                remaining -= len(data)
                self.received += len(data)
                yield data
            if self._rfile.readline(8192) not in (b"\r\n", b"\n"):
                raise AppError(400, "invalid_request", "Chunk data not followed by CRLF.")

    def read_all(self, limit: int) -> bytes:
        """The whole body, for small JSON documents; over ``limit`` bytes is 413."""
        out = bytearray()
        for piece in self.chunks():
            out += piece
            if len(out) > limit:
                raise AppError(413, "too_large", f"The request body is over {limit} bytes.")
        return bytes(out)

    def drain(self, limit: int = 1024 * 1024) -> None:
        """Read and drop a small unread body so the connection can be kept."""
        if self.consumed or self._started or (self.length is not None and self.length > limit):
            return  # a body read halfway cannot be resynchronized: the connection will close
        with contextlib.suppress(AppError, OSError):
            for _ in self.chunks():
                pass


class Request:
    """One request as an app sees it, with helpers to answer it."""

    def __init__(self, handler: _Handler) -> None:
        self._handler = handler
        self.method = handler.command
        target = handler.path
        self.path, _, self.query = target.partition("?")
        self.headers = handler.headers
        self.client_id: str | None = handler.headers.get("l5d-client-id")
        self.client_port: int = int(handler.client_address[1]) if handler.client_address else 0
        self.body = Body(handler.rfile, handler.headers)
        self.claims: Mapping[str, Any] | None = None
        self.token = "none"  # "none" | "verified" | "unverified"
        self.status = 0

    @property
    def subject(self) -> str | None:
        sub = self.claims.get("sub") if self.claims else None
        return str(sub) if sub is not None else None

    def authenticate(self, validator: TokenValidator | None) -> None:
        """Check a bearer token, if any: claims on success, 401 ``invalid_token`` otherwise."""
        auth = (self.headers.get("Authorization") or "").strip()
        scheme, _, value = auth.partition(" ")
        token = value.strip() if scheme.lower() == "bearer" else ""
        if not token:
            return
        if validator is None:
            self.token = "unverified"
            return
        try:
            claims = validator(token)
        except Exception as exc:  # the validator's contract: raise means invalid
            # A stable reason code (JWTError.reason) or the error's type: never its message, which
            # might quote the token or its claims.
            reason = getattr(exc, "reason", None)
            description = reason if isinstance(reason, str) and reason.replace("_", "").isalnum() else type(exc).__name__
            log.info("bearer token refused: %s", description)
            raise AppError(
                401, "invalid_token", "The bearer token is invalid.",
                headers={"WWW-Authenticate": f'Bearer error="invalid_token", error_description="{description}"'},
            ) from None
        self.claims = dict(claims)
        self.token = "verified"

    # -- answering ----------------------------------------------------------------------------
    def _start(self, status: int, headers: Mapping[str, str]) -> None:
        h = self._handler
        if not self.body.consumed:
            self.body.drain()
        if not self.body.consumed:
            h.close_connection = True
        self.status = status
        h.send_response(status)
        for name, value in headers.items():
            h.send_header(name, value)
        if h.close_connection:
            h.send_header("Connection", "close")
        h.end_headers()

    def send_bytes(self, status: int, data: bytes, content_type: str = "application/octet-stream",
                   headers: Mapping[str, str] | None = None) -> None:
        all_headers = {"Content-Type": content_type, "Content-Length": str(len(data)), **(headers or {})}
        self._start(status, all_headers)
        if self.method != "HEAD" and data and status not in (204, 304):
            self._handler.wfile.write(data)

    def send_json(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload, sort_keys=True).encode() + b"\n"
        self.send_bytes(status, data, "application/json", headers)

    def send_empty(self, status: int, headers: Mapping[str, str] | None = None) -> None:
        self._start(status, {"Content-Length": "0", **(headers or {})} if status != 304 else dict(headers or {}))

    def send_file(self, status: int, path: str | os.PathLike[str], size: int,
                  headers: Mapping[str, str] | None = None, content_type: str = "application/octet-stream") -> None:
        """Send a file with ``socket.sendfile`` (zero-copy on Linux); HEAD gets the headers only."""
        with open(path, "rb") as fh:
            self._start(status, {"Content-Type": content_type, "Content-Length": str(size), **(headers or {})})
            if self.method == "HEAD":
                return
            sent = self._handler.connection.sendfile(fh, 0, size)
            if sent != size:
                self._handler.close_connection = True

    def send_stream(self, status: int, chunks: Iterator[bytes], *, length: int | None = None,
                    content_type: str = "application/octet-stream") -> None:
        """Send generated content: with ``length`` as Content-Length, otherwise chunked."""
        headers = {"Content-Type": content_type}
        if length is None:
            headers["Transfer-Encoding"] = "chunked"
        else:
            headers["Content-Length"] = str(length)
        self._start(status, headers)
        if self.method == "HEAD":
            return
        w = self._handler.wfile
        for piece in chunks:
            if length is None:
                if piece:
                    w.write(b"%x\r\n" % len(piece) + piece + b"\r\n")
            else:
                w.write(piece)
        if length is None:
            w.write(b"0\r\n\r\n")


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "meshclient-sandbox-app"
    sys_version = ""
    disable_nagle_algorithm = True
    rbufsize = 64 * 1024
    server: _Server

    def _dispatch(self) -> None:
        app = self.server.app
        request: Request | None = None
        try:
            request = Request(self)
            request.authenticate(app.token_validator)
            if app.require_token and request.token == "none":
                raise AppError(401, "token_required", "This service needs a bearer token.",
                               headers={"WWW-Authenticate": 'Bearer realm="meshclient-sandbox"'})
            app.handle(request)
        except AppError as err:
            self._error(request, err)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
        except Exception:
            log.exception("%s: %s %s failed", app.name, self.command, self.path.partition("?")[0])
            self._error(request, AppError(500, "internal_error", "The app failed; see its log."))
        if request is not None and not request.body.consumed:
            self.close_connection = True

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = _dispatch

    def _error(self, request: Request | None, err: AppError) -> None:
        if request is not None and request.status:  # the response has started: all we can do is close
            self.close_connection = True
            return
        payload = {"error": err.code, "message": err.message, **err.extra}
        with contextlib.suppress(OSError):
            if request is not None:
                request.send_json(err.status, payload, err.headers)
                return
            # the request could not even be read (bad framing): answer and close
            self.close_connection = True
            data = json.dumps(payload, sort_keys=True).encode() + b"\n"
            self.send_response(err.status)
            for k, v in {**err.headers, "Content-Type": "application/json",
                         "Content-Length": str(len(data)), "Connection": "close"}.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        log.debug("%s: %s %s %s", self.server.app.name, self.command, self.path.partition("?")[0], code)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # BaseHTTPRequestHandler's messages can carry the request line with its query


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """Tracks connections and threads so ``stop()`` ends idle keep-alive connections and joins them."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 512

    def __init__(self, address: tuple[str, int], app: App) -> None:
        self.app = app
        self._lock = threading.Lock()
        self._live: dict[threading.Thread, socket.socket] = {}
        handler = type("Handler", (_Handler,), {"timeout": app.idle_timeout})
        super().__init__(address, handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(target=self._run, args=(request, client_address),
                                  name=f"{self.app.name}-conn", daemon=True)
        with self._lock:
            self._live[thread] = request
            thread.start()

    def _run(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._lock:
                self._live.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.debug("%s: connection from %s ended with an error", self.app.name, client_address[0], exc_info=True)

    def shutdown_request(self, request: Any) -> None:
        """Lingering close: FIN first, then drop what the client still sends for a moment.

        Closing with unread input makes the kernel answer with RST, which can destroy the
        response the client has not read yet (an upload answered early).
        """
        try:
            request.shutdown(socket.SHUT_WR)
            request.settimeout(_LINGER_SECONDS)
            total = 0
            while total < _LINGER_BYTES:
                data = request.recv(CHUNK)
                if not data:
                    break
                total += len(data)
        except (OSError, ValueError):
            pass
        self.close_request(request)

    def end_connections(self, timeout: float) -> None:
        with self._lock:
            live = dict(self._live)
        for sock in live.values():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in live:
            thread.join(timeout)


class App:
    """Base of the sandbox apps: a plain-HTTP server on loopback with optional bearer tokens.

    Args:
        host, port: where to listen (port 0: any free port).
        token_validator: returns a token's claims or raises; a request with a bad bearer token
            gets 401 ``invalid_token``. Without one, tokens are not checked (and not trusted).
        require_token: refuse requests without a bearer token (401).
        idle_timeout: seconds an idle keep-alive connection is kept.
    """

    name = "app"

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0, token_validator: TokenValidator | None = None,
                 require_token: bool = False, idle_timeout: float = 600.0) -> None:
        if require_token and token_validator is None:
            raise ValueError("require_token=True needs a token_validator.")
        self.host = host
        self._port = port
        self.token_validator = token_validator
        self.require_token = require_token
        self.idle_timeout = idle_timeout
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def handle(self, request: Request) -> None:  # pragma: no cover - abstract
        raise AppError(404, "not_found", "No such resource.")

    # -- lifecycle --------------------------------------------------------------------------
    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started.")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self: _A) -> _A:
        if self._server is not None:
            raise RuntimeError(f"{self.name} was already started.")
        self._server = _Server((self.host, self._port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"{self.name}-serve", daemon=True)
        self._thread.start()
        log.info("%s listening on %s", self.name, self.url)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, end open connections and join their threads. Idempotent."""
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        self._thread = None
        server.shutdown()
        thread.join(timeout)
        server.server_close()
        server.end_connections(timeout)

    def __enter__(self: _A) -> _A:
        return self.start() if self._server is None else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
