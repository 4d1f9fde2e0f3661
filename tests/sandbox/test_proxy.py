"""The sandbox inbound proxy: TLS/SNI, identities, policy, headers, streaming, direct mode, lifecycle.

Clients are meshclient's own ``MeshClient`` where it can express the case, and raw ``ssl``
sockets where the case sits below it (no certificate, wrong SNI, ALPN, the transport header,
spoofed headers). Everything runs on loopback.
"""

from __future__ import annotations

import hashlib
import io
import random
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from proxy_fixtures import (
    ML_TEAM,
    RSSSampler,
    client_context,
    creds_of,
    direct_connect,
    http_request,
    linkerd_id,
    proxy_process,
    read_response,
    refused,
    socket_fds,
    tls_connect,
    wait_until,
)

from meshclient import Credentials
from meshclient.client import MeshClient, raise_for_status
from meshclient.errors import PolicyDeniedError, TLSHandshakeError
from meshclient_sandbox.apps import ArtifactStore, EchoApp, pattern_bytes
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI
from meshclient_sandbox.policy import ServerPolicy
from meshclient_sandbox.proxy import InboundProxy
from meshclient_sandbox.transport_header import SessionProtocol

CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
WEB_ID = linkerd_id("web", "frontend")
SPIFFE_ID = "spiffe://cluster.local/ns/ml-team/sa/external"

MakeProxy = Callable[..., InboundProxy]


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoApp]:
    with EchoApp() as app:
        yield app


@pytest.fixture(scope="module")
def leaves(pki: SandboxPKI) -> dict[str, IssuedLeaf]:
    return {i: pki.issue(i) for i in (WEB_ID, SPIFFE_ID, "spiffe://cluster.local/ns/ml-team/sa/other")}


@pytest.fixture
def make_proxy(server_creds: Credentials, echo: EchoApp) -> Iterator[MakeProxy]:
    proxies: list[InboundProxy] = []

    def make(policy: object = None, app_ports: object = None, **kwargs: object) -> InboundProxy:
        proxy = InboundProxy(server_creds, app_ports or echo.port, policy=policy, **kwargs)  # type: ignore[arg-type]
        proxies.append(proxy.start())
        return proxy

    yield make
    for proxy in proxies:
        proxy.stop()


@pytest.fixture
def mesh(client_creds: Credentials) -> Iterator[MeshClient]:
    with MeshClient(client_creds, timeout=(5, 30)) as client:
        yield client


def as_client(leaf: IssuedLeaf) -> MeshClient:
    return MeshClient(creds_of(leaf), timeout=(5, 30))


# -- policy -------------------------------------------------------------------------------------
def test_wildcard_dns_identity_allowed_others_denied(make_proxy: MakeProxy, mesh: MeshClient,
                                                     leaves: dict[str, IssuedLeaf]) -> None:
    proxy = make_proxy(ServerPolicy("deny", [ML_TEAM]))
    ok = mesh.get(proxy.url() + "/hello", server_identity=SERVER_ID)
    assert ok.status_code == 200
    assert ok.json()["client_id"] == CLIENT_ID

    with as_client(leaves[WEB_ID]) as web:
        denied = web.get(proxy.url() + "/hello", server_identity=SERVER_ID)
    assert denied.status_code == 403
    assert denied.headers["l5d-proxy-error"] == "unauthorized request on route"
    assert denied.headers["l5d-proxy-connection"] == "close"
    assert denied.headers["connection"] == "close"
    assert f"client '{WEB_ID}' is not authorized to access server '{SERVER_ID}'" in denied.text
    with pytest.raises(PolicyDeniedError, match="unauthorized request on route"):
        raise_for_status(denied)
    assert proxy.stats.denied == 1


def test_exact_spiffe_identity(make_proxy: MakeProxy, leaves: dict[str, IssuedLeaf]) -> None:
    proxy = make_proxy(ServerPolicy("deny", [SPIFFE_ID]))
    with as_client(leaves[SPIFFE_ID]) as spiffe:
        resp = spiffe.get(proxy.url() + "/", server_identity=SERVER_ID)
    assert resp.status_code == 200
    assert resp.json()["client_id"] == SPIFFE_ID
    with as_client(leaves["spiffe://cluster.local/ns/ml-team/sa/other"]) as other:
        assert other.get(proxy.url() + "/", server_identity=SERVER_ID).status_code == 403


