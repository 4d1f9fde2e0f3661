"""A TCP relay that cuts a connection mid-upload (a proxy dying, an idle timeout, a 413 drop).

It relays bytes both ways between a client and an upstream (nginx, an inbound proxy), TLS
untouched. The first ``cuts`` connections that carry more than ``cut_after`` bytes from the
client are reset (RST on both sides) at that point; later connections pass untouched.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading


class CutProxy:
    def __init__(self, upstream: tuple[str, int], *, cut_after: int, cuts: int = 1) -> None:
        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts_left = cuts
        self.cut_count = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._socks: list[socket.socket] = []
        self._closed = False

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> CutProxy:
        self._spawn(self._accept)
        return self

    def _spawn(self, fn: object, *args: object) -> None:
        t = threading.Thread(target=fn, args=args, daemon=True, name="cut-proxy")  # type: ignore[arg-type]
        t.start()
        self._threads.append(t)

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            up = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
                self._socks += [down, up]
            state = {"sent": 0, "cut": False}
            self._spawn(self._pump, down, up, state, True)
            self._spawn(self._pump, up, down, state, False)

    @staticmethod
    def _reset(*socks: socket.socket) -> None:
        for s in socks:
            with contextlib.suppress(OSError):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RD)  # wakes the other pump's recv without sending a FIN
            with contextlib.suppress(OSError):
                s.close()  # linger 0: an RST

    def _pump(self, src: socket.socket, dst: socket.socket, state: dict[str, int], upload: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                if upload:
                    state["sent"] += len(data)
                    with self._lock:
                        cut = self.cuts_left > 0 and state["sent"] > self.cut_after
                        if cut:
                            self.cuts_left -= 1
                            self.cut_count += 1
                    if cut:
                        self._reset(src, dst)
                        return
                dst.sendall(data)
        except OSError:
            self._reset(src, dst)

    def stop(self) -> None:
        self._closed = True
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes accept()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)  # wakes a thread blocked in recv (close alone does not)
            with contextlib.suppress(OSError):
                s.close()
        for t in self._threads:
            t.join(timeout=5)

    def __enter__(self) -> CutProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
