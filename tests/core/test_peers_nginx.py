"""MeshClient against nginx configured like a Linkerd inbound proxy (a real, independent TLS stack).

What nginx logged is the server's own testimony: which client identity it verified, which
requests it received, on which connection. Failures are asserted on that log, not on the
client's word.
"""

from __future__ import annotations

import ssl
import urllib.parse
import warnings
from pathlib import Path
from typing import Any

import certifi
import pytest
import requests
from cryptography import x509
from requests.adapters import HTTPAdapter

import meshclient
from meshclient import Credentials, MeshClient
from meshclient_sandbox.nginx import NginxPeer
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI

# helpers asserted in peer_fixtures get pytest's assertion messages too
pytest.register_assert_rewrite("peer_fixtures")
from peer_fixtures import (  # noqa: E402 (after register_assert_rewrite)
    BAR_NS1,
    CLIENT_ID,
    FOO_NS1,
    LINKERD2_TESTDATA,
    PROXY_TESTDATA,
    SERVER_ID,
    needs_nginx,
    process_group,
    proxy_entity,
    sign_with_linkerd2_issuer,
    wait_quiet,
)

pytest_plugins = ["peer_fixtures"]

pytestmark = [pytest.mark.peers, pytest.mark.usefixtures("loopback_only"), needs_nginx]

OTHER_ID = "billing.payments.serviceaccount.identity.linkerd.cluster.local"


def _serial(text: str) -> int:
    """nginx prints the serial as hex bytes (a leading zero nibble kept): compare numbers."""
    return int(text, 16)


# -- the basics ---------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["GET", "POST", "PUT", "DELETE"])
def test_methods_reach_nginx_as_our_identity(
    method: str, nginx_peer: NginxPeer, mesh_client: MeshClient, client_leaf: IssuedLeaf
) -> None:
    body = b'{"rows": 3}' if method in ("POST", "PUT") else None
    response = mesh_client.request(method, f"{nginx_peer.url}/invocations", server_identity=SERVER_ID, data=body)

    assert response.status_code == 200
    assert response.headers["X-Client-Verify"] == "SUCCESS"
    assert response.headers["X-Client-S-DN"] == f"CN={CLIENT_ID}"
    (entry,) = nginx_peer.wait_for_access_log(1)
    assert entry.request == f"{method} /invocations HTTP/1.1"
    assert entry.status == 200
    assert entry.client_verify == "SUCCESS"
    assert entry.client_s_dn == f"CN={CLIENT_ID}"
    assert _serial(entry.client_serial) == client_leaf.cert.serial_number
    assert entry.ssl_protocol == "TLSv1.3"
    assert entry.ssl_server_name == SERVER_ID  # SNI = the server's identity, as Linkerd sends it
    if body is not None:
        assert entry.content_length == str(len(body))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_any_address_works_while_the_identity_is_verified(
    host: str, nginx_peer: NginxPeer, mesh_client: MeshClient
) -> None:
    response = mesh_client.get(f"https://{host}:{nginx_peer.port}/health", server_identity=SERVER_ID)

    assert response.status_code == 200
    assert response.text == "ok\n"
    assert nginx_peer.wait_for_access_log(1)[0].ssl_server_name == SERVER_ID


def test_mesh_service_against_nginx(nginx_peer: NginxPeer, mesh_client: MeshClient) -> None:
    svc = mesh_client.service(nginx_peer.url, server_identity=SERVER_ID)

    assert svc.get("/health").text == "ok\n"
    assert nginx_peer.wait_for_access_log(1)[0].uri == "/health"


def test_nginx_peer_lifecycle_leaves_nothing_behind(server_leaf: IssuedLeaf) -> None:
    peer = NginxPeer.for_leaf(server_leaf)  # its own temp work dir
    with peer:
        pid = peer.pid
        assert pid is not None
        assert len(process_group(pid)) == 2  # master + one worker, both in the peer's own group
        assert (peer.workdir / "server.key").stat().st_mode & 0o777 == 0o600
        workdir = peer.workdir

    assert process_group(pid) == []
    assert not workdir.exists()
    assert not peer.running


# -- refusals -----------------------------------------------------------------------------------
def test_wrong_server_identity_fails_before_nginx_sees_a_request(
    nginx_peer: NginxPeer, mesh_client: MeshClient
) -> None:
    # SNI names the served identity so nginx completes the handshake with its certificate;
    # the client expected someone else and must hang up before writing a byte of HTTP.
    with pytest.raises(meshclient.ServerIdentityError) as info:
        mesh_client.get(f"{nginx_peer.url}/secret", server_identity=OTHER_ID, server_name=SERVER_ID)

    assert OTHER_ID in str(info.value) and SERVER_ID in str(info.value)
    assert wait_quiet(nginx_peer, mesh_client, SERVER_ID) == ["GET /sentinel HTTP/1.1"]


