"""Honest failures and the request path's promises, asserted on the server's side of the wire
where possible: the deadline bounds a streamed body too, timeouts say attempts and time, the
app sees the URL's Host in direct mode, redirects keep ``history`` and loops raise, 32 threads
on one client discard no connection, and ``files=`` streams. (Issue 10 items 7, 8, 9, 11, 14, 18.)"""

from __future__ import annotations

import email.parser
import email.policy
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fault_server import FaultServer, Respond, Stall, Trickle

from meshclient import Credentials, MeshClient, RetryPolicy
from meshclient.errors import DeadlineExceededError, MeshTimeoutError, TransportError
from meshclient.transport.header import ALPN
from meshclient_sandbox.pki import IssuedLeaf
from meshclient_sandbox.tls import build_server_context

SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
FAST = RetryPolicy(min_backoff=0.001, max_backoff=0.002)


@pytest.fixture
def server(server_creds: Credentials) -> Iterator[FaultServer]:
    with FaultServer(build_server_context(server_creds)) as s:
        yield s


@pytest.fixture
def direct_server(server_creds: Credentials) -> Iterator[FaultServer]:
    with FaultServer(build_server_context(server_creds, alpn=[ALPN])) as s:
        yield s


@pytest.fixture
def client(client_creds: Credentials) -> Iterator[MeshClient]:
    with MeshClient(client_creds, retries=FAST, timeout=(2.0, 5.0)) as c:
        yield c


# -- deadlines and timeouts --------------------------------------------------------------------
def test_the_deadline_bounds_a_streamed_body_read(client: MeshClient, server: FaultServer) -> None:
    """``stream=True, deadline=...`` then reading a trickled body once took 49.6 s: the body read
    must end at the deadline with DeadlineExceededError (the trickle here would last 20 s)."""
    server.push(Trickle(body=b"x" * 200, interval=0.1))
    response = client.get(f"{server.url}/slow", server_identity=SERVER_ID, stream=True, deadline=1.0)
    assert response.status_code == 200
    with pytest.raises(DeadlineExceededError, match="deadline"):
        response.content  # noqa: B018


def test_a_streamed_body_read_in_time_is_whole(client: MeshClient, server: FaultServer) -> None:
    server.push(Trickle(body=b"abcdef", interval=0.01))
    response = client.get(f"{server.url}/slow", server_identity=SERVER_ID, stream=True, deadline=30.0)
    assert b"".join(response.iter_content(2)) == b"abcdef"


def test_a_broken_streamed_body_is_a_mesh_error(client: MeshClient, server: FaultServer) -> None:
    server.push(Trickle(body=b"x" * 50, interval=0.05))
    response = client.get(f"{server.url}/slow", server_identity=SERVER_ID, stream=True)
    next(response.iter_content(1))
    server.stop()  # the server goes away mid-body
    with pytest.raises(TransportError):
        response.content  # noqa: B018


def test_a_timeout_says_attempts_total_time_and_which_timeout(client_creds: Credentials, server: FaultServer) -> None:
    server.push(Stall(5.0), Stall(5.0), Stall(5.0))
    with MeshClient(client_creds, retries=FAST, timeout=(2.0, 0.3)) as client, \
            pytest.raises(MeshTimeoutError) as info:
        client.get(f"{server.url}/stalled", server_identity=SERVER_ID)
    text = str(info.value)
    assert "read timeout" in text and "0.3 s" in text
    assert "3 attempts over" in text
    assert server.attempts("GET", "/stalled") == 3


def test_the_default_connect_timeout_is_short_and_the_read_timeout_long(client_creds: Credentials) -> None:
    with MeshClient(client_creds) as client:
        connect, read = client.config().timeout
    assert connect <= 3.0 < 30.0 <= read


# -- Host in direct mode -------------------------------------------------------------------------
def test_direct_mode_sends_the_urls_host_not_the_proxys(client: MeshClient, direct_server: FaultServer) -> None:
    response = client.get("https://fraud-model.ml-serving.svc.cluster.local:8080/predict", server_identity=SERVER_ID,
                          direct=direct_server.address)
    assert response.status_code == 200
    assert direct_server.requests[0].headers["host"] == "fraud-model.ml-serving.svc.cluster.local:8080"
    assert [h.port for h in direct_server.transport_headers] == [8080]


def test_a_callers_host_header_is_kept(client: MeshClient, server: FaultServer) -> None:
    client.get(f"{server.url}/x", server_identity=SERVER_ID, headers={"Host": "scorer.example:9000"})
    assert server.requests[0].headers["host"] == "scorer.example:9000"


# -- redirects ------------------------------------------------------------------------------------
def test_a_same_origin_redirect_is_followed_and_kept_in_history(client: MeshClient, server: FaultServer) -> None:
    server.push(Respond.with_headers(302, {"Location": "/b"}, b"moved"), Respond(200, b"here"))
    response = client.get(f"{server.url}/a", server_identity=SERVER_ID)
    assert response.text == "here"
    assert [r.status_code for r in response.history] == [302]
    assert response.history[0].url == f"{server.url}/a"
    assert [r.target for r in server.requests] == ["/a", "/b"]


def test_a_redirect_loop_raises(client: MeshClient, server_creds: Credentials) -> None:
    loop = Respond.with_headers(302, {"Location": "/again"})
    with FaultServer(build_server_context(server_creds), default=loop) as looping, \
            pytest.raises(TransportError, match="redirect"):
        client.get(f"{looping.url}/again", server_identity=SERVER_ID)


