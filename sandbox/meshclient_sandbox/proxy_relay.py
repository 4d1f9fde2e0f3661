"""The inbound proxy's HTTP/1.1 relay: one client connection's requests, each checked against the
policy, forwarded to the app on a kept-alive upstream connection with the verified client
identity in ``l5d-client-id``, and the app's answer streamed back (``Expect: 100-continue``,
chunked and length-delimited bodies, early answers, lingering close). Mixed into
:class:`~meshclient_sandbox.proxy.InboundProxy`, which owns the listeners, TLS and threads.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from dataclasses import dataclass

from meshclient.identity import Identity

from .http1 import (
    SMALL_BUFFER,
    Gone,
    LazyBuffer,
    Reject,
    RequestHead,
    Stream,
    copy_chunked,
    copy_exact,
    copy_until_eof,
    linger_close,
    parse_head,
    parse_request,
    response_framing,
    send_all,
    send_or_gone,
    serialize_head,
    strip_hop_by_hop,
    synthetic_response,
)
from .policy import ClientInfo, ServerPolicy

__all__ = ["HTTPRelay", "Upstream"]

log = logging.getLogger("meshclient_sandbox.proxy")


@dataclass
class Upstream:
    """The app-side connection of one client connection (kept alive across its requests)."""

    stream: Stream | None = None
    port: int = 0


class HTTPRelay:
    """Relaying requests; the proxy provides the state and bookkeeping below."""

    identity: Identity
    app_host: str
    idle_timeout: float
    io_timeout: float
    connect_timeout: float
    _stopping: threading.Event

    def policy_for(self, app_port: int) -> ServerPolicy:
        raise NotImplementedError

    def _count(self, name: str) -> None:
        raise NotImplementedError

    def _track(self, old: socket.socket | None, new: socket.socket | None) -> None:
        raise NotImplementedError

    def _close(self, sock: socket.socket | None) -> None:
        raise NotImplementedError

    def _connect(self, app_port: int) -> Stream:
        try:
            sock = socket.create_connection((self.app_host, app_port), timeout=self.connect_timeout)
        except OSError as exc:
            self._count("upstream_errors")
            reason = exc.strerror or type(exc).__name__
            raise Reject(502, f"connect error to app port {app_port}: {reason}") from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(self.io_timeout)
        self._track(None, sock)
        return Stream(sock)

    def _serve_http(self, down: Stream, client: ClientInfo, app_port: int, upstream: Upstream) -> None:
        """HTTP/1.1 requests on one client connection, each authorized, then forwarded."""
        buffer = LazyBuffer()
        while not self._stopping.is_set():
            down.sock.settimeout(self.idle_timeout)
            try:
                raw = down.read_head()
                if raw is None:
                    return
                down.sock.settimeout(self.io_timeout)
                req = parse_request(raw)
            except Reject as exc:
                self._reject(down, exc.status, exc.message, linger=True)
                return
            except (Gone, OSError):
                return
            self._count("requests")
            decision = self.policy_for(app_port).check(client, server=self.identity.value)
            if not decision.allowed:
                self._count("denied")
                log.info("request denied on app port %d: %s", app_port, decision.detail)
                self._reject(down, 403, decision.reason, body=decision.detail, linger=req.framing != "none")
                return
            try:
                keep = self._exchange(down, req, client, app_port, upstream, buffer)
            except Reject as exc:
                self._reject(down, exc.status, exc.message, linger=True)
                return
            except (Gone, OSError):
                return
            if not keep:
                return

    def _reject(self, down: Stream, status: int, message: str, *, body: str = "", linger: bool = False) -> None:
        with contextlib.suppress(OSError):
            down.sock.sendall(synthetic_response(status, message, body=body))
            if linger:
                linger_close(down)

    def _exchange(self, down: Stream, req: RequestHead, client: ClientInfo, app_port: int,
                  upstream: Upstream, buffer: LazyBuffer) -> bool:
        """Forward one request and its response; return whether both connections stay open."""
        headers = [(n, v) for n, v in strip_hop_by_hop(req.head)
                   if n.lower() != b"l5d-client-id" and not (req.expect_continue and n.lower() == b"expect")]
        if client.identity is not None:
            headers.append((b"l5d-client-id", client.identity.value.encode("ascii")))
        head = serialize_head(req.head.start, headers)

        if upstream.stream is not None and (upstream.port != app_port or upstream.stream.readable_now()):
            # another app, or the kept-alive app connection was closed (or sent garbage) while idle
            self._close(upstream.stream.sock)
            upstream.stream = None
        reused = upstream.stream is not None
        up = upstream.stream or self._connect(app_port)
        upstream.stream, upstream.port = up, app_port
        if req.expect_continue:
            send_or_gone(down, b"HTTP/1.1 100 Continue\r\n\r\n")

        # A small body already buffered goes out with the head in one write.
        prefix = head
        if req.framing == "length" and req.length <= len(down.buf) and req.length <= SMALL_BUFFER:
            prefix = head + bytes(down.buf[: req.length])
            del down.buf[: req.length]
            req.framing = "none"
        try:
            send_all(up, prefix)
        except Gone:
            if not reused:
                raise Reject(502, "connection to the app failed while sending the request") from None
            self._close(up.sock)
            up = self._connect(app_port)
            upstream.stream = up
            try:
                send_all(up, prefix)
            except Gone:
                raise Reject(502, "connection to the app failed while sending the request") from None

        complete = True
        try:
            if req.framing == "length":
                complete = copy_exact(down, up, req.length, buffer.get(), watch=up)
            elif req.framing == "chunked":
                complete = copy_chunked(down, up, buffer.get(), watch=up)
        except Gone as gone:
            if gone.side == "src":  # the client went away mid-upload: nothing to answer
                return False
            complete = False  # the app stopped reading: it may have answered early
        return self._relay_response(down, up, req, upstream, complete, buffer,
                                    retry_ok=reused and req.framing == "none", app_port=app_port,
                                    resend=prefix)

    def _relay_response(self, down: Stream, up: Stream, req: RequestHead, upstream: Upstream,
                        complete: bool, buffer: LazyBuffer, *, retry_ok: bool, app_port: int,
                        resend: bytes) -> bool:
        while True:
            try:
                raw = up.read_head()
            except Reject:
                raise Reject(502, "the app sent a response head over 64 KiB") from None
            except TimeoutError:
                self._count("upstream_errors")
                raise Reject(504, f"the app on port {app_port} did not answer in time") from None
            except (Gone, OSError):
                raw = None
            if raw is None:
                if retry_ok:  # a kept-alive app connection closed under us: once more on a new one
                    retry_ok = False
                    self._close(up.sock)
                    up = self._connect(app_port)
                    upstream.stream = up
                    try:
                        send_all(up, resend)
                    except Gone:
                        raise Reject(502, "connection to the app failed while sending the request") from None
                    continue
                self._count("upstream_errors")
                raise Reject(502, "connection closed by the app before a response")
            resp = parse_head(raw, 502)
            parts = resp.start.split(b" ", 2)
            if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
                raise Reject(502, "the app sent a malformed status line")
            status = int(parts[1])
            if 100 <= status < 200:
                if status == 101:
                    raise Reject(502, "the app switched protocols, which the sandbox proxy does not relay")
                send_or_gone(down, serialize_head(resp.start, strip_hop_by_hop(resp)))
                continue
            break

        framing, length = response_framing(resp, status, req.method)
        up_keep = (parts[0] == b"HTTP/1.1" and b"close" not in resp.tokens(b"connection")
                   and framing != "eof" and complete)
        down_keep = req.keep_alive and complete
        headers = strip_hop_by_hop(resp)
        rechunk = framing == "eof" and req.version == b"HTTP/1.1"
        if rechunk:
            headers.append((b"transfer-encoding", b"chunked"))
        elif framing == "eof":
            down_keep = False
        if not down_keep:
            headers.append((b"connection", b"close"))
        out_head = serialize_head(resp.start, headers)

        try:
            if framing == "none":
                send_all(down, out_head)
            elif framing == "length" and length <= len(up.buf) and length <= SMALL_BUFFER:
                body = bytes(up.buf[:length])
                del up.buf[:length]
                send_all(down, out_head + body)
            elif framing == "length":
                copy_exact(up, down, length, buffer.get(), out_head)
            elif framing == "chunked":
                copy_chunked(up, down, buffer.get(), out_head)
            else:
                send_all(down, out_head)
                copy_until_eof(up, down, buffer.get(), chunked=rechunk)
        except Gone as gone:
            if gone.side == "src":
                self._count("upstream_errors")
                log.info("the app on port %d failed mid-response; closing the client connection", app_port)
            return False
        if not up_keep:
            self._close(up.sock)
            upstream.stream = None
        if not complete:
            linger_close(down)
        return down_keep