def test_sni_other_than_the_served_identity_is_refused_at_the_handshake(
    nginx_peer: NginxPeer, mesh_client: MeshClient
) -> None:
    with pytest.raises(meshclient.TLSHandshakeError) as info:
        mesh_client.get(f"{nginx_peer.url}/secret", server_identity=OTHER_ID)

    assert not isinstance(info.value, meshclient.ServerIdentityError)  # refused by the server, not us
    assert f"SNI '{OTHER_ID}'" in str(info.value)
    assert "unrecognized name" in str(info.value).lower()
    assert wait_quiet(nginx_peer, mesh_client, SERVER_ID) == ["GET /sentinel HTTP/1.1"]


def test_client_outside_the_mesh_is_not_served(nginx_peer: NginxPeer, pki: SandboxPKI, tmp_path: Path) -> None:
    # A client whose certificate chains to another CA (it trusts ours, so it accepts nginx).
    outsider = SandboxPKI.create(root_name="root.elsewhere.example").issue(CLIENT_ID)
    creds = Credentials.from_pem(outsider.chain_pem, outsider.key_pem,
                                 outsider.trust_anchors_pem + pki.trust_anchors_pem)
    with MeshClient(creds) as client:
        response = client.get(f"{nginx_peer.url}/secret", server_identity=SERVER_ID)

    assert response.status_code == 403
    (entry,) = nginx_peer.wait_for_access_log(1)
    assert entry.status == 403
    assert entry.client_verify.startswith("FAILED:")


def test_keep_alive_many_requests_ride_one_connection(nginx_peer: NginxPeer, mesh_client: MeshClient) -> None:
    count = 50
    for _ in range(count):
        assert mesh_client.get(f"{nginx_peer.url}/health", server_identity=SERVER_ID).status_code == 200

    entries = nginx_peer.wait_for_access_log(count)
    assert len(entries) == count
    assert len({e.connection for e in entries}) == 1
    assert [e.connection_requests for e in entries] == list(range(1, count + 1))
    assert mesh_client.pool_count() == 1


# -- Linkerd's own certificates -----------------------------------------------------------------
@pytest.fixture
def linkerd_bar_nginx(tmp_path: Path) -> NginxPeer:
    cert_pem, key_pem = proxy_entity("bar-ns1-ca1")
    return NginxPeer(cert_chain_pem=cert_pem, key_pem=key_pem,
                     client_trust_pem=(PROXY_TESTDATA / "ca1.pem").read_bytes(), workdir=tmp_path / "nginx-bar")


@pytest.mark.parametrize("loader", ["from_files", "from_directory"])
def test_linkerd_proxy_certificates_round_trip(loader: str, linkerd_bar_nginx: NginxPeer) -> None:
    foo = PROXY_TESTDATA / "foo-ns1-ca1"
    if loader == "from_files":
        creds = Credentials.from_files(foo / "crt.der", foo / "key.p8", PROXY_TESTDATA / "ca1.pem")
    else:
        creds = Credentials.from_directory(foo, trust_anchors=PROXY_TESTDATA / "ca1.pem")
    assert str(creds.identity) == FOO_NS1

    with linkerd_bar_nginx as peer, MeshClient(creds) as client:
        response = client.get(f"https://localhost:{peer.port}/whoami", server_identity=BAR_NS1)
        entries = peer.wait_for_access_log(1)

    assert response.status_code == 200
    # These leaves have an empty subject: nginx has no SAN variable, so read its certificate.
    seen = x509.load_pem_x509_certificate(urllib.parse.unquote(response.headers["X-Client-Cert"]).encode())
    sans = seen.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == [FOO_NS1]
    assert entries[0].client_s_dn == ""
    assert _serial(entries[0].client_serial) == creds.serial
    assert entries[0].ssl_server_name == BAR_NS1


