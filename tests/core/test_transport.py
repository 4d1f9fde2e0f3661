"""Transport behaviour of MeshClient against the in-process mTLS server (no Debian peers needed)."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from mtls_server import mtls_server

import meshclient
from meshclient import Credentials, MeshClient
from meshclient_sandbox.pki import SandboxPKI
from meshclient_sandbox.tls import build_server_context

pytest.register_assert_rewrite("peer_fixtures")
from peer_fixtures import CLIENT_ID, SERVER_ID  # noqa: E402 (after register_assert_rewrite)

pytest_plugins = ["peer_fixtures"]
pytestmark = pytest.mark.usefixtures("loopback_only")

OTHER_ID = "billing.payments.serviceaccount.identity.linkerd.cluster.local"


@pytest.fixture
def server(server_creds: Credentials) -> Iterator[Any]:
    with mtls_server(build_server_context(server_creds)) as srv:
        yield srv


def _url(srv: Any, path: str = "/") -> str:
    return f"https://127.0.0.1:{srv.server_address[1]}{path}"


@pytest.fixture
def client(client_creds: Credentials) -> Iterator[MeshClient]:
    with MeshClient(client_creds, timeout=(5.0, 10.0)) as c:
        yield c


# -- concurrency and pooling --------------------------------------------------------------------
def test_one_client_is_safe_across_threads(server: Any, client: MeshClient) -> None:
    threads, per_thread = 8, 25
    failures: list[BaseException] = []
    statuses: list[int] = []
    lock = threading.Lock()

    def work(n: int) -> None:
        try:
            for i in range(per_thread):
                response = client.get(_url(server, f"/t{n}/{i}"), server_identity=SERVER_ID)
                with lock:
                    statuses.append(response.status_code)
                assert response.json()["path"] == f"/t{n}/{i}"
        except BaseException as exc:  # surfaced below, with the thread's error
            with lock:
                failures.append(exc)

    workers = [threading.Thread(target=work, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)

    assert not any(w.is_alive() for w in workers)
    assert failures == []
    assert statuses == [200] * (threads * per_thread)
    assert len(server.requests) == threads * per_thread
    assert all(r["client"] == [CLIENT_ID] for r in server.requests)
    assert client.pool_count() == 1
    # keep-alive: at most one handshake per connection the pool ever held open at once
    assert server.handshakes <= threads


def test_pools_are_keyed_per_server_identity(
    pki: SandboxPKI, server_creds: Credentials, client: MeshClient
) -> None:
    other_leaf = pki.issue(OTHER_ID)
    other_creds = Credentials.from_pem(other_leaf.chain_pem, other_leaf.key_pem, other_leaf.trust_anchors_pem)
    with mtls_server(build_server_context(server_creds)) as a, mtls_server(build_server_context(other_creds)) as b:
        for _ in range(3):
            assert client.get(_url(a), server_identity=SERVER_ID).status_code == 200
            assert client.get(_url(b), server_identity=OTHER_ID).status_code == 200
        assert client.pool_count() == 2

        # Same address, another expected identity: its own pool, refused, and the good pool is unharmed.
        with pytest.raises(meshclient.ServerIdentityError):
            client.get(_url(a), server_identity=OTHER_ID, server_name=SERVER_ID)
        assert client.pool_count() == 3
        assert client.get(_url(a), server_identity=SERVER_ID).status_code == 200
    assert len(a.requests) == 4 and len(b.requests) == 3


# -- redirects ----------------------------------------------------------------------------------
def test_same_origin_redirect_is_followed(server: Any, client: MeshClient) -> None:
    response = client.get(_url(server, "/redirect-same"), server_identity=SERVER_ID)

    assert response.status_code == 200
    assert response.json()["path"] == "/echo-after-redirect"
    assert [r["path"] for r in server.requests] == ["/redirect-same", "/echo-after-redirect"]


def test_cross_origin_redirect_is_not_followed(server: Any, client: MeshClient) -> None:
    response = client.get(_url(server, "/redirect-other"), server_identity=SERVER_ID)

    assert response.status_code == 302
    assert response.headers["Location"] == "https://other.example:8443/x"
    assert [r["path"] for r in server.requests] == ["/redirect-other"]


def test_redirects_can_be_turned_off(server: Any, client: MeshClient) -> None:
    response = client.get(_url(server, "/redirect-same"), server_identity=SERVER_ID, allow_redirects=False)

    assert response.status_code == 302
    assert len(server.requests) == 1


# -- MeshService --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("base", "path", "expected"),
    [
        ("/api", "v1/score", "/api/v1/score"),
        ("/api/", "/v1/score", "/api/v1/score"),
        ("", "/health", "/health"),
        ("/api", "", "/api"),
        ("/api", "items?limit=2", "/api/items?limit=2"),
    ],
)
def test_mesh_service_joins_paths_to_its_base_url(
    server: Any, client: MeshClient, base: str, path: str, expected: str
) -> None:
    svc = client.service(_url(server, base), server_identity=SERVER_ID)

    assert svc.get(path).json()["path"] == expected


def test_mesh_service_refuses_absolute_urls(server: Any, client: MeshClient) -> None:
    svc = client.service(_url(server), server_identity=SERVER_ID)

    with pytest.raises(meshclient.ConfigurationError):
        svc.get("https://127.0.0.1:1/elsewhere")
    assert server.requests == []


# -- errors -------------------------------------------------------------------------------------
def test_plain_http_url_is_refused(client: MeshClient) -> None:
    with pytest.raises(meshclient.ConfigurationError, match="not https"):
        client.get("http://127.0.0.1:1/", server_identity=SERVER_ID)


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that refuses connections: bound (so nobody else takes it), never listening."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def test_connection_refused_is_a_connect_error(client: MeshClient, closed_port: int) -> None:
    with pytest.raises(meshclient.ConnectError) as info:
        client.get(f"https://127.0.0.1:{closed_port}/", server_identity=SERVER_ID)

    assert f"127.0.0.1:{closed_port}" in str(info.value)
    assert SERVER_ID in str(info.value)


@contextlib.contextmanager
def stalling_server(ctx: ssl.SSLContext) -> Iterator[int]:
    """Completes each mTLS handshake, reads the request, then never answers (until released)."""
    release = threading.Event()
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    handlers: list[threading.Thread] = []

    def stall(raw: socket.socket) -> None:
        with contextlib.suppress(OSError), ctx.wrap_socket(raw, server_side=True) as tls:
            tls.settimeout(30)
            tls.recv(65536)
            release.wait(30)

    def accept_loop() -> None:
        while not release.is_set():
            try:
                raw, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            raw.settimeout(30)
            handler = threading.Thread(target=stall, args=(raw,), daemon=True)
            handler.start()
            handlers.append(handler)

    acceptor = threading.Thread(target=accept_loop, daemon=True)
    acceptor.start()
    try:
        yield listener.getsockname()[1]
    finally:
        release.set()
        acceptor.join(timeout=30)
        for handler in handlers:
            handler.join(timeout=30)
        listener.close()


def test_read_timeout_on_a_stalling_server(server_creds: Credentials, client_creds: Credentials) -> None:
    with stalling_server(build_server_context(server_creds)) as port, \
            MeshClient(client_creds, timeout=(5.0, 0.3)) as client, \
            pytest.raises(meshclient.MeshTimeoutError) as info:
        # retry=False: one attempt, so the error is the read timeout itself
        client.get(f"https://127.0.0.1:{port}/slow", server_identity=SERVER_ID, retry=False)

    assert isinstance(info.value, TimeoutError)
    assert SERVER_ID in str(info.value)
    assert "0.3" in str(info.value)


def _tls12_only(creds: Credentials) -> ssl.SSLContext:
    ctx: ssl.SSLContext = build_server_context(creds)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def test_tls12_only_server_is_refused_by_default(server_creds: Credentials, client: MeshClient) -> None:
    with mtls_server(_tls12_only(server_creds)) as srv:
        with pytest.raises(meshclient.TLSHandshakeError) as info:
            client.get(_url(srv), server_identity=SERVER_ID)
        assert srv.requests == []
    assert "TLS 1.3" in str(info.value)


def test_tls12_only_server_is_accepted_with_allow_tls12(server_creds: Credentials, client_creds: Credentials) -> None:
    with mtls_server(_tls12_only(server_creds)) as srv, MeshClient(client_creds, allow_tls12=True) as client:
        response = client.get(_url(srv), server_identity=SERVER_ID)
        with pytest.raises(meshclient.ServerIdentityError):  # the identity is still checked on 1.2
            client.get(_url(srv), server_identity=OTHER_ID, server_name=SERVER_ID)

    assert response.status_code == 200
    assert response.json()["client"] == [CLIENT_ID]
    assert len(srv.requests) == 1


def test_a_refused_connection_is_never_pooled(server: Any, client: MeshClient) -> None:
    """Each attempt after a ServerIdentityError handshakes again: nothing unverified was kept."""
    attempts = 3
    for _ in range(attempts):
        with pytest.raises(meshclient.ServerIdentityError):
            client.get(_url(server), server_identity=OTHER_ID, server_name=SERVER_ID)
    # the server thread counts a handshake just after the client hung up: wait for it (bounded)
    deadline = time.monotonic() + 10
    while server.handshakes < attempts and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.handshakes == attempts
    assert server.requests == []