@pytest.mark.parametrize("policy", [ServerPolicy("deny", ["*"]), ServerPolicy("all-authenticated"),
                                    ServerPolicy("deny", [ML_TEAM])])
def test_wildcards_never_match_spiffe_identities(make_proxy: MakeProxy, mesh: MeshClient, policy: ServerPolicy,
                                                 leaves: dict[str, IssuedLeaf]) -> None:
    proxy = make_proxy(policy)
    with as_client(leaves[SPIFFE_ID]) as spiffe:
        denied = spiffe.get(proxy.url() + "/", server_identity=SERVER_ID)
    assert denied.status_code == 403
    assert "wildcards never match SPIFFE identities" in denied.text
    assert mesh.get(proxy.url() + "/", server_identity=SERVER_ID).status_code == 200  # a DNS identity is fine


def test_all_unauthenticated_lets_tls_without_certificate_through(make_proxy: MakeProxy, pki: SandboxPKI) -> None:
    proxy = make_proxy("all-unauthenticated")
    with tls_connect(proxy.address(), client_context(pki, None), SERVER_ID) as sock:
        assert sock.getpeercert()  # the server proved its identity; we proved none
        resp = http_request(sock, "GET", "/anon", headers={"l5d-client-id": CLIENT_ID})
    assert resp.status == 200
    body = _json(resp.body)
    assert body["client_id"] is None
    assert "l5d-client-id" not in body["headers"]  # the spoofed one is gone, and none was set


def test_all_authenticated_refuses_tls_without_certificate(make_proxy: MakeProxy, pki: SandboxPKI,
                                                           mesh: MeshClient) -> None:
    proxy = make_proxy("all-authenticated")
    with tls_connect(proxy.address(), client_context(pki, None), SERVER_ID) as sock:
        resp = http_request(sock, "GET", "/anon")
    assert resp.status == 403
    assert "without a certificate" in resp.body.decode()
    assert mesh.get(proxy.url(), server_identity=SERVER_ID).status_code == 200


def test_plaintext_clients_are_unauthenticated(make_proxy: MakeProxy) -> None:
    open_proxy = make_proxy("all-unauthenticated")
    with socket.create_connection(open_proxy.address(), timeout=5) as sock:
        resp = http_request(sock, "GET", "/plain", headers={"l5d-client-id": CLIENT_ID})
    assert resp.status == 200
    assert _json(resp.body)["client_id"] is None
    closed_proxy = make_proxy(ServerPolicy("all-unauthenticated"), plaintext=False)
    with socket.create_connection(closed_proxy.address(), timeout=5) as sock:
        assert refused(sock)


def test_deny_refuses_everyone(make_proxy: MakeProxy, mesh: MeshClient, pki: SandboxPKI) -> None:
    proxy = make_proxy("deny")
    assert mesh.get(proxy.url(), server_identity=SERVER_ID).status_code == 403
    with tls_connect(proxy.address(), client_context(pki, None), SERVER_ID) as sock:
        assert http_request(sock, "GET", "/").status == 403
    with socket.create_connection(proxy.address(), timeout=5) as sock:
        assert http_request(sock, "GET", "/").status == 403
    assert proxy.stats.denied == 3