def test_server_from_another_ca_with_the_same_dn_is_refused(tmp_path: Path) -> None:
    # foo-ns1-ca2 is issued by ca2, which has ca1's subject DN but another key.
    cert_pem, key_pem = proxy_entity("foo-ns1-ca2")
    creds = Credentials.from_directory(PROXY_TESTDATA / "foo-ns1-ca1", trust_anchors=PROXY_TESTDATA / "ca1.pem")
    with NginxPeer(cert_chain_pem=cert_pem, key_pem=key_pem, client_trust_pem=(PROXY_TESTDATA / "ca1.pem").read_bytes(),
                   workdir=tmp_path / "nginx-ca2") as peer, MeshClient(creds) as client:
        with pytest.raises(meshclient.TLSHandshakeError) as info:
            client.get(peer.url, server_identity=FOO_NS1)
        assert peer.access_log() == []  # the handshake failed, so no request can have been sent

    assert "certificate verify failed" in str(info.value).lower()
    assert not isinstance(info.value, meshclient.ServerIdentityError)


def test_credentials_from_ca2_do_not_chain_to_ca1() -> None:
    with pytest.raises(meshclient.ChainError):
        Credentials.from_directory(PROXY_TESTDATA / "foo-ns1-ca2", trust_anchors=PROXY_TESTDATA / "ca1.pem")
    # control: with its own anchor the same material is fine, so the failure is the anchor
    ok = Credentials.from_directory(PROXY_TESTDATA / "foo-ns1-ca2", trust_anchors=PROXY_TESTDATA / "ca2.pem")
    assert str(ok.identity) == FOO_NS1


def _same_dn_credentials(identity: str) -> tuple[Credentials, bytes, bytes]:
    chain_pem, key_pem, _ = sign_with_linkerd2_issuer(identity)
    anchors = (LINKERD2_TESTDATA / "valid-trust-anchors.pem").read_bytes()
    with pytest.warns(meshclient.SameSubjectIssuerWarning):
        creds = Credentials.from_pem(chain_pem, key_pem, anchors)
    return creds, chain_pem, key_pem


def test_linkerd2_issuer_with_the_roots_dn_round_trip(tmp_path: Path) -> None:
    client_creds, _, _ = _same_dn_credentials(CLIENT_ID)
    server_creds, server_chain, server_key = _same_dn_credentials(SERVER_ID)
    anchors = (LINKERD2_TESTDATA / "valid-trust-anchors.pem").read_bytes()
    issuer = (LINKERD2_TESTDATA / "valid-crt.pem").read_bytes()
    # nginx verifies client chains with OpenSSL too, and OpenSSL takes an issuer whose subject
    # equals its issuer DN (and has no AKI) for self-signed: "self-signed certificate in
    # certificate chain". So nginx must trust the issuer itself, as meshclient does internally.
    # rustls (the real Linkerd proxy) has no such limitation.
    with NginxPeer(cert_chain_pem=server_chain, key_pem=server_key, client_trust_pem=anchors + issuer,
                   workdir=tmp_path / "nginx-same-dn") as peer, MeshClient(client_creds) as client:
        response = client.get(f"{peer.url}/whoami", server_identity=SERVER_ID)
        (entry,) = peer.wait_for_access_log(1)
        # the client context trusts the anchor plus the same-DN issuer, and nothing else
        assert client.ssl_context.cert_store_stats()["x509_ca"] == 2

    assert response.status_code == 200
    assert entry.client_verify == "SUCCESS"
    assert entry.client_s_dn == f"CN={CLIENT_ID}"
    assert server_creds.extra_trusted and client_creds.extra_trusted


def test_nginx_without_the_same_dn_issuer_cannot_verify_the_client(tmp_path: Path) -> None:
    """The limitation the previous test works around, shown on nginx itself."""
    client_creds, _, _ = _same_dn_credentials(CLIENT_ID)
    _, server_chain, server_key = _same_dn_credentials(SERVER_ID)
    anchors = (LINKERD2_TESTDATA / "valid-trust-anchors.pem").read_bytes()
    with NginxPeer(cert_chain_pem=server_chain, key_pem=server_key, client_trust_pem=anchors,
                   workdir=tmp_path / "nginx-anchor-only") as peer, MeshClient(client_creds) as client:
        response = client.get(f"{peer.url}/whoami", server_identity=SERVER_ID)
        (entry,) = peer.wait_for_access_log(1)

    assert response.status_code == 403
    assert "self-signed certificate in certificate chain" in entry.client_verify


# -- the mesh context trusts the mesh anchors and nothing else ----------------------------------
@pytest.fixture
def rogue_bundle(tmp_path: Path) -> tuple[SandboxPKI, Path]:
    """A CA bundle (certifi's CAs plus a rogue root), the kind a notebook environment points at."""
    rogue = SandboxPKI.create(root_name="Rogue Root CA")
    bundle = tmp_path / "bundle-with-rogue.pem"
    bundle.write_bytes(Path(certifi.where()).read_bytes() + b"\n" + rogue.trust_anchors_pem)
    return rogue, bundle


