"""Rotation under load against nginx, which logs the client serial it verified on each request.

The claim under test: 8 threads sending continuously through one ``MeshClient`` while the
identity rotates 3 times see zero failed requests, the server sees every generation's
certificate, the newest is in use at the end, and no TLS session is resumed across
generations (a resumed session would keep the old identity). nginx's access log is the
server's own testimony for all of it.
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from rotation_helpers import (
    CLIENT_ID,
    SERVER_ID,
    Load,
    nginx_serial,
    rotate_files,
    serial_hex,
    wait_until,
    write_atomic,
    write_identity,
)

from meshclient import CertificateValidityError, FileSource, MeshClient, TLSHandshakeError
from meshclient.credentials.issuers import IssuerSource, VaultPKIIssuer
from meshclient.tokens import ClientCredentials, OutboundRetryPolicy
from meshclient_sandbox.nginx import NginxPeer
from meshclient_sandbox.pki import SandboxPKI
from meshclient_sandbox.vault import SandboxVault

pytestmark = [pytest.mark.peers, pytest.mark.slow]


def assert_server_view(peer: NginxPeer, serials: list[str], *, total: int) -> None:
    """nginx verified every request, saw every generation, the newest last, and never resumed a session."""
    entries = peer.wait_for_access_log(total, timeout=10)
    assert len(entries) >= total
    assert {e.status for e in entries} == {200}
    assert {e.client_verify for e in entries} == {"SUCCESS"}
    seen = [f"{int(e.client_serial, 16):x}" for e in entries]
    for serial in serials:
        assert serial in seen, f"nginx never saw generation with serial {serial}"
    assert seen[-1] == serials[-1], "the newest certificate is not the one in use at the end"
    assert set(seen) <= set(serials), "nginx saw a certificate that was never installed"
    assert [e for e in entries if e.ssl_session_reused == "r"] == [], "a TLS session was resumed"


@pytest.mark.parametrize("order", ["cert_first", "key_first"])
def test_file_rotation_under_load_zero_failures(pki: SandboxPKI, nginx: NginxPeer, tmp_path: Path, order: str) -> None:
    leaves = [pki.issue(CLIENT_ID) for _ in range(4)]
    paths = write_identity(tmp_path, leaves[0])
    source = FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=0.05)
    client = MeshClient(source)
    installed: list[str] = []
    source.subscribe(lambda snap: installed.append(serial_hex(snap.serial)))
    serials = [serial_hex(leaf.cert.serial_number) for leaf in leaves]
    try:
        with Load(client, nginx.url, SERVER_ID, nginx_serial, threads=8) as load:
            load.wait_for(serials[0])
            for leaf, serial in zip(leaves[1:], serials[1:], strict=True):
                rotate_files(paths, leaf, order=order)
                load.wait_for(serial)
        result = load.result
    finally:
        client.close()
        source.close()
    assert result.failures == [], result.failures[:5]
    assert result.seen == serials
    assert installed == serials[1:], "a mismatched or partial pair was installed"
    assert source.rotations == 3
    assert_server_view(nginx, serials, total=result.requests)


def test_issuer_renewal_under_load_zero_failures(pki: SandboxPKI, nginx: NginxPeer, vault: SandboxVault,
                                                 jwt_provider: ClientCredentials) -> None:
    issuer = VaultPKIIssuer(vault.url, role="ml-team")
    source = IssuerSource(issuer, CLIENT_ID, token=jwt_provider, trust_anchors=pki.trust_anchors_pem)
    client = MeshClient(source)
    serials = [serial_hex(source.current().serial)]
    try:
        with Load(client, nginx.url, SERVER_ID, nginx_serial, threads=8) as load:
            load.wait_for(serials[0])
            for _ in range(3):
                assert source.refresh_now()
                serials.append(serial_hex(source.current().serial))
                load.wait_for(serials[-1])
        result = load.result
    finally:
        client.close()
        source.close()
    assert result.failures == [], result.failures[:5]
    assert result.seen == serials
    assert vault.certificates_issued == 4
    assert_server_view(nginx, serials, total=result.requests)


def test_trust_anchor_rotation_with_overlap(pki: SandboxPKI, vault: SandboxVault, jwt_provider: ClientCredentials,
                                            tmp_path: Path) -> None:
    """Old+new anchors, then leaves from the new anchor, then the old anchor removed: a server
    presenting an old-anchor certificate is refused from then on; the other never sees a failure."""
    new = SandboxPKI.create()
    bundle = pki.trust_anchors_pem + new.trust_anchors_pem
    anchors = tmp_path / "ca.crt"
    write_atomic(anchors, bundle)
    old_server = NginxPeer.for_leaf(pki.issue(SERVER_ID), client_trust_pem=bundle).start()
    new_server = NginxPeer.for_leaf(new.issue(SERVER_ID), client_trust_pem=bundle).start()
    source = IssuerSource(VaultPKIIssuer(vault.url, role="ml-team"), CLIENT_ID, token=jwt_provider,
                          trust_anchors=anchors, poll_interval=0.05)
    client = MeshClient(source)
    try:
        first = source.current()
        assert first.intermediates[0] == pki.issuer.cert
        with Load(client, new_server.url, SERVER_ID, nginx_serial, threads=8) as load:
            load.wait_for(serial_hex(first.serial))
            assert nginx_serial(client.get(old_server.url + "/health", server_identity=SERVER_ID))
            # The issuer moves to the new anchor's issuer; the bundle still holds both anchors.
            vault.set_issuer(new.issuer, [new.root.cert])
            assert source.refresh_now()
            second = source.current()
            assert second.intermediates[0] == new.issuer.cert
            load.wait_for(serial_hex(second.serial))
            assert nginx_serial(client.get(old_server.url + "/health", server_identity=SERVER_ID))
            # End of the overlap: the old anchor leaves the bundle; the certificate is kept.
            signed_before = vault.certificates_issued
            write_atomic(anchors, new.trust_anchors_pem)
            wait_until(lambda: source.current().trust_anchors == (new.root.cert,), what="the new anchors")
            assert source.current().serial == second.serial
            assert vault.certificates_issued == signed_before
            time.sleep(0.2)  # the load keeps going on the new generation
        result = load.result
        old_seen = len(old_server.access_log())
        with pytest.raises(TLSHandshakeError, match="certificate verify failed"):
            client.get(old_server.url + "/health", server_identity=SERVER_ID, retry=False)
        assert len(old_server.access_log()) == old_seen, "the refused server received a request"
        entries = new_server.wait_for_access_log(result.requests)
    finally:
        client.close()
        source.close()
        old_server.stop()
        new_server.stop()
    assert result.failures == [], result.failures[:5]
    assert len(entries) == result.requests
    assert [e for e in entries if e.ssl_session_reused == "r"] == []
    assert {f"{int(e.client_serial, 16):x}" for e in entries} == {serial_hex(first.serial), serial_hex(second.serial)}


def test_issuer_down_at_renewal(pki: SandboxPKI, nginx: NginxPeer, vault: SandboxVault,
                                jwt_provider: ClientCredentials) -> None:
    """Outage at renewal time: the old certificate serves until expiry, then a clear
    CertificateValidityError; requests resume as soon as the issuer answers again."""
    vault.ttl = 4
    issuer = VaultPKIIssuer(vault.url, role="ml-team", retries=OutboundRetryPolicy(attempts=1))
    source = IssuerSource(issuer, CLIENT_ID, token=jwt_provider, trust_anchors=pki.trust_anchors_pem,
                          min_refresh=0.3)
    client = MeshClient(source)
    url = nginx.url + "/health"
    try:
        first = source.current()
        vault.set_outage()
        calls = vault.sign_requests
        # Renewal is due at 70 % of the 4 s left; it fails, and the old certificate keeps serving.
        wait_until(lambda: vault.sign_requests > calls, what="a renewal attempt during the outage")
        assert nginx_serial(client.get(url, server_identity=SERVER_ID)) == serial_hex(first.serial)
        wait_until(lambda: datetime.now(timezone.utc) > first.not_after, what="the certificate's expiry")
        with pytest.raises(CertificateValidityError) as err:
            client.get(url, server_identity=SERVER_ID)
        text = str(err.value)
        assert CLIENT_ID in text and "expired" in text and vault.url in text
        assert "HTTP 503" in text and "Vault is sealed" in text
        vault.set_outage(False)
        wait_until(lambda: _works(client, url), timeout=10, what="requests to resume")
        assert nginx_serial(client.get(url, server_identity=SERVER_ID)) != serial_hex(first.serial)
    finally:
        client.close()
        source.close()


def _works(client: MeshClient, url: str) -> bool:
    try:
        return client.get(url, server_identity=SERVER_ID).status_code == 200
    except CertificateValidityError:
        return False


def test_pool_retired_between_lookup_and_use_is_not_a_failure(pki: SandboxPKI, nginx: NginxPeer,
                                                             vault: SandboxVault,
                                                             jwt_provider: ClientCredentials) -> None:
    """Deterministic replay of the interleaving 8 threads hit rarely: thread A gets the pool of
    generation N, thread B's request on generation N+1 retires it, then A uses it."""
    source = IssuerSource(VaultPKIIssuer(vault.url, role="ml-team"), CLIENT_ID, token=jwt_provider,
                          trust_anchors=pki.trust_anchors_pem)
    client = MeshClient(source)
    url = nginx.url + "/health"
    try:
        nginx_serial(client.get(url, server_identity=SERVER_ID))
        adapter = client._pools  # the seam where the race lives
        original = adapter.pool_for
        raced: list[bool] = []

        def racing_pool_for(route: Any) -> Any:
            pool = original(route)
            if not raced:
                raced.append(True)
                source.refresh_now()  # a rotation ...
                original(route)  # ... and another thread's request on the new generation
            return pool

        adapter.pool_for = racing_pool_for  # type: ignore[method-assign]
        # A POST: GETs hide the race behind the client's retry of idempotent requests, but
        # nothing was sent, so no request of any method may fail here.
        assert nginx_serial(client.post(url, server_identity=SERVER_ID, data=b"results"))
    finally:
        client.close()
        source.close()
