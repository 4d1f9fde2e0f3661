"""A small in-process mTLS HTTP server for core tests (the real peers are nginx and stunnel)."""

from __future__ import annotations

import http.server
import json
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        peer = self.connection.getpeercert()  # type: ignore[attr-defined]
        sans = [v for k, v in peer.get("subjectAltName", ())] if peer else []
        self.server.requests.append({"method": self.command, "path": self.path, "client": sans})
        if self.path.startswith("/redirect-same"):
            self.send_response(302)
            self.send_header("Location", "/echo-after-redirect")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if self.path.startswith("/redirect-other"):
            self.send_response(302)
            self.send_header("Location", "https://other.example:8443/x")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        payload = json.dumps({"method": self.command, "path": self.path, "client": sans, "body_len": len(body),
                              "headers": dict(self.headers)}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    def log_message(self, *args: Any) -> None:
        pass


class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ctx: ssl.SSLContext) -> None:
        self.ctx = ctx
        self.requests: list[dict[str, Any]] = []
        self.handshakes = 0
        super().__init__(("127.0.0.1", 0), _Handler)

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.do_handshake()
        except (ssl.SSLError, OSError):
            return
        self.handshakes += 1
        super().finish_request(request, client_address)


@contextmanager
def mtls_server(ctx: ssl.SSLContext) -> Iterator[_Server]:
    server = _Server(ctx)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
