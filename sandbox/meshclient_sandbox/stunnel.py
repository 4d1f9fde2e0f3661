"""stunnel4 as a second real mTLS terminator, in front of a plain-HTTP echo app (tests).

nginx and stunnel are two independent OpenSSL-based TLS servers: if meshclient talks to both,
it is not just agreeing with itself. :class:`StunnelPeer` runs ``stunnel4`` in the foreground
(TLS 1.3 only, ``verifyChain``/``requireCert`` against the mesh anchors) forwarding to an
in-process :class:`EchoApp` on loopback that answers every request with a JSON echo of what it
received. stunnel cannot pass the client certificate to the app, but its log names the
verified subject of each TLS connection and the local port it used towards the app, so
:meth:`StunnelPeer.client_subject_for` maps each request the app saw back to the verified
client (stunnel's version of ``l5d-client-id``).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from meshclient.pki import certs_to_pem, key_to_pem, load_certificates, load_private_key

from .apps.recording import RecordedRequest, RecordingApp
from .nginx import (
    PeerStartError,
    PeerUnavailable,
    free_port,
    listen_address,
    peers_hidden,
    register_live,
    stop_process,
    tail,
    unregister_live,
    wait_for_port,
    write_private,
)
from .pki import IssuedLeaf

__all__ = ["StunnelPeer", "RecordingApp", "RecordedRequest", "find_stunnel"]

_ACCEPTED = re.compile(r"LOG\d\[(\d+)\]: Certificate accepted at depth=0: (.*)$")
_REMOTE = re.compile(r"LOG\d\[(\d+)\]: Service \[[^\]]+\] connected remote server from [^\s]*:(\d+)$")


def find_stunnel() -> str | None:
    """The stunnel binary (Debian names it ``stunnel4``)."""
    if peers_hidden():
        return None
    for name in ("stunnel4", "stunnel"):
        found = shutil.which(name)
        if found:
            return found
    return "/usr/bin/stunnel4" if os.access("/usr/bin/stunnel4", os.X_OK) else None


class StunnelPeer:
    """stunnel4 terminating mTLS (TLS 1.3, client certificate required) in front of an :class:`EchoApp`.

    Use it as a context manager; :meth:`stop` terminates and reaps stunnel, stops the app and
    removes a work dir it created. ``client_trust_pem`` is stunnel's ``CAfile``.
    """

    def __init__(
        self,
        *,
        cert_chain_pem: bytes,
        key_pem: bytes,
        client_trust_pem: bytes,
        workdir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        stunnel: str | None = None,
    ) -> None:
        binary = stunnel or find_stunnel()
        if binary is None:
            raise PeerUnavailable("stunnel is not installed (Debian: apt-get install stunnel4).")
        self.binary = binary
        self.host = host
        self._chain_pem = certs_to_pem(load_certificates(cert_chain_pem, where="StunnelPeer certificate"))
        # PEM for the binary, whatever came in (Linkerd keeps PKCS#8 DER key.p8)
        self._key_pem = key_to_pem(load_private_key(key_pem, where="StunnelPeer key"))
        self._trust_pem = client_trust_pem
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="meshclient-stunnel-"))
        self.app = RecordingApp(host)
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_leaf(cls, leaf: IssuedLeaf, *, client_trust_pem: bytes | None = None, **kwargs: Any) -> StunnelPeer:
        return cls(cert_chain_pem=leaf.chain_pem, key_pem=leaf.key_pem,
                   client_trust_pem=client_trust_pem or leaf.trust_anchors_pem, **kwargs)

    @property
    def url(self) -> str:
        return f"https://{listen_address(self.host, self.port)}"

    @property
    def log_path(self) -> Path:
        return self.workdir / "stunnel.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def config(self) -> str:
        d = self.workdir
        return f"""; written by meshclient_sandbox.stunnel: an mTLS terminator like a Linkerd inbound proxy
foreground = yes
pid =
debug = info
output = {self.log_path}

[mesh]
accept = {listen_address(self.host, self.port)}
connect = {listen_address(self.host, self.app.port)}
cert = {d / "server.crt"}
key = {d / "server.key"}
CAfile = {d / "client-trust.pem"}
verifyChain = yes
requireCert = yes
sslVersionMin = TLSv1.3
"""

    def start(self, *, timeout: float = 15.0, attempts: int = 3) -> StunnelPeer:
        """Start the echo app and stunnel, and wait until stunnel accepts connections."""
        if self.running:
            return self
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "server.crt").write_bytes(self._chain_pem)
        write_private(self.workdir / "server.key", self._key_pem)
        (self.workdir / "client-trust.pem").write_bytes(self._trust_pem)
        self.app.start()
        last = ""
        for _ in range(attempts):
            self.port = free_port(self.host)
            conf = self.workdir / "stunnel.conf"
            conf.write_text(self.config())
            self.log_path.write_bytes(b"")
            with open(self.workdir / "stderr.log", "ab") as stderr:
                proc = subprocess.Popen(
                    [self.binary, str(conf)],
                    stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr, start_new_session=True,
                )
            self._proc = proc
            register_live(self)
            if wait_for_port(self.host, self.port, proc, timeout=timeout):
                return self
            stop_process(proc)
            last = tail(self.log_path)
            if "Address already in use" not in last:
                break
        self.stop()
        raise PeerStartError(f"stunnel did not start on {self.host}:{self.port}:\n{last}")

    def stop(self) -> None:
        """Terminate stunnel (and wait for it), then stop the app."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)
        self.app.stop()
        unregister_live(self)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> StunnelPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the server saw ---------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        """Requests that reached the app (i.e. passed stunnel's mTLS), oldest first."""
        return self.app.requests

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def verified_subjects(self) -> dict[int, str]:
        """App-side client port -> the subject stunnel verified on that TLS connection."""
        by_thread: dict[str, str] = {}
        ports: dict[int, str] = {}
        for line in self.log().splitlines():
            accepted = _ACCEPTED.search(line)
            if accepted:
                by_thread[accepted.group(1)] = accepted.group(2).strip()
                continue
            remote = _REMOTE.search(line)
            if remote and remote.group(1) in by_thread:
                ports[int(remote.group(2))] = by_thread[remote.group(1)]
        return ports

    def client_subject_for(self, request: RecordedRequest) -> str | None:
        """The verified client subject of the TLS connection that carried ``request``."""
        return self.verified_subjects().get(request.client_port)

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"StunnelPeer({self.host}:{self.port} -> app :{self.app.port if self.app.running else '-'}, {state})"
