"""Helpers for the sandbox proxy and app tests: raw TLS/HTTP clients, direct mode, a proxy subprocess.

The raw clients exist because the behaviour under test sits below ``requests``: SNI, ALPN,
a missing client certificate, the transport header, spoofed headers. Run as a script, this
module serves an :class:`InboundProxy` from a JSON config (used to measure the proxy's
memory in its own process)::

    python proxy_fixtures.py '{"cert": ..., "key": ..., "trust_anchors": ..., "app_port": N, "policy": {...}}'

It prints one JSON line ``{"url": ..., "direct": ...}`` and serves until its stdin closes.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from meshclient import Credentials
from meshclient.tls import load_cert_chain_from_memory
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI
from meshclient_sandbox.transport_header import ALPN_PROTOCOL, SessionProtocol, TransportHeader, encode_prefaced

ML_TEAM = "*.ml-team.serviceaccount.identity.linkerd.cluster.local"


def creds_of(leaf: IssuedLeaf) -> Credentials:
    return Credentials.from_pem(leaf.chain_pem, leaf.key_pem, leaf.trust_anchors_pem)


def linkerd_id(sa: str, ns: str) -> str:
    return f"{sa}.{ns}.serviceaccount.identity.linkerd.cluster.local"


# -- raw TLS clients -------------------------------------------------------------------------
def client_context(pki: SandboxPKI, leaf: IssuedLeaf | None, *, alpn: list[str] | None = None) -> ssl.SSLContext:
    """A TLS 1.3 client context trusting the sandbox anchors, with ``leaf`` as client cert (or none)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=pki.trust_anchors_pem.decode())
    if leaf is not None:
        load_cert_chain_from_memory(ctx, leaf.chain_pem, leaf.key_pem)
    if alpn:
        ctx.set_alpn_protocols(alpn)
    return ctx


def tls_connect(address: tuple[str, int], ctx: ssl.SSLContext, sni: str | None, timeout: float = 10.0) -> ssl.SSLSocket:
    raw = socket.create_connection(address, timeout=timeout)
    try:
        return ctx.wrap_socket(raw, server_hostname=sni)
    except BaseException:
        raw.close()
        raise


def direct_connect(address: tuple[str, int], pki: SandboxPKI, leaf: IssuedLeaf | None, sni: str, app_port: int,
                   *, protocol: SessionProtocol | None = SessionProtocol.HTTP1, alpn: bool = True) -> ssl.SSLSocket:
    """Linkerd's direct mode: TLS with ALPN ``transport.l5d.io/v1``, then the transport header."""
    ctx = client_context(pki, leaf, alpn=[ALPN_PROTOCOL] if alpn else None)
    sock = tls_connect(address, ctx, sni)
    sock.sendall(encode_prefaced(TransportHeader(port=app_port, protocol=protocol)))
    return sock


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-case names; repeated fields joined with ", "
    body: bytes


def _read_until(sock: socket.socket, buf: bytearray, marker: bytes) -> int:
    while (idx := buf.find(marker)) < 0:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("connection closed before the response completed")
        buf += data
    return idx


def read_response(sock: socket.socket, *, head_request: bool = False, buf: bytearray | None = None) -> RawResponse:
    """Read one HTTP/1.1 response (Content-Length or chunked) from ``sock``."""
    buf = buf if buf is not None else bytearray()
    while True:
        idx = _read_until(sock, buf, b"\r\n\r\n")
        head = bytes(buf[:idx]).decode("latin-1")
        del buf[: idx + 4]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ")[1])
        if status >= 200:
            break
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if head_request or status in (204, 304):
        return RawResponse(status, headers, b"")
    body = bytearray()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        while True:
            idx = _read_until(sock, buf, b"\r\n")
            size = int(bytes(buf[:idx]).split(b";")[0], 16)
            del buf[: idx + 2]
            while len(buf) < size + 2:
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError("closed inside a chunk")
                buf += data
            body += buf[:size]
            del buf[: size + 2]
            if size == 0:
                break
    else:
        length = int(headers.get("content-length", "0"))
        while len(buf) < length:
            data = sock.recv(65536)
            if not data:
                raise ConnectionError("closed inside a body")
            buf += data
        body += buf[:length]
        del buf[:length]
    return RawResponse(status, headers, bytes(body))


def http_request(sock: socket.socket, method: str, path: str, *, headers: dict[str, str] | None = None,
                 body: bytes = b"", host: str = "sandbox") -> RawResponse:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}"]
    for k, v in (headers or {}).items():
        lines.append(f"{k}: {v}")
    if body or method in ("PUT", "POST"):
        lines.append(f"Content-Length: {len(body)}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    return read_response(sock, head_request=method == "HEAD")


def refused(sock: socket.socket, payload: bytes = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n") -> bool:
    """True when the peer closes or alerts instead of answering ``payload``."""
    try:
        sock.sendall(payload)
        return sock.recv(65536) == b""
    except (ssl.SSLError, ConnectionError, TimeoutError, OSError):
        return True


# -- leak checks -----------------------------------------------------------------------------
def socket_fds() -> set[str]:
    """This process' open sockets (``socket:[inode]``), to check nothing leaked."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:"):
                out.add(f"{fd}:{target}")
    return out


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return bool(predicate())


# -- the proxy in a subprocess (memory measurements) -----------------------------------------
class ProxyProcess:
    """An InboundProxy in a child process, with its RSS readable from /proc."""

    def __init__(self, workdir: Path, leaf: IssuedLeaf, app_port: int, policy: dict[str, Any]) -> None:
        paths = leaf.write(workdir)
        config = {"cert": str(paths["cert"]), "key": str(paths["key"]), "trust_anchors": str(paths["trust_anchors"]),
                  "app_port": app_port, "policy": policy}
        self.proc = subprocess.Popen(
            [sys.executable, __file__, json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=Path(__file__).resolve().parents[2],
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.kill()
            raise RuntimeError("the proxy subprocess did not start")
        info = json.loads(line)
        self.url: str = info["url"]
        self.pid = self.proc.pid

    def status_kib(self, field: str) -> int:
        """A ``/proc/<pid>/status`` size field (VmRSS, VmHWM) in KiB."""
        with open(f"/proc/{self.pid}/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise KeyError(field)

    def close(self) -> None:
        if self.proc.poll() is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class RSSSampler:
    """Samples a process' VmRSS every ``interval`` seconds in a thread; ``peak_kib`` is the highest seen."""

    def __init__(self, proc: ProxyProcess, interval: float = 0.05) -> None:
        self.proc = proc
        self.interval = interval
        self.peak_kib = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.peak_kib = max(self.peak_kib, self.proc.status_kib("VmRSS"))
                self.samples += 1
            self._stop.wait(self.interval)

    def __enter__(self) -> RSSSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@contextlib.contextmanager
def proxy_process(workdir: Path, leaf: IssuedLeaf, app_port: int, policy: dict[str, Any]) -> Iterator[ProxyProcess]:
    proc = ProxyProcess(workdir, leaf, app_port, policy)
    try:
        yield proc
    finally:
        proc.close()


def _serve(config: dict[str, Any]) -> None:
    from meshclient_sandbox.proxy import InboundProxy

    creds = Credentials.from_files(cert=config["cert"], key=config["key"], trust_anchors=config["trust_anchors"])
    with InboundProxy(creds, config["app_port"], policy=config.get("policy")) as proxy:
        print(json.dumps({"url": proxy.url(), "direct": proxy.direct_address}), flush=True)
        sys.stdin.read()  # serve until the parent closes our stdin


if __name__ == "__main__":
    _serve(json.loads(sys.argv[1]))