def test_denial_closes_the_connection(make_proxy: MakeProxy, pki: SandboxPKI, client_leaf: IssuedLeaf) -> None:
    proxy = make_proxy("deny")
    with tls_connect(proxy.address(), client_context(pki, client_leaf), SERVER_ID) as sock:
        resp = http_request(sock, "POST", "/", body=b"payload")
        assert resp.status == 403
        assert resp.headers["l5d-proxy-connection"] == "close"
        assert refused(sock, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")


def test_policy_can_change_at_runtime_and_per_port(make_proxy: MakeProxy, mesh: MeshClient, echo: EchoApp,
                                                   tmp_path: object) -> None:
    with EchoApp() as second:
        proxy = make_proxy({echo.port: ServerPolicy("deny", [ML_TEAM]), second.port: ServerPolicy("deny")},
                           app_ports=[echo.port, second.port])
        assert mesh.get(proxy.url(echo.port), server_identity=SERVER_ID).status_code == 200
        assert mesh.get(proxy.url(second.port), server_identity=SERVER_ID).status_code == 403
        proxy.set_policy(ServerPolicy("deny", [CLIENT_ID]), app_port=second.port)
        assert mesh.get(proxy.url(second.port), server_identity=SERVER_ID).status_code == 200
        proxy.set_policy("deny")
        assert mesh.get(proxy.url(echo.port), server_identity=SERVER_ID).status_code == 403


# -- identity and headers ------------------------------------------------------------------------
def test_spoofed_client_id_is_replaced(make_proxy: MakeProxy, pki: SandboxPKI, client_leaf: IssuedLeaf,
                                       mesh: MeshClient) -> None:
    proxy = make_proxy(ServerPolicy("deny", [ML_TEAM]))
    resp = mesh.get(proxy.url(), server_identity=SERVER_ID, headers={"l5d-client-id": "admin.kube-system"})
    assert resp.json()["headers"]["l5d-client-id"] == CLIENT_ID
    with tls_connect(proxy.address(), client_context(pki, client_leaf), SERVER_ID) as sock:
        raw = http_request(sock, "GET", "/", headers={"L5D-Client-Id": "a", "l5d-client-id": "b"})
    assert _json(raw.body)["headers"]["l5d-client-id"] == CLIENT_ID


def test_identity_is_the_first_san(make_proxy: MakeProxy, pki: SandboxPKI) -> None:
    proxy = make_proxy(ServerPolicy("deny", [ML_TEAM, SPIFFE_ID]))
    dns_first = pki.issue(CLIENT_ID, extra_sans=[WEB_ID])
    uri_first = pki.issue(SPIFFE_ID, extra_sans=[CLIENT_ID])
    with tls_connect(proxy.address(), client_context(pki, dns_first), SERVER_ID) as sock:
        assert _json(http_request(sock, "GET", "/").body)["client_id"] == CLIENT_ID
    with tls_connect(proxy.address(), client_context(pki, uri_first), SERVER_ID) as sock:
        assert _json(http_request(sock, "GET", "/").body)["client_id"] == SPIFFE_ID
    only_second = pki.issue("spiffe://cluster.local/ns/ml-team/sa/nobody", extra_sans=[CLIENT_ID])
    with tls_connect(proxy.address(), client_context(pki, only_second), SERVER_ID) as sock:
        assert http_request(sock, "GET", "/").status == 403  # the ml-team DNS SAN is second: not the identity


# -- TLS ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("sni", ["web.frontend.serviceaccount.identity.linkerd.cluster.local", "127.0.0.1", None])
def test_wrong_or_missing_sni_is_refused(make_proxy: MakeProxy, pki: SandboxPKI, client_leaf: IssuedLeaf,
                                         sni: str | None) -> None:
    proxy = make_proxy()
    ctx = client_context(pki, client_leaf)
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        tls_connect(proxy.address(), ctx, sni).close()
    assert wait_until(lambda: proxy.stats.handshake_failures == 1)


def test_meshclient_reports_sni_refusal(make_proxy: MakeProxy, mesh: MeshClient) -> None:
    proxy = make_proxy()
    with pytest.raises(TLSHandshakeError, match="SNI"):
        mesh.get(proxy.url(), server_identity=SERVER_ID, server_name="other.example")


def test_client_certificate_from_another_mesh_is_refused(make_proxy: MakeProxy, pki: SandboxPKI) -> None:
    proxy = make_proxy("all-unauthenticated")
    stranger = SandboxPKI.create().issue(CLIENT_ID)
    ctx = client_context(pki, None)
    from meshclient.tls import load_cert_chain_from_memory

    load_cert_chain_from_memory(ctx, stranger.chain_pem, stranger.key_pem)
    try:
        sock = tls_connect(proxy.address(), ctx, SERVER_ID)
    except (ssl.SSLError, OSError):
        return  # refused during the handshake
    with sock:
        assert refused(sock)  # TLS 1.3: the client learns of the refusal on its first read


def test_only_tls13(make_proxy: MakeProxy, pki: SandboxPKI) -> None:
    proxy = make_proxy("all-unauthenticated")
    ctx = client_context(pki, None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    with pytest.raises(ssl.SSLError):
        tls_connect(proxy.address(), ctx, SERVER_ID).close()


# -- HTTP/1.1 forwarding -------------------------------------------------------------------------
def test_keep_alive_both_sides(make_proxy: MakeProxy, mesh: MeshClient) -> None:
    proxy = make_proxy()
    for i in range(20):
        assert mesh.get(f"{proxy.url()}/n/{i}", server_identity=SERVER_ID).json()["path"] == f"/n/{i}"
    assert proxy.stats.connections == 1
    assert proxy.stats.requests == 20


@pytest.mark.parametrize("chunked", [False, True])
def test_streamed_download(make_proxy: MakeProxy, mesh: MeshClient, chunked: bool) -> None:
    proxy = make_proxy()
    n = 48 * 1024 * 1024 + 7
    resp = mesh.get(f"{proxy.url()}/bytes/{n}" + ("?chunked=1" if chunked else ""), server_identity=SERVER_ID,
                    stream=True)
    digest = hashlib.sha256()
    size = 0
    for piece in resp.iter_content(1024 * 1024):
        digest.update(piece)
        size += len(piece)
    expected = hashlib.sha256()
    for piece in pattern_bytes(n):
        expected.update(piece)
    assert size == n
    assert digest.hexdigest() == expected.hexdigest()
    assert resp.headers.get("transfer-encoding") == ("chunked" if chunked else None)


def test_content_length_upload(make_proxy: MakeProxy, mesh: MeshClient) -> None:
    proxy = make_proxy()
    data = random.Random(7).randbytes(24 * 1024 * 1024 + 3)
    resp = mesh.put(proxy.url() + "/up", server_identity=SERVER_ID, data=io.BytesIO(data))
    assert resp.json()["body"] == {"length": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert resp.json()["headers"]["content-length"] == str(len(data))


def test_chunked_upload_with_extensions_and_trailers(make_proxy: MakeProxy, pki: SandboxPKI,
                                                     client_leaf: IssuedLeaf) -> None:
    proxy = make_proxy()
    parts = [b"hello ", b"chunked ", b"x" * 200_000, b"world"]
    body = b"".join(b"%x;ext=1\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\nX-Checksum: abc\r\n\r\n"
    with tls_connect(proxy.address(), client_context(pki, client_leaf), SERVER_ID) as sock:
        sock.sendall(b"PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
        resp = read_response(sock)
        again = http_request(sock, "GET", "/after")  # the connection is still in sync
    assert _json(resp.body)["body"]["sha256"] == hashlib.sha256(b"".join(parts)).hexdigest()
    assert again.status == 200


def test_expect_100_continue(make_proxy: MakeProxy, pki: SandboxPKI, client_leaf: IssuedLeaf) -> None:
    proxy = make_proxy()
    with tls_connect(proxy.address(), client_context(pki, client_leaf), SERVER_ID) as sock:
        sock.sendall(b"PUT /e HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = sock.recv(100)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n")
        sock.sendall(b"abcde")
        resp = read_response(sock)
    assert _json(resp.body)["body"]["length"] == 5


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3, 4\r\n\r\n", 400),
        (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
        (b"GET / HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n", 400),
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Big: " + b"a" * 70_000 + b"\r\n\r\n", 431),
    ],
)
def test_malformed_requests_are_answered_by_the_proxy(make_proxy: MakeProxy, pki: SandboxPKI,
                                                      client_leaf: IssuedLeaf, request_bytes: bytes,
                                                      status: int) -> None:
    proxy = make_proxy()
    with tls_connect(proxy.address(), client_context(pki, client_leaf), SERVER_ID) as sock:
        sock.sendall(request_bytes)
        resp = read_response(sock)
    assert resp.status == status
    assert resp.headers["l5d-proxy-error"]


def test_app_down_is_502(server_creds: Credentials, mesh: MeshClient) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]
    with InboundProxy(server_creds, dead_port) as proxy:
        resp = mesh.get(proxy.url(), server_identity=SERVER_ID)
    assert resp.status_code == 502
    assert resp.headers["l5d-proxy-error"].startswith(f"connect error to app port {dead_port}")
    assert resp.headers["l5d-proxy-connection"] == "close"


def test_early_answer_from_the_app_reaches_the_client(server_creds: Credentials, mesh: MeshClient,
                                                      tmp_path: object) -> None:
    with ArtifactStore(tmp_path) as store, InboundProxy(server_creds, store.port) as proxy:  # type: ignore[arg-type]
        data = b"z" * (8 * 1024 * 1024)
        resp = mesh.put(proxy.url() + "/a/%2e%2e/escape", server_identity=SERVER_ID, data=data)
        assert resp.status_code == 400
        assert resp.json()["error"] == "invalid_path"
        ok = mesh.put(proxy.url() + "/a/fine.bin", server_identity=SERVER_ID, data=b"fine")
        assert ok.status_code == 201


class CannedApp:
    """A raw app answering each request head with the next canned bytes (for framings EchoApp never uses)."""

    def __init__(self, responses: list[bytes], close_after: bool = True) -> None:
        self.responses = list(responses)
        self.close_after = close_after
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.responses:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                buf = b""
                while self.responses:
                    while b"\r\n\r\n" not in buf:
                        data = conn.recv(65536)
                        if not data:
                            break
                        buf += data
                    if b"\r\n\r\n" not in buf:
                        break
                    buf = buf.split(b"\r\n\r\n", 1)[1]
                    conn.sendall(self.responses.pop(0))
                    if self.close_after:
                        break

    def close(self) -> None:
        self.listener.close()
        self.thread.join(5)


@pytest.mark.parametrize(
    ("canned", "body"),
    [
        (b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the app closes", b"until the app closes"),
        (b"HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", b"ok"),
    ],
)
def test_unusual_app_framings(server_creds: Credentials, pki: SandboxPKI, client_leaf: IssuedLeaf,
                              canned: bytes, body: bytes) -> None:
    app = CannedApp([canned])
    try:
        with InboundProxy(server_creds, app.port) as proxy, \
                tls_connect(proxy.address(), client_context(pki, client_leaf), SERVER_ID) as sock:
            resp = http_request(sock, "GET", "/")
    finally:
        app.close()
    assert resp.status == 200
    assert resp.body == body
    if canned.startswith(b"HTTP/1.0"):
        assert resp.headers["transfer-encoding"] == "chunked"  # re-framed so the client could keep the connection


def test_app_dying_mid_response_closes_the_client_connection(server_creds: Credentials, pki: SandboxPKI,
                                                             client_leaf: IssuedLeaf) -> None:
    app = CannedApp([b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nonly a part"])
    try:
        with InboundProxy(server_creds, app.port) as proxy, \
                tls_connect(proxy.address(), client_context(pki, client_leaf), SERVER_ID) as sock:
            with pytest.raises(ConnectionError):
                http_request(sock, "GET", "/")
    finally:
        app.close()


def test_app_closing_idle_connections_is_transparent(server_creds: Credentials, mesh: MeshClient) -> None:
    with EchoApp(idle_timeout=0.1) as app, InboundProxy(server_creds, app.port) as proxy:
        for _ in range(2):
            assert mesh.post(proxy.url(), server_identity=SERVER_ID, data=b"x" * 10).status_code == 200
            time.sleep(0.3)  # the app drops the idle keep-alive connection to the proxy
        assert proxy.stats.upstream_errors == 0


def test_connection_header_cannot_strip_framing(make_proxy: MakeProxy, pki: SandboxPKI,
                                                client_leaf: IssuedLeaf) -> None:
    proxy = make_proxy()
    with tls_connect(proxy.address(), client_context(pki, client_leaf), SERVER_ID) as sock:
        sock.sendall(b"PUT / HTTP/1.1\r\nHost: x\r\nConnection: transfer-encoding, x-hop\r\nX-Hop: 1\r\n"
                     b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
        resp = read_response(sock)
        assert http_request(sock, "GET", "/next").status == 200
    echoed = _json(resp.body)
    assert echoed["body"]["length"] == 3
    assert "x-hop" not in echoed["headers"]  # named by Connection: dropped


# -- direct mode -------------------------------------------------------------------------------
def test_direct_mode_round_trip(make_proxy: MakeProxy, pki: SandboxPKI, client_leaf: IssuedLeaf,
                                echo: EchoApp) -> None:
    proxy = make_proxy(ServerPolicy("deny", [ML_TEAM]))
    assert proxy.direct_address is not None
    with direct_connect(proxy.direct_address, pki, client_leaf, SERVER_ID, echo.port) as sock:
        assert sock.selected_alpn_protocol() == "transport.l5d.io/v1"
        first = http_request(sock, "GET", "/direct/1", headers={"l5d-client-id": "spoofed"})
        second = http_request(sock, "POST", "/direct/2", body=b"over the same connection")
    assert first.status == 200
    assert _json(first.body)["client_id"] == CLIENT_ID
    assert _json(first.body)["headers"]["l5d-client-id"] == CLIENT_ID
    assert _json(second.body)["body"]["length"] == len(b"over the same connection")
    assert proxy.stats.direct_connections == 1


def test_direct_mode_applies_policy(make_proxy: MakeProxy, pki: SandboxPKI, leaves: dict[str, IssuedLeaf],
                                    echo: EchoApp) -> None:
    proxy = make_proxy(ServerPolicy("deny", [ML_TEAM]))
    assert proxy.direct_address is not None
    with direct_connect(proxy.direct_address, pki, leaves[WEB_ID], SERVER_ID, echo.port) as sock:
        resp = http_request(sock, "GET", "/")
    assert resp.status == 403
    assert resp.headers["l5d-proxy-error"] == "unauthorized request on route"


def test_direct_mode_opaque_session(make_proxy: MakeProxy, pki: SandboxPKI, client_leaf: IssuedLeaf,
                                    echo: EchoApp) -> None:
    proxy = make_proxy(ServerPolicy("deny", [ML_TEAM]))
    assert proxy.direct_address is not None
    with direct_connect(proxy.direct_address, pki, client_leaf, SERVER_ID, echo.port, protocol=None) as sock:
        resp = http_request(sock, "GET", "/opaque")
        upload = http_request(sock, "PUT", "/opaque", body=b"u" * 3_000_000)
        download = http_request(sock, "GET", "/bytes/5000000")
    assert resp.status == 200
    assert _json(resp.body)["client_id"] is None  # opaque bytes: the proxy adds no header
    assert _json(upload.body)["body"]["sha256"] == hashlib.sha256(b"u" * 3_000_000).hexdigest()
    assert download.body == b"".join(pattern_bytes(5_000_000))


def test_meshclient_direct_mode_against_the_proxy(make_proxy: MakeProxy, mesh: MeshClient, echo: EchoApp) -> None:
    """MeshClient(direct=...) and the proxy's direct port, written independently, must agree."""
    proxy = make_proxy(ServerPolicy("deny", [ML_TEAM]))
    assert proxy.direct_address is not None
    direct = "{}:{}".format(*proxy.direct_address)
    resp = mesh.get(f"https://127.0.0.1:{echo.port}/via-direct", server_identity=SERVER_ID, direct=direct)
    assert resp.status_code == 200
    assert resp.json()["client_id"] == CLIENT_ID
    assert proxy.stats.direct_connections == 1


@pytest.mark.parametrize("case", ["no-client-cert", "no-alpn", "unknown-port", "no-header", "http2"])
def test_direct_mode_refusals(make_proxy: MakeProxy, pki: SandboxPKI, client_leaf: IssuedLeaf, echo: EchoApp,
                              case: str) -> None:
    proxy = make_proxy("all-unauthenticated")
    address = proxy.direct_address
    assert address is not None
    try:
        if case == "no-client-cert":
            sock = direct_connect(address, pki, None, SERVER_ID, echo.port)
        elif case == "no-alpn":
            sock = direct_connect(address, pki, client_leaf, SERVER_ID, echo.port, alpn=False)
        elif case == "unknown-port":
            sock = direct_connect(address, pki, client_leaf, SERVER_ID, echo.port + 1 if echo.port < 65535 else 1)
        elif case == "http2":
            sock = direct_connect(address, pki, client_leaf, SERVER_ID, echo.port, protocol=SessionProtocol.HTTP2)
        else:
            sock = tls_connect(address, client_context(pki, client_leaf, alpn=["transport.l5d.io/v1"]), SERVER_ID)
    except (ssl.SSLError, OSError):
        return  # refused during the handshake
    with sock:
        assert refused(sock)
    assert wait_until(lambda: proxy.stats.refused + proxy.stats.handshake_failures >= 1)
    assert echo.running


def test_direct_mode_wrong_sni(make_proxy: MakeProxy, pki: SandboxPKI, client_leaf: IssuedLeaf,
                               echo: EchoApp) -> None:
    proxy = make_proxy()
    assert proxy.direct_address is not None
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        direct_connect(proxy.direct_address, pki, client_leaf, WEB_ID, echo.port).close()


# -- lifecycle ---------------------------------------------------------------------------------
def test_stop_leaves_no_thread_or_socket(server_creds: Credentials, client_creds: Credentials, pki: SandboxPKI,
                                         client_leaf: IssuedLeaf) -> None:
    threads_before = set(threading.enumerate())
    sockets_before = socket_fds()
    app = EchoApp().start()
    proxy = InboundProxy(server_creds, app.port, policy=ServerPolicy("deny", [ML_TEAM])).start()
    client = MeshClient(client_creds)
    assert client.get(proxy.url(), server_identity=SERVER_ID).status_code == 200  # kept alive in the pool
    assert proxy.direct_address is not None
    direct = direct_connect(proxy.direct_address, pki, client_leaf, SERVER_ID, app.port)
    assert http_request(direct, "GET", "/").status == 200
    idle = socket.create_connection(proxy.address())  # never speaks
    time.sleep(0.05)
    assert any(t.name.startswith("proxy-conn") for t in threading.enumerate())

    proxy.stop()
    assert not proxy.running
    # other tests' session sandboxes may run proxies of their own: only this proxy's threads count
    assert not [t for t in threading.enumerate() if t.name.startswith("proxy-") and t not in threads_before]
    assert refused(direct)
    proxy.stop()  # idempotent
    for s in (direct, idle):
        s.close()
    client.close()
    app.stop()
    assert wait_until(lambda: set(threading.enumerate()) <= threads_before)
    assert wait_until(lambda: socket_fds() <= sockets_before), socket_fds() - sockets_before


def test_service_entry_and_repr(make_proxy: MakeProxy, echo: EchoApp) -> None:
    proxy = make_proxy()
    entry = proxy.service_entry()
    assert entry["identity"] == SERVER_ID
    assert entry["app_port"] == echo.port
    assert entry["url"] == proxy.url()
    assert proxy.direct_address is not None
    assert entry["direct"] == "{}:{}".format(*proxy.direct_address)
    assert "running=True" in repr(proxy)


def test_spiffe_proxy_needs_a_server_name(pki: SandboxPKI, echo: EchoApp) -> None:
    from meshclient.errors import ConfigurationError

    leaf = pki.issue("spiffe://cluster.local/ns/ml-platform/sa/echo")
    with pytest.raises(ConfigurationError, match="server_name"):
        InboundProxy(creds_of(leaf), echo.port)
    with InboundProxy(creds_of(leaf), echo.port, server_name="echo.example") as proxy, \
            MeshClient(creds_of(pki.issue(CLIENT_ID))) as client:
        resp = client.get(proxy.url(), server_identity=leaf.identity, server_name="echo.example")
        assert resp.json()["client_id"] == CLIENT_ID


# -- memory ------------------------------------------------------------------------------------
GIB = 1024**3
MIB = 1024**2


@pytest.mark.slow
def test_one_gib_upload_streams_with_bounded_memory(tmp_path: object, server_leaf: IssuedLeaf,
                                                    client_creds: Credentials) -> None:
    """1 GiB, generated on the fly, through a proxy in its own process; its peak RSS must not move."""
    block = bytearray(random.Random(1).randbytes(MIB))
    expected = hashlib.sha256()

    def body(total: int) -> Iterator[bytes]:
        for i in range(total // MIB):
            block[:8] = i.to_bytes(8, "big")
            piece = bytes(block)
            expected.update(piece)
            yield piece

    with EchoApp() as app, proxy_process(tmp_path, server_leaf, app.port,  # type: ignore[arg-type]
                                         {"access": "deny", "allow": [ML_TEAM]}) as proc, \
            MeshClient(client_creds, timeout=(10, 120)) as client:
        warm = client.put(proc.url + "/warm-up", server_identity=SERVER_ID, data=body(64 * MIB))
        assert warm.status_code == 200
        baseline = proc.status_kib("VmHWM")
        expected = hashlib.sha256()
        started = time.monotonic()
        with RSSSampler(proc) as sampler:
            resp = client.put(proc.url + "/one-gib", server_identity=SERVER_ID, data=body(GIB))
        elapsed = time.monotonic() - started
        peak = proc.status_kib("VmHWM")
    assert resp.status_code == 200
    assert resp.json()["body"] == {"length": GIB, "sha256": expected.hexdigest()}
    growth = peak - baseline
    print(f"\n1 GiB upload through the proxy in {elapsed:.1f} s ({GIB / MIB / elapsed:.0f} MiB/s): proxy RSS "
          f"baseline peak {baseline / 1024:.1f} MiB, peak after {peak / 1024:.1f} MiB (+{growth} KiB), "
          f"highest sampled RSS {sampler.peak_kib / 1024:.1f} MiB over {sampler.samples} samples")
    assert sampler.samples > 10
    assert growth < 16 * 1024, f"proxy peak RSS grew by {growth} KiB during a 1 GiB upload"


def _json(data: bytes) -> dict[str, object]:
    import json

    out = json.loads(data)
    assert isinstance(out, dict)
    return out
