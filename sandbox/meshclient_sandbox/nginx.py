"""nginx as a real mTLS peer configured like a Linkerd inbound proxy (tests and benchmarks).

A Linkerd inbound proxy terminates TLS 1.3 only for its own identity (SNI = the server's
identity, anything else is refused), requires a client certificate chaining to the mesh
trust anchors and tells the app who the client is. :class:`NginxPeer` reproduces that with
the Debian ``nginx`` binary: a default server that rejects every handshake, one server whose
``server_name`` is exactly the identity, ``ssl_verify_client on`` and response headers that
echo the verified client certificate (nginx has no SAN variable, so the subject DN, serial
and the URL-encoded certificate are what it can show). Every request goes to a JSON-lines
access log that tests read to prove what the server did, and did not, see.

The material is written into the work directory (the key file 0600): this is test tooling;
the library itself never writes a key to disk. The module also holds the small process
helpers :mod:`meshclient_sandbox.stunnel` shares (free port, readiness, stop and reap).
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import json
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509

from meshclient.identity import Identity
from meshclient.pki import certs_to_pem, identity_of, key_to_pem, load_certificates, load_private_key

from .pki import IssuedLeaf

__all__ = ["NginxPeer", "AccessLogEntry", "PeerStartError", "find_nginx"]

#: Headers every response carries: nginx's view of the verified client (its ``l5d-client-id``).
CLIENT_HEADERS = {
    "X-Client-Verify": "$ssl_client_verify",
    "X-Client-S-DN": "$ssl_client_s_dn",
    "X-Client-Serial": "$ssl_client_serial",
    "X-Request-Content-Length": "$content_length",
    "X-Connection": "$connection",
    "X-Connection-Requests": "$connection_requests",
}

_LOG_FIELDS = {
    "time": "$time_iso8601",
    "connection": "$connection",
    "connection_requests": "$connection_requests",
    "request": "$request",
    "method": "$request_method",
    "uri": "$request_uri",
    "status": "$status",
    "ssl_protocol": "$ssl_protocol",
    "ssl_cipher": "$ssl_cipher",
    "ssl_server_name": "$ssl_server_name",
    "ssl_session_reused": "$ssl_session_reused",
    "client_verify": "$ssl_client_verify",
    "client_s_dn": "$ssl_client_s_dn",
    "client_serial": "$ssl_client_serial",
    "content_length": "$content_length",
}

_SERVER_NAME = re.compile(r"^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$")

ROOT_BODY = "meshclient nginx peer\n"
HEALTH_BODY = "ok\n"


class PeerStartError(RuntimeError):
    """A sandbox peer process did not come up (its log tail is in the message)."""


class PeerUnavailable(PeerStartError):
    """The peer's binary is not installed (or hidden by ``MESHCLIENT_SANDBOX_HIDE_PEERS``).

    The pytest plugin turns it into a skip wherever it is raised, so no test that starts a peer
    can forget to check for it (and into a failure with ``MESHCLIENT_REQUIRE_PEERS=1``, as in CI).
    """


#: set to 1 to behave as if nginx and stunnel were not installed (check the suite passes without them)
HIDE_PEERS_ENV = "MESHCLIENT_SANDBOX_HIDE_PEERS"


def peers_hidden() -> bool:
    return os.environ.get(HIDE_PEERS_ENV, "").strip() not in ("", "0")


def find_nginx() -> str | None:
    """The nginx binary: ``$PATH`` first, then Debian's ``/usr/sbin`` (often not on a user's PATH)."""
    if peers_hidden():
        return None
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


# -- process helpers shared with stunnel.py -------------------------------------------------
_live: set[Any] = set()
_live_lock = threading.Lock()


def _stop_all_at_exit() -> None:
    with _live_lock:
        peers = list(_live)
    for peer in peers:
        with contextlib.suppress(Exception):
            peer.stop()


atexit.register(_stop_all_at_exit)


def register_live(peer: Any) -> None:
    """Remember a started peer so an interpreter exit never leaves its process behind."""
    with _live_lock:
        _live.add(peer)


def unregister_live(peer: Any) -> None:
    with _live_lock:
        _live.discard(peer)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the kernel just handed out on ``host`` (the peer binds it a moment later)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(host: str, port: int, proc: subprocess.Popen[bytes], *, timeout: float) -> bool:
    """Poll until ``host:port`` accepts TCP (True) or the process died / time ran out (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def stop_process(proc: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM, wait, then SIGKILL the whole process group (the child was started in its own
    session, so its group id is its pid). The group is killed *before* reaping the leader, so
    the id cannot have been reused by then."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=grace)


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to a new 0600 file (keys of the test peers)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def listen_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# -- nginx ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class AccessLogEntry:
    """One line of the peer's access log: one HTTP request nginx received."""

    time: str
    connection: int
    connection_requests: int
    request: str
    method: str
    uri: str
    status: int
    ssl_protocol: str
    ssl_cipher: str
    ssl_server_name: str
    ssl_session_reused: str
    client_verify: str
    client_s_dn: str
    client_serial: str
    content_length: str

    @classmethod
    def parse(cls, line: str) -> AccessLogEntry:
        raw = json.loads(line)
        return cls(
            time=raw["time"],
            connection=int(raw["connection"]),
            connection_requests=int(raw["connection_requests"]),
            request=raw["request"],
            method=raw["method"],
            uri=raw["uri"],
            status=int(raw["status"]),
            ssl_protocol=raw["ssl_protocol"],
            ssl_cipher=raw["ssl_cipher"],
            ssl_server_name=raw["ssl_server_name"],
            ssl_session_reused=raw["ssl_session_reused"],
            client_verify=raw["client_verify"],
            client_s_dn=raw["client_s_dn"],
            client_serial=raw["client_serial"],
            content_length=raw["content_length"],
        )


def _q(value: str | Path) -> str:
    """Quote a string for nginx.conf."""
    text = str(value)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _header_lines(headers: dict[str, str], indent: str) -> str:
    return "\n".join(f"{indent}add_header {name} {_q(value)} always;" for name, value in headers.items())


class NginxPeer:
    """An nginx child process terminating mTLS like a Linkerd inbound proxy, on loopback.

    ``server_name`` defaults to the identity in the server certificate; pass another one to
    build a misconfigured or impostor peer. ``client_trust_pem`` is what nginx verifies client
    chains against (``ssl_client_certificate``). Use it as a context manager; :meth:`stop`
    terminates and reaps nginx (master and workers) and removes a work dir it created.

    Paths: ``/`` and ``/health`` answer a fixed body; ``/whoami`` also returns the client
    certificate (URL-encoded PEM in ``X-Client-Cert``), which is how a test reads the SAN of a
    leaf with an empty subject. Any method is accepted on any path. A client whose certificate
    did not verify gets 403 and never a path's answer.
    """

    def __init__(
        self,
        *,
        cert_chain_pem: bytes,
        key_pem: bytes,
        client_trust_pem: bytes,
        server_name: str | Identity | None = None,
        workdir: str | os.PathLike[str] | None = None,
        host: str = "127.0.0.1",
        worker_processes: int = 1,
        nginx: str | None = None,
    ) -> None:
        binary = nginx or find_nginx()
        if binary is None:
            raise PeerUnavailable("nginx is not installed (Debian: apt-get install nginx-light).")
        self.binary = binary
        self.host = host
        self.worker_processes = worker_processes
        certs = load_certificates(cert_chain_pem, where="NginxPeer certificate")
        self.certificate: x509.Certificate = certs[0]
        self._chain_pem = certs_to_pem(certs)
        # PEM for the binary, whatever came in (Linkerd keeps PKCS#8 DER key.p8)
        self._key_pem = key_to_pem(load_private_key(key_pem, where="NginxPeer key"))
        self._trust_pem = client_trust_pem
        if server_name is None:
            server_name = identity_of(certs[0], where="NginxPeer certificate")
        self.server_name = str(server_name)
        if not _SERVER_NAME.match(self.server_name):  # it is pasted into nginx.conf unquoted
            raise ValueError(f"NginxPeer: {self.server_name!r} is not a DNS name usable as server_name")
        self._own_dir = workdir is None
        self.workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="meshclient-nginx-"))
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def for_leaf(cls, leaf: IssuedLeaf, *, client_trust_pem: bytes | None = None, **kwargs: Any) -> NginxPeer:
        """A peer serving a sandbox leaf (its chain), trusting the leaf's anchors for clients."""
        return cls(cert_chain_pem=leaf.chain_pem, key_pem=leaf.key_pem,
                   client_trust_pem=client_trust_pem or leaf.trust_anchors_pem, **kwargs)

    # -- paths and urls --------------------------------------------------------------------
    @property
    def url(self) -> str:
        """``https://HOST:PORT`` (the address; the identity is what a client verifies)."""
        return f"https://{listen_address(self.host, self.port)}"

    @property
    def access_log_path(self) -> Path:
        return self.workdir / "logs" / "access.log"

    @property
    def error_log_path(self) -> Path:
        return self.workdir / "logs" / "error.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- config ----------------------------------------------------------------------------
    def _user_line(self) -> str:
        # As root nginx would switch its workers to "nobody", who cannot enter a 0700 temp dir.
        if os.geteuid() != 0:
            return "# not root: workers keep the current user"
        user = pwd.getpwuid(os.geteuid()).pw_name
        group = grp.getgrgid(os.getegid()).gr_name
        return f"user {user} {group};"

    def config(self) -> str:
        """The nginx.conf text for the current port."""
        d = self.workdir
        listen = listen_address(self.host, self.port)
        log_format = "{" + ",".join(f'"{k}":"{v}"' for k, v in _LOG_FIELDS.items()) + "}"
        temp = "\n".join(
            f"    {name}_temp_path {_q(d / 'tmp' / name)};"
            for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        headers = _header_lines(CLIENT_HEADERS, "            ")
        whoami_headers = _header_lines({**CLIENT_HEADERS, "X-Client-Cert": "$ssl_client_escaped_cert"}, "            ")
        whoami_body = _q("verify=$ssl_client_verify\ns_dn=$ssl_client_s_dn\nserial=$ssl_client_serial\n")
        app = f"""
        # the client certificate must have verified against client-trust.pem (see above)
        if ($ssl_client_verify != SUCCESS) {{
            return 403 "client certificate not verified: $ssl_client_verify\\n";
        }}
        location = / {{
{headers}
            return 200 {_q(ROOT_BODY)};
        }}
        location = /health {{
{headers}
            return 200 {_q(HEALTH_BODY)};
        }}
        location = /whoami {{
{whoami_headers}
            return 200 {whoami_body};
        }}
        location / {{
{headers}
            return 200 {_q(ROOT_BODY)};
        }}"""
        return f"""# written by meshclient_sandbox.nginx: an mTLS terminator shaped like a Linkerd inbound proxy
{self._user_line()}
worker_processes {self.worker_processes};
pid {_q(d / "nginx.pid")};
error_log {_q(self.error_log_path)} info;

events {{
    worker_connections 1024;
}}

http {{
    default_type text/plain;
    server_tokens off;
{temp}
    # TLS 1.3 only, like Linkerd. Set at http level: the protocol is negotiated on the default
    # server's context before SNI selects the identity's server, so a per-server value is ignored.
    ssl_protocols TLSv1.3;
    # identities are longer than the default bucket allows (64)
    server_names_hash_bucket_size 128;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    log_format mesh escape=json '{log_format}';
    access_log {_q(self.access_log_path)} mesh;

    # Default server: any SNI that is not this peer's identity is refused at the handshake.
    # It also answers HTTP: nginx picks the request's server by the Host header, which is the
    # address the client dialled (pod IP, localhost), not the identity; nginx 1.22 answers 421
    # when Host != SNI and the Host's server has ssl_verify_client, so those requests land here.
    # Their handshake ran under the identity server's TLS settings (SNI switched the context,
    # verify mode and client CA store), and the $ssl_client_verify gate enforces the result.
    # A Linkerd proxy ignores Host the same way.
    server {{
        listen {listen} ssl default_server;
        ssl_reject_handshake on;
{app}
    }}

    # The identity's server: SNI must be exactly the identity (server_name), client certs required.
    server {{
        listen {listen} ssl;
        server_name {self.server_name};
        ssl_certificate {_q(d / "server.crt")};
        ssl_certificate_key {_q(d / "server.key")};
        ssl_verify_client on;
        ssl_client_certificate {_q(d / "client-trust.pem")};
        ssl_verify_depth 3;
{app}
    }}
}}
"""

    def _write_material(self) -> None:
        (self.workdir / "logs").mkdir(parents=True, exist_ok=True)
        for name in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (self.workdir / "tmp" / name).mkdir(parents=True, exist_ok=True)
        (self.workdir / "server.crt").write_bytes(self._chain_pem)
        write_private(self.workdir / "server.key", self._key_pem)
        (self.workdir / "client-trust.pem").write_bytes(self._trust_pem)

    # -- lifecycle -------------------------------------------------------------------------
    def start(self, *, timeout: float = 15.0, attempts: int = 3) -> NginxPeer:
        """Write the config, start nginx in the foreground and wait until the port accepts."""
        if self.running:
            return self
        self._write_material()
        last = ""
        for _ in range(attempts):
            self.port = free_port(self.host)
            conf = self.workdir / "nginx.conf"
            conf.write_text(self.config())
            self.access_log_path.write_bytes(b"")
            with open(self.workdir / "logs" / "stderr.log", "ab") as stderr:
                proc = subprocess.Popen(
                    [self.binary, "-p", str(self.workdir), "-c", str(conf), "-e", str(self.error_log_path),
                     "-g", "daemon off;"],
                    stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                    start_new_session=True,  # its own process group: stop() can reap the workers too
                )
            self._proc = proc
            register_live(self)
            if wait_for_port(self.host, self.port, proc, timeout=timeout):
                return self
            stop_process(proc)
            last = tail(self.error_log_path) + "\n" + tail(self.workdir / "logs" / "stderr.log")
            if "Address already in use" not in last:
                break
        self.stop()
        raise PeerStartError(f"nginx did not start on {self.host}:{self.port}:\n{last}")

    def stop(self) -> None:
        """Terminate nginx and wait for it (never leaves a master or worker behind)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            stop_process(proc)
        unregister_live(self)
        if self._own_dir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> NginxPeer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- what the server saw ---------------------------------------------------------------
    def access_log(self) -> list[AccessLogEntry]:
        """Every request logged so far, oldest first."""
        try:
            text = self.access_log_path.read_text()
        except FileNotFoundError:
            return []
        return [AccessLogEntry.parse(line) for line in text.splitlines() if line.strip()]

    def wait_for_access_log(self, count: int, *, timeout: float = 10.0) -> list[AccessLogEntry]:
        """The log once it holds at least ``count`` lines.

        nginx writes the line right after sending the response, so a client can read the
        response a moment before the line lands; poll (bounded) instead of racing it.
        """
        deadline = time.monotonic() + timeout
        entries = self.access_log()
        while len(entries) < count and time.monotonic() < deadline:
            time.sleep(0.01)
            entries = self.access_log()
        return entries

    def error_log(self) -> str:
        return tail(self.error_log_path, 200)

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.running else "stopped"
        return f"NginxPeer({self.server_name!r}, {self.host}:{self.port}, {state})"

