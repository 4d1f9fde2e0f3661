"""MeshClient against stunnel4 (a second, independent mTLS terminator) in front of an echo app.

The echo app records every request that made it through stunnel; stunnel's log says which
client certificate it verified for the connection that carried each one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import meshclient
from meshclient import Credentials, MeshClient
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI
from meshclient_sandbox.stunnel import StunnelPeer

pytest.register_assert_rewrite("peer_fixtures")
from peer_fixtures import (  # noqa: E402 (after register_assert_rewrite)
    BAR_NS1,
    CLIENT_ID,
    FOO_NS1,
    PROXY_TESTDATA,
    SERVER_ID,
    needs_stunnel,
    process_group,
    proxy_entity,
)

pytest_plugins = ["peer_fixtures"]

pytestmark = [pytest.mark.peers, pytest.mark.usefixtures("loopback_only"), needs_stunnel]

OTHER_ID = "billing.payments.serviceaccount.identity.linkerd.cluster.local"


def _sentinel(peer: StunnelPeer, client: MeshClient) -> list[str]:
    """Paths the app saw, after a sentinel request (the app records before it answers)."""
    assert client.get(f"{peer.url}/sentinel", server_identity=SERVER_ID).status_code == 200
    return [r.path for r in peer.requests]


@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_methods_reach_the_app_through_stunnel_as_our_identity(
    method: str, stunnel_peer: StunnelPeer, mesh_client: MeshClient
) -> None:
    body = b'{"rows": 3}' if method in ("POST", "PUT") else None
    response = mesh_client.request(method, f"{stunnel_peer.url}/invocations?x=1", server_identity=SERVER_ID,
                                   data=body)

    assert response.status_code == 200
    echo = response.json()
    assert echo["method"] == method
    assert echo["path"] == "/invocations?x=1"
    assert echo["body"] == (body or b"").decode()
    (seen,) = stunnel_peer.requests
    assert seen.method == method
    assert stunnel_peer.client_subject_for(seen) == f"CN={CLIENT_ID}"


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_any_address_works_through_stunnel(host: str, stunnel_peer: StunnelPeer, mesh_client: MeshClient) -> None:
    response = mesh_client.get(f"https://{host}:{stunnel_peer.port}/health", server_identity=SERVER_ID)

    assert response.status_code == 200
    assert response.json()["path"] == "/health"


def test_stunnel_peer_lifecycle_leaves_nothing_behind(server_leaf: IssuedLeaf) -> None:
    peer = StunnelPeer.for_leaf(server_leaf)
    with peer:
        pid = peer.pid
        assert pid is not None
        assert process_group(pid) == [pid]
        assert (peer.workdir / "server.key").stat().st_mode & 0o777 == 0o600
        workdir = peer.workdir

    assert process_group(pid) == []
    assert not workdir.exists()
    assert not peer.app.running


def test_wrong_server_identity_fails_before_the_app_sees_a_request(
    stunnel_peer: StunnelPeer, mesh_client: MeshClient
) -> None:
    # stunnel ignores SNI and completes the handshake: only the client's identity check stops it.
    with pytest.raises(meshclient.ServerIdentityError):
        mesh_client.get(f"{stunnel_peer.url}/secret", server_identity=OTHER_ID)

    assert _sentinel(stunnel_peer, mesh_client) == ["/sentinel"]


def test_client_outside_the_mesh_is_refused_by_stunnel(stunnel_peer: StunnelPeer, pki: SandboxPKI) -> None:
    outsider = SandboxPKI.create(root_name="root.elsewhere.example").issue(CLIENT_ID)
    creds = Credentials.from_pem(outsider.chain_pem, outsider.key_pem,
                                 outsider.trust_anchors_pem + pki.trust_anchors_pem)
    with MeshClient(creds) as client, pytest.raises(meshclient.TLSHandshakeError) as info:
        client.get(f"{stunnel_peer.url}/secret", server_identity=SERVER_ID)

    assert "unknown ca" in str(info.value).lower()
    assert stunnel_peer.requests == []


def test_keep_alive_through_stunnel_uses_one_tls_connection(
    stunnel_peer: StunnelPeer, mesh_client: MeshClient
) -> None:
    count = 30
    for i in range(count):
        assert mesh_client.get(f"{stunnel_peer.url}/n/{i}", server_identity=SERVER_ID).status_code == 200

    seen = stunnel_peer.requests
    assert [r.path for r in seen] == [f"/n/{i}" for i in range(count)]
    assert len({r.client_port for r in seen}) == 1  # one backend connection = one TLS connection
    assert list(stunnel_peer.verified_subjects().values()) == [f"CN={CLIENT_ID}"]


def test_linkerd_proxy_certificates_through_stunnel(tmp_path: Path) -> None:
    cert_pem, key_pem = proxy_entity("bar-ns1-ca1")
    creds = Credentials.from_directory(PROXY_TESTDATA / "foo-ns1-ca1", trust_anchors=PROXY_TESTDATA / "ca1.pem")
    with StunnelPeer(cert_chain_pem=cert_pem, key_pem=key_pem,
                     client_trust_pem=(PROXY_TESTDATA / "ca1.pem").read_bytes(),
                     workdir=tmp_path / "stunnel-bar") as peer, MeshClient(creds) as client:
        response = client.post(f"{peer.url}/push", server_identity=BAR_NS1, data=b"artifact")
        with pytest.raises(meshclient.ServerIdentityError):
            client.get(peer.url, server_identity=FOO_NS1)  # bar's proxy is not foo
        (seen,) = peer.requests

    assert response.status_code == 200
    assert response.json()["body"] == "artifact"
    assert seen.path == "/push"
