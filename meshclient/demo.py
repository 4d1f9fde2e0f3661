"""``make demo``: a narrated end-to-end walk through meshclient on a throwaway local mesh.

It makes a sandbox PKI shaped like Linkerd's, starts a small in-process mTLS echo service
standing in for a meshed pod, and runs the real ``meshclient`` command line against it as
subprocesses (exactly what a user would type), checking that each step behaves as it
should. Exit status 0 means every step did. A richer sandbox demo will replace this one.

Run it with ``python -m meshclient.demo [--workdir DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import os
import shlex
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .credentials import Credentials
from .credentials.loaders import ENV_CERT, ENV_KEY, ENV_KEY_PASSWORD, ENV_TRUST_ANCHORS
from .identity import IdentityPattern
from .sandbox.pki import SandboxPKI
from .tls import build_server_context

__all__ = ["main", "EchoServer", "echo_server", "ECHO_ID", "CLIENT_ID", "ALLOWED"]

ECHO_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
OUTSIDER_ID = "etl.data-eng.serviceaccount.identity.linkerd.cluster.local"
WRONG_ID = "scorer.ml-serving.serviceaccount.identity.linkerd.cluster.local"
#: The echo service's authorization policy: every workload of the ml-team namespace.
ALLOWED = "*.ml-team.serviceaccount.identity.linkerd.cluster.local"

_MESH_ENV = (ENV_CERT, ENV_KEY, ENV_TRUST_ANCHORS, ENV_KEY_PASSWORD)


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


# -- the narrated walkthrough -----------------------------------------------------------------
@dataclass
class _Step:
    title: str
    argv: list[str]
    expect_status: int
    expect_text: Sequence[str] = ()
    env: dict[str, str] = field(default_factory=dict)
    no_request: bool = False  # the server must see no request during this step


def _say(text: str = "") -> None:
    print(text, flush=True)


def _heading(text: str) -> None:
    _say()
    _say(f"-- {text} " + "-" * max(3, 76 - len(text)))


def _command_env(base: Mapping[str, str], mesh: Mapping[str, str]) -> dict[str, str]:
    env = {k: v for k, v in base.items() if k not in _MESH_ENV}
    env.update(mesh)
    # the subprocess must import this very copy of meshclient, installed or not
    package_parent = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, base.get("PYTHONPATH", "")) if p)
    return env


def _run_step(step: _Step, base_env: dict[str, str], server: EchoServer) -> bool:
    shown_env = " ".join(f"{k}={shlex.quote(v)}" for k, v in step.env.items())
    _say(f"$ {shown_env + ' ' if shown_env else ''}meshclient {shlex.join(step.argv)}")
    seen_before = len(server.requests)
    proc = subprocess.run([sys.executable, "-m", "meshclient", *step.argv], env={**base_env, **step.env},
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, check=False)
    output = proc.stdout.decode("utf-8", "replace")
    _say(output.replace("\r\n", "\n").rstrip("\n"))
    problems = []
    if proc.returncode != step.expect_status:
        problems.append(f"exit status {proc.returncode}, expected {step.expect_status}")
    problems += [f"output lacks {text!r}" for text in step.expect_text if text not in output]
    if step.no_request:
        sent = len(server.requests) - seen_before
        if sent:
            problems.append(f"the server received {sent} request(s)")
        else:
            _say(f"(exit status {proc.returncode}; the echo service received no request during this step)")
    elif proc.returncode:
        _say(f"(exit status {proc.returncode}, as expected)" if not problems else f"(exit status {proc.returncode})")
    if problems:
        _say(f"!! step '{step.title}' did not go as expected: {'; '.join(problems)}")
        return False
    return True


def _story(workdir: Path) -> int:
    started = time.monotonic()
    _say("meshclient demo: mutual TLS with verified identities to a Linkerd-meshed service, no proxy")
    _say(f"(everything lives in {workdir}; nothing outside it is touched)")

    _heading("1. Mesh identities")
    pki = SandboxPKI.create()
    client_files = pki.issue(CLIENT_ID).write(workdir / "notebook")
    outsider_files = pki.issue(OUTSIDER_ID).write(workdir / "etl")
    server_leaf = pki.issue(ECHO_ID)
    server_creds = Credentials.from_pem(server_leaf.chain_pem, server_leaf.key_pem, server_leaf.trust_anchors_pem)
    _say("A sandbox trust anchor and issuer shaped like Linkerd's issued 24-hour ECDSA P-256 leaves:")
    _say(f"  this notebook:  {CLIENT_ID}")
    _say(f"                  {client_files['cert']} (leaf + issuer), tls.key (0600), ca.crt (trust anchor)")
    _say(f"  another team:   {OUTSIDER_ID}  ({workdir / 'etl'})")
    _say(f"  the service:    {ECHO_ID}")

    with echo_server(server_creds) as server:
        url = server.url
        _heading("2. A meshed service")
        _say(f"An echo service listens on {url} with the identity {ECHO_ID}.")
        _say(f"Like a Linkerd inbound proxy it requires a client certificate and authorizes {ALLOWED}.")
        _say("The command line finds this notebook's material in the environment:")
        mesh_env = {ENV_CERT: str(client_files["cert"]), ENV_KEY: str(client_files["key"]),
                    ENV_TRUST_ANCHORS: str(client_files["trust_anchors"])}
        for name, value in mesh_env.items():
            _say(f"  export {name}={shlex.quote(value)}")
        base_env = _command_env(os.environ, mesh_env)
        body_file = workdir / "features.json"
        body_file.write_text(json.dumps({"inputs": [[0.1, 0.7, 3.2], [1.5, 0.2, 0.9]]}) + "\n")
        outsider_env = {ENV_CERT: str(outsider_files["cert"]), ENV_KEY: str(outsider_files["key"])}
        steps = [
            ("3. Check everything first", "doctor checks the material, then makes a live handshake and one request.",
             _Step("doctor", ["doctor", "--target", f"{url}/health", "--server-identity", ECHO_ID], 0,
                   ["TLSv1.3", f"proved '{ECHO_ID}'", "200 OK"])),
            ("4. One request, like curl -i", "The service saw this notebook's verified identity (l5d-client-id).",
             _Step("request -i", ["request", "-i", "GET", f"{url}/hello", "--server-identity", ECHO_ID], 0,
                   ["HTTP/1.1 200 OK", CLIENT_ID])),
            ("5. Send a file", "--data @FILE streams the file; -H adds headers.",
             _Step("request POST", ["request", "POST", f"{url}/invocations", "--server-identity", ECHO_ID,
                                    "-H", "Content-Type: application/json", "-H", "X-Request-Id: demo-1",
                                    "--data", f"@{body_file}"], 0,
                   [f'"body_bytes": {body_file.stat().st_size}', "demo-1"])),
            ("6. The wrong server is refused", f"Asking for {WRONG_ID} at the echo service's address: the server "
             "proves another identity, so meshclient closes the connection right after the handshake, before any "
             "request byte is sent.",
             _Step("wrong identity", ["request", "GET", f"{url}/secret", "--server-identity", WRONG_ID], 1,
                   ["not the expected identity", "No request was sent"], no_request=True)),
            ("7. The mesh policy says no", "A workload of another namespace has valid mesh material, but the service "
             "only authorizes ml-team: 403 with l5d-proxy-error, exit status 22.",
             _Step("policy denied", ["request", "GET", f"{url}/hello", "--server-identity", ECHO_ID], 22,
                   ["denied this client's identity", OUTSIDER_ID], env=outsider_env)),
        ]
        failed = []
        for heading, explanation, step in steps:
            _heading(heading)
            _say(explanation)
            if not _run_step(step, base_env, server):
                failed.append(step.title)

    elapsed = time.monotonic() - started
    _say()
    if failed:
        _say(f"DEMO FAILED ({elapsed:.1f} s): {', '.join(failed)} did not behave as expected.")
        return 1
    _say(f"Demo complete in {elapsed:.1f} s: every step behaved as expected.")
    _say("Next: point meshclient at a real cluster with your workload's tls.crt, tls.key and the mesh ca.crt, "
         "and start with 'meshclient doctor'.")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m meshclient.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", metavar="DIR",
                        help="keep the generated material here (default: a temporary directory, removed afterwards)")
    args = parser.parse_args(argv)
    if args.workdir:
        workdir = Path(args.workdir).resolve()
        workdir.mkdir(parents=True, exist_ok=True)
        return _story(workdir)
    with tempfile.TemporaryDirectory(prefix="meshclient-demo-") as tmp:
        return _story(Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
