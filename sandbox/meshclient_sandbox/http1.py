"""HTTP/1.1 on the wire, as the sandbox's inbound proxy streams it: a buffered socket reader,
request and response heads parsed strictly (limits, token and number syntax), message framing
(Content-Length, chunked, until EOF), body copies through one fixed buffer, hop-by-hop header
removal, synthetic proxy answers, and lingering close. No threads and no policy: those are
:mod:`.proxy`'s.
"""

from __future__ import annotations

import contextlib
import re
import select
import socket
import ssl
from collections.abc import Iterable
from dataclasses import dataclass

#: Per-connection copy buffer. Memory per connection stays near this whatever the body size.
BUFFER_SIZE = 256 * 1024
_MAX_HEAD = 64 * 1024
_MAX_HEADERS = 256
_MAX_LINE = 8 * 1024
_LINGER_BYTES = 64 * 1024 * 1024
_LINGER_SECONDS = 2.0
_EARLY_CHECK_BYTES = 1024 * 1024
SMALL_BUFFER = 64 * 1024

_TOKEN = re.compile(rb"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_HEX = re.compile(rb"^[0-9A-Fa-f]{1,15}$")
_DIGITS = re.compile(rb"^[0-9]{1,18}$")
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-connection", b"te", b"upgrade"})
_FRAMING = frozenset({b"transfer-encoding", b"content-length", b"host"})
_REASONS = {400: b"Bad Request", 403: b"Forbidden", 417: b"Expectation Failed", 431: b"Request Header Fields Too Large",
            501: b"Not Implemented", 502: b"Bad Gateway", 504: b"Gateway Timeout", 505: b"HTTP Version Not Supported"}


class Gone(Exception):
    """A peer went away or failed; ``side`` says which end of a copy ("src" or "dst")."""

    def __init__(self, side: str, detail: str = "") -> None:
        super().__init__(f"{side}: {detail}")
        self.side = side


class Reject(Exception):
    """A request the proxy answers itself (bad framing, unreachable app, ...), then closes."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Stream:
    """A socket with a small read buffer: head and line reads for framing, ``readinto`` for bodies."""

    __slots__ = ("sock", "buf")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _recv(self) -> bytes:
        try:
            return self.sock.recv(SMALL_BUFFER)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return b""

    def read_head(self) -> bytes | None:
        """One message head through its blank line; ``None`` on a clean close between messages."""
        start = 0
        while True:
            if start == 0:
                while self.buf[:2] == b"\r\n":  # RFC 9112 §2.2: ignore empty lines before a request
                    del self.buf[:2]
            idx = self.buf.find(b"\r\n\r\n", start)
            if idx + 4 > _MAX_HEAD:
                raise Reject(431, "request head too large")
            if idx >= 0:
                head = bytes(self.buf[: idx + 4])
                del self.buf[: idx + 4]
                return head
            if len(self.buf) > _MAX_HEAD:
                raise Reject(431, "request head too large")
            start = max(0, len(self.buf) - 3)
            data = self._recv()
            if not data:
                if not self.buf:
                    return None
                raise Gone("src", "connection closed inside a message head")
            self.buf += data

    def read_line(self) -> bytes:
        """One CRLF-terminated line (chunk sizes, trailers), without its terminator."""
        start = 0
        while True:
            idx = self.buf.find(b"\n", start)
            if idx >= 0:
                line = bytes(self.buf[:idx])
                del self.buf[: idx + 1]
                return line[:-1] if line.endswith(b"\r") else line
            if len(self.buf) > _MAX_LINE:
                raise Gone("src", "line too long")
            start = len(self.buf)
            data = self._recv()
            if not data:
                raise Gone("src", "connection closed inside a chunked body")
            self.buf += data

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self._recv()
            if not data:
                raise Gone("src", "connection closed early")
            self.buf += data
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def readinto(self, view: memoryview) -> int:
        if self.buf:
            n = min(len(self.buf), len(view))
            view[:n] = self.buf[:n]
            del self.buf[:n]
            return n
        try:
            return self.sock.recv_into(view)
        except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
            return 0

    def readable_now(self) -> bool:
        """Data (or EOF) is waiting: used to notice an app answering before the upload ends."""
        if self.buf:
            return True
        try:
            ready, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(ready)


def send_all(dst: Stream, data: bytes | memoryview) -> None:
    try:
        dst.sock.sendall(data)
    except OSError as exc:
        raise Gone("dst", str(exc)) from None


def read_into(src: Stream, view: memoryview) -> int:
    try:
        n = src.readinto(view)
    except OSError as exc:
        raise Gone("src", str(exc)) from None
    if n == 0:
        raise Gone("src", "connection closed inside a body")
    return n


def copy_exact(src: Stream, dst: Stream, n: int, view: memoryview, prefix: bytes = b"",
                watch: Stream | None = None) -> bool:
    """Copy ``n`` bytes, ``prefix`` first; return False if ``watch`` became readable (early answer)."""
    since_check = 0
    while n > 0:
        k = read_into(src, view[: min(n, len(view))])
        if prefix:
            if k <= SMALL_BUFFER:
                send_all(dst, prefix + view[:k].tobytes())
            else:
                send_all(dst, prefix)
                send_all(dst, view[:k])
            prefix = b""
        else:
            send_all(dst, view[:k])
        n -= k
        if watch is not None:
            since_check += k
            if since_check >= _EARLY_CHECK_BYTES:
                since_check = 0
                if watch.readable_now():
                    return False
    if prefix:
        send_all(dst, prefix)
    return True


def copy_chunked(src: Stream, dst: Stream, view: memoryview, prefix: bytes = b"",
                  watch: Stream | None = None) -> bool:
    """Copy a chunked body verbatim (sizes, extensions, trailers), validating its framing."""
    pending = prefix
    while True:
        line = read_line(src)
        size_text = line.split(b";", 1)[0].strip(b" \t")
        if not _HEX.match(size_text):
            raise Gone("src", "invalid chunk size")
        size = int(size_text, 16)
        pending += line + b"\r\n"
        if size == 0:
            trailers = bytearray()
            while True:
                t = read_line(src)
                trailers += t + b"\r\n"
                if not t:
                    break
                if len(trailers) > _MAX_HEAD:
                    raise Gone("src", "trailers too large")
            send_all(dst, pending + bytes(trailers))
            return True
        if not copy_exact(src, dst, size, view, pending, watch):
            return False
        if read_line(src) != b"":
            raise Gone("src", "chunk data not followed by CRLF")
        pending = b"\r\n"


def read_line(src: Stream) -> bytes:
    try:
        return src.read_line()
    except OSError as exc:
        raise Gone("src", str(exc)) from None


def copy_until_eof(src: Stream, dst: Stream, view: memoryview, chunked: bool) -> None:
    """Copy until the app closes; re-framed as chunked for HTTP/1.1 clients so they can keep the connection."""
    while True:
        try:
            k = src.readinto(view)
        except OSError as exc:
            raise Gone("src", str(exc)) from None
        if k == 0:
            if chunked:
                send_all(dst, b"0\r\n\r\n")
            return
        if not chunked:
            send_all(dst, view[:k])
        elif k <= SMALL_BUFFER:
            send_all(dst, b"%x\r\n" % k + view[:k].tobytes() + b"\r\n")
        else:
            send_all(dst, b"%x\r\n" % k)
            send_all(dst, view[:k])
            send_all(dst, b"\r\n")


class LazyBuffer:
    """The per-connection copy buffer, allocated on the first body (most requests have none)."""

    __slots__ = ("_view",)

    def __init__(self) -> None:
        self._view: memoryview | None = None

    def get(self) -> memoryview:
        if self._view is None:
            self._view = memoryview(bytearray(BUFFER_SIZE))
        return self._view


# -- HTTP/1.1 messages ------------------------------------------------------------------------
@dataclass
class Head:
    """A parsed request or response head; header names keep their case, values are stripped."""

    start: bytes
    headers: list[tuple[bytes, bytes]]

    def values(self, name: bytes) -> list[bytes]:
        return [v for n, v in self.headers if n.lower() == name]

    def tokens(self, name: bytes) -> set[bytes]:
        return {t.strip().lower() for v in self.values(name) for t in v.split(b",") if t.strip()}


def parse_head(head: bytes, status_on_error: int) -> Head:
    lines = head[:-4].split(b"\r\n")
    if len(lines) - 1 > _MAX_HEADERS:
        raise Reject(431, "too many header fields")
    headers: list[tuple[bytes, bytes]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep or not _TOKEN.match(name):
            raise Reject(status_on_error, "malformed header field")
        value = value.strip(b" \t")
        if b"\r" in value or b"\n" in value or b"\0" in value:
            raise Reject(status_on_error, "invalid character in a header value")
        headers.append((name, value))
    return Head(lines[0], headers)


@dataclass
class RequestHead:
    head: Head
    method: bytes
    target: bytes
    version: bytes
    framing: str  # "none" | "length" | "chunked"
    length: int
    keep_alive: bool
    expect_continue: bool


def parse_request(raw: bytes) -> RequestHead:
    head = parse_head(raw, 400)
    parts = head.start.split(b" ")
    if len(parts) != 3 or not _TOKEN.match(parts[0]) or not parts[1]:
        raise Reject(400, "malformed request line")
    method, target, version = parts
    if version not in (b"HTTP/1.1", b"HTTP/1.0"):
        raise Reject(505, "only HTTP/1.0 and HTTP/1.1 are supported here")
    framing, length = request_framing(head, version)
    connection = head.tokens(b"connection")
    keep_alive = b"close" not in connection if version == b"HTTP/1.1" else False
    expect = [v.lower() for v in head.values(b"expect")]
    if expect and expect != [b"100-continue"]:
        raise Reject(417, "unsupported expectation")
    if b"upgrade" in connection:
        raise Reject(501, "protocol upgrades are not supported by the sandbox proxy")
    return RequestHead(head, method, target, version, framing, length, keep_alive, bool(expect))


def request_framing(head: Head, version: bytes) -> tuple[str, int]:
    """RFC 9112 §6: chunked wins; both or ambiguous lengths are refused (no smuggling)."""
    te = head.values(b"transfer-encoding")
    cl = head.values(b"content-length")
    if te:
        codings = [c.strip().lower() for v in te for c in v.split(b",") if c.strip()]
        if version != b"HTTP/1.1" or not codings or codings[-1] != b"chunked" or cl:
            raise Reject(400, "invalid Transfer-Encoding")
        return "chunked", 0
    if cl:
        values = {c.strip() for v in cl for c in v.split(b",")}
        if len(values) != 1:
            raise Reject(400, "conflicting Content-Length values")
        value = values.pop()
        if not _DIGITS.match(value):
            raise Reject(400, "invalid Content-Length")
        n = int(value)
        return ("length", n) if n else ("none", 0)
    return "none", 0


def response_framing(head: Head, status: int, method: bytes) -> tuple[str, int]:
    if method == b"HEAD" or status in (204, 304) or 100 <= status < 200:
        return "none", 0
    te = head.values(b"transfer-encoding")
    if te:
        codings = [c.strip().lower() for v in te for c in v.split(b",") if c.strip()]
        return ("chunked", 0) if codings and codings[-1] == b"chunked" else ("eof", 0)
    cl = head.values(b"content-length")
    if cl:
        values = {c.strip() for v in cl for c in v.split(b",")}
        value = values.pop() if len(values) == 1 else b""
        if not _DIGITS.match(value):
            raise Reject(502, "the app sent an invalid Content-Length")
        return "length", int(value)
    return "eof", 0


def strip_hop_by_hop(head: Head) -> list[tuple[bytes, bytes]]:
    # Connection may name extra hop-by-hop fields, but never the framing ones we forward as they are.
    drop = _HOP_BY_HOP | (head.tokens(b"connection") - _FRAMING)
    return [(n, v) for n, v in head.headers if n.lower() not in drop]


def serialize_head(start: bytes, headers: Iterable[tuple[bytes, bytes]]) -> bytes:
    return b"\r\n".join([start, *(n + b": " + v for n, v in headers)]) + b"\r\n\r\n"


def synthetic_response(status: int, message: str, *, body: str = "", close: bool = True) -> bytes:
    """A response of the proxy's own, shaped like Linkerd's (``l5d-proxy-error``)."""
    payload = (body or message).encode("utf-8", "replace") + b"\n"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(payload)).encode()),
        (b"l5d-proxy-error", message.encode("ascii", "replace")),
    ]
    if close:
        headers += [(b"l5d-proxy-connection", b"close"), (b"connection", b"close")]
    return serialize_head(b"HTTP/1.1 %d %s" % (status, _REASONS.get(status, b"Error")), headers) + payload


def send_or_gone(dst: Stream, data: bytes) -> None:
    try:
        dst.sock.sendall(data)
    except OSError:
        raise Gone("down", "client went away") from None


def ssl_pending(sock: socket.socket) -> int:
    """Decrypted bytes an SSL socket holds that ``select`` cannot see."""
    return sock.pending() if isinstance(sock, ssl.SSLSocket) else 0


def shutdown_socket(sock: socket.socket) -> None:
    """Wake any thread blocked on ``sock`` (TLS or not) without touching its TLS state."""
    with contextlib.suppress(OSError, ValueError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


def linger_close(down: Stream) -> None:
    """Read and drop what the client still sends for a while, so it can read our answer.

    Closing with unread input makes the kernel send RST, and a client still uploading would
    then lose the response (nginx's lingering_close).
    """
    try:
        socket.socket.shutdown(down.sock, socket.SHUT_WR)  # FIN now: the client sees the end of our answer
        down.sock.settimeout(_LINGER_SECONDS)
        view = memoryview(bytearray(SMALL_BUFFER))
        total = 0
        while total < _LINGER_BYTES:
            n = down.readinto(view)
            if not n:
                break
            total += n
    except (OSError, ValueError):
        pass
