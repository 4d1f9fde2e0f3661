"""A small in-process mTLS echo service for CLI tests: hashes bodies (Content-Length or chunked),
enforces an ml-team allow-list like a Linkerd policy (403 + l5d-proxy-error), counts requests."""

from __future__ import annotations

import hashlib
import http.server
import json
import socketserver
import ssl
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from meshclient.credentials import Credentials
from meshclient.identity import IdentityPattern
from meshclient_sandbox.tls import build_server_context

ECHO_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
ALLOWED = "*.ml-team.serviceaccount.identity.linkerd.cluster.local"


# -- a tiny stand-in for a meshed pod -----------------------------------------------------------
class _EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers like an app behind a Linkerd inbound proxy: policy first, then an echo."""

    protocol_version = "HTTP/1.1"
    server: EchoServer

    def _read_body(self) -> tuple[int, str]:
        """Length and SHA-256 of the request body (Content-Length or chunked), read in pieces."""
        digest, total = hashlib.sha256(), 0
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                piece = self.rfile.read(size)
                digest.update(piece)
                total += len(piece)
                self.rfile.readline()
            return total, digest.hexdigest()
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            piece = self.rfile.read(min(remaining, 65536))
            if not piece:
                break
            digest.update(piece)
            total += len(piece)
            remaining -= len(piece)
        return total, digest.hexdigest()

    def _answer(self) -> None:
        cert = self.connection.getpeercert()  # type: ignore[attr-defined]
        sans = [v for k, v in cert.get("subjectAltName", ()) if k in ("DNS", "URI")] if cert else []
        client = sans[0] if sans else None
        body_bytes, body_sha256 = self._read_body()
        self.server.requests.append({"method": self.command, "path": self.path, "client": client})
        if client is None or not self.server.allowed.matches(client):
            payload, status = b"", 403
            extra = {"l5d-proxy-error": f"client {client} is not authorized to access this server"}
        else:
            status, extra = 200, {"Content-Type": "application/json"}
            echo = {"server": self.server.identity, "l5d-client-id": client, "method": self.command,
                    "path": self.path, "body_bytes": body_bytes, "body_sha256": body_sha256,
                    "headers": {k: v for k, v in self.headers.items() if k.lower().startswith("x-")}}
            payload = json.dumps(echo, indent=2).encode() + b"\n"
        self.send_response(status)
        for name, value in extra.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


class EchoServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """An mTLS HTTP server on 127.0.0.1 with a mesh identity and an identity allow-list."""

    daemon_threads = True

    def __init__(self, creds: Credentials, allowed: str = ALLOWED) -> None:
        self.ctx = build_server_context(creds)
        self.identity = str(creds.identity)
        self.allowed = IdentityPattern.parse(allowed)
        self.requests: list[dict[str, Any]] = []
        super().__init__(("127.0.0.1", 0), _EchoHandler)

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}"

    def get_request(self) -> tuple[Any, Any]:
        sock, addr = super().get_request()
        return self.ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            request.do_handshake()  # in the worker thread: a bad client never blocks the accept loop
        except (ssl.SSLError, OSError):
            return
        super().finish_request(request, client_address)


@contextmanager
def echo_server(creds: Credentials, allowed: str = ALLOWED) -> Iterator[EchoServer]:
    """Run an :class:`EchoServer` in a background thread for the duration of the block."""
    server = EchoServer(creds, allowed)
    thread = threading.Thread(target=server.serve_forever, name="meshclient-demo-echo", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