def test_a_redirect_to_another_host_is_returned_not_followed(client: MeshClient, server: FaultServer) -> None:
    server.push(Respond.with_headers(307, {"Location": "https://10.9.9.9:8443/elsewhere"}))
    response = client.post(f"{server.url}/a", server_identity=SERVER_ID, data=b"secret-body")
    assert response.status_code == 307 and response.history == []
    assert server.attempts() == 1


def test_allow_redirects_false_returns_the_redirect(client: MeshClient, server: FaultServer) -> None:
    server.push(Respond.with_headers(302, {"Location": "/b"}))
    response = client.get(f"{server.url}/a", server_identity=SERVER_ID, allow_redirects=False)
    assert response.status_code == 302 and server.attempts() == 1


# -- pools -----------------------------------------------------------------------------------------
def test_32_threads_on_one_client_discard_no_connection(client_creds: Credentials, server: FaultServer,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    with MeshClient(client_creds) as client, caplog.at_level(logging.WARNING, logger="urllib3"):
        start = threading.Barrier(32)

        def work(_: int) -> int:
            start.wait()
            return sum(client.get(f"{server.url}/x", server_identity=SERVER_ID).status_code == 200 for _ in range(20))

        with ThreadPoolExecutor(32) as pool:
            assert sum(pool.map(work, range(32))) == 640
    assert [r.getMessage() for r in caplog.records if "pool is full" in r.getMessage()] == []
    assert server.tcp_connections <= 32


# -- files= ----------------------------------------------------------------------------------------
def _parts(body: bytes, content_type: str) -> dict[str, tuple[str | None, bytes]]:
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    return {part.get_param("name", header="content-disposition"): (part.get_filename(), part.get_payload(decode=True))
            for part in message.iter_parts()}


def test_files_are_sent_as_a_well_formed_multipart_body(client: MeshClient, server: FaultServer,
                                                        tmp_path: Path) -> None:
    model = tmp_path / "model.bin"
    model.write_bytes(bytes(range(256)) * 100)
    with model.open("rb") as fh:
        response = client.post(f"{server.url}/upload", server_identity=SERVER_ID, data={"run": "42"},
                               files={"model": fh, "notes": ("notes.txt", b"hello\r\n", "text/plain")})
    assert response.status_code == 200
    assert server.wait_for(lambda s: bool(s.bodies("POST", "/upload")))
    head = server.requests[0].headers
    assert int(head["content-length"]) == len(server.bodies()[0])  # streamed with a known length
    parts = _parts(server.bodies()[0], head["content-type"])
    assert parts["run"] == (None, b"42")
    assert parts["model"] == ("model.bin", model.read_bytes())
    assert parts["notes"] == ("notes.txt", b"hello\r\n")


def test_a_multipart_upload_is_rewound_for_a_retry(client: MeshClient, server: FaultServer, tmp_path: Path) -> None:
    model = tmp_path / "m.bin"
    model.write_bytes(b"m" * 100_000)
    server.push(Respond(503), Respond(200))
    with model.open("rb") as fh:
        response = client.put(f"{server.url}/up", server_identity=SERVER_ID, files={"m": fh})
    assert response.status_code == 200
    assert server.wait_for(lambda s: len(s.bodies()) == 2)
    first, second = server.bodies()
    assert first == second and b"m" * 100_000 in second


_UPLOAD_CHILD = """
import resource, sys
from meshclient import Credentials, MeshClient
url, identity, path = sys.argv[1:4]
client = MeshClient(Credentials.from_env(), timeout=(5, 120))
client.get(url, server_identity=identity)  # warm: imports, TLS context, pool
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with open(path, "rb") as fh:
    status = client.post(url, server_identity=identity, files={"f": fh}).status_code
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(status, (after - before) // 1024)
"""


def test_files_are_streamed_in_constant_memory(server: FaultServer, tmp_path: Path, client_leaf: IssuedLeaf) -> None:
    """requests builds multipart bodies in memory (a 1 GiB file peaked at 2 GiB RSS); meshclient
    streams them. Measured in a child process (peak RSS growth during a 256 MiB upload), so the
    server keeping what it received does not count."""
    big = tmp_path / "big.bin"
    size = 256 * 1024 * 1024
    with big.open("wb") as fh:
        fh.truncate(size)  # sparse: no disk or page cache cost
    for name, pem in (("tls.crt", client_leaf.chain_pem), ("tls.key", client_leaf.key_pem),
                      ("ca.crt", client_leaf.trust_anchors_pem)):
        (tmp_path / name).write_bytes(pem)
    env = {**os.environ, "MESHCLIENT_CERT": str(tmp_path / "tls.crt"), "MESHCLIENT_KEY": str(tmp_path / "tls.key"),
           "MESHCLIENT_TRUST_ANCHORS": str(tmp_path / "ca.crt")}
    done = subprocess.run([sys.executable, "-c", _UPLOAD_CHILD, f"{server.url}/big", SERVER_ID, str(big)],
                          env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    status, growth_mib = (int(x) for x in done.stdout.split())
    assert status == 200
    assert server.wait_for(lambda s: bool(s.bodies("POST")), timeout=60)
    assert len(server.bodies("POST")[0]) > size
    assert growth_mib < 64, f"peak RSS grew by {growth_mib} MiB for a {size >> 20} MiB upload"