def _point_env_at(monkeypatch: pytest.MonkeyPatch, bundle: Path) -> None:
    for name in ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
        monkeypatch.setenv(name, str(bundle))


def test_mesh_context_trusts_only_the_mesh_anchors(
    nginx_peer: NginxPeer, client_creds: Credentials, rogue_bundle: tuple[SandboxPKI, Path],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, pki: SandboxPKI,
) -> None:
    rogue, bundle = rogue_bundle
    _point_env_at(monkeypatch, bundle)
    # A server with the right identity in its DNS SAN, but signed by the rogue CA.
    impostor = rogue.issue(SERVER_ID)
    with MeshClient(client_creds) as client, NginxPeer.for_leaf(
        impostor, client_trust_pem=pki.trust_anchors_pem, workdir=tmp_path / "nginx-impostor"
    ) as fake:
        for _ in range(3):
            assert client.get(f"{nginx_peer.url}/health", server_identity=SERVER_ID).status_code == 200
        assert client.ssl_context.cert_store_stats()["x509_ca"] == len(client_creds.trust_anchors)

        with pytest.raises(meshclient.TLSHandshakeError) as info:
            client.get(f"{fake.url}/health", server_identity=SERVER_ID)
        assert fake.access_log() == []
        assert client.ssl_context.cert_store_stats()["x509_ca"] == len(client_creds.trust_anchors)
    assert "certificate verify failed" in str(info.value).lower()


class _HandWrittenAdapter(HTTPAdapter):
    """How people pin a custom context in requests today (the trap MeshClient avoids)."""

    def __init__(self, ctx: ssl.SSLContext, server_hostname: str) -> None:
        self._ctx = ctx
        self._server_hostname = server_hostname
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(ssl_context=self._ctx, server_hostname=self._server_hostname,
                      assert_hostname=self._server_hostname)
        super().init_poolmanager(*args, **kwargs)


def _hand_written_session(client_leaf: IssuedLeaf, tmp_path: Path) -> tuple[requests.Session, ssl.SSLContext]:
    paths = client_leaf.write(tmp_path / "hand-written")
    ctx = ssl.create_default_context(cadata=client_leaf.trust_anchors_pem.decode())
    ctx.load_cert_chain(paths["cert"], paths["key"])
    session = requests.Session()
    session.mount("https://", _HandWrittenAdapter(ctx, SERVER_ID))
    return session, ctx


def test_contrast_plain_requests_with_verify_true_loads_certifi_into_the_context(
    nginx_peer: NginxPeer, client_leaf: IssuedLeaf, tmp_path: Path
) -> None:
    session, ctx = _hand_written_session(client_leaf, tmp_path)
    assert ctx.cert_store_stats()["x509_ca"] == 1
    with session:
        assert session.get(f"{nginx_peer.url}/health", verify=True).status_code == 200

    # requests handed certifi's bundle to urllib3, which loaded it into *our* context
    assert ctx.cert_store_stats()["x509_ca"] > 100


def test_contrast_plain_requests_trusts_a_rogue_ca_from_the_environment(
    client_leaf: IssuedLeaf, pki: SandboxPKI, rogue_bundle: tuple[SandboxPKI, Path],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    rogue, bundle = rogue_bundle
    _point_env_at(monkeypatch, bundle)
    impostor = rogue.issue(SERVER_ID)
    session, _ = _hand_written_session(client_leaf, tmp_path)
    with NginxPeer.for_leaf(impostor, client_trust_pem=pki.trust_anchors_pem,
                            workdir=tmp_path / "nginx-impostor") as fake, session:
        response = session.get(f"{fake.url}/health")
    # the impostor was accepted: REQUESTS_CA_BUNDLE reached the hand-built "mesh" context
    assert response.status_code == 200


def test_errors_and_reprs_carry_no_key_material(nginx_peer: NginxPeer, mesh_client: MeshClient) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        texts = [repr(nginx_peer), repr(mesh_client), repr(mesh_client.credentials)]
    for attempt in ({"server_identity": OTHER_ID}, {"server_identity": OTHER_ID, "server_name": SERVER_ID}):
        with pytest.raises(meshclient.MeshError) as info:
            mesh_client.get(nginx_peer.url, **attempt)
        texts.append(str(info.value))
    texts.append(nginx_peer.error_log())
    for text in texts:
        assert "PRIVATE KEY" not in text
        assert "BEGIN" not in text
