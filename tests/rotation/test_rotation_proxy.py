"""Rotation under load through the sandbox inbound proxy (Linkerd-like policy and ``l5d-client-id``).

The server-side evidence is the identity the app is told (``l5d-client-id``, echoed by the echo
app), the client certificate serials the proxy verified (``InboundProxy.client_serials``) and
its connection counter: every generation opens new connections.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from rotation_helpers import (
    CLIENT_ID,
    SERVER_ID,
    Load,
    differs,
    echo_client_id,
    exceeds,
    rotate_files,
    serial_hex,
    wait_until,
    write_identity,
)

from meshclient import FileSource, MeshClient
from meshclient.credentials.issuers import IssuerSource, VaultPKIIssuer
from meshclient.tokens import ClientCredentials
from meshclient_sandbox.pki import SandboxPKI
from meshclient_sandbox.proxy import InboundProxy
from meshclient_sandbox.vault import SandboxVault

pytestmark = pytest.mark.slow


def test_file_rotation_through_proxy_zero_failures(pki: SandboxPKI, echo_proxy: InboundProxy, tmp_path: Path) -> None:
    leaves = [pki.issue(CLIENT_ID) for _ in range(4)]
    paths = write_identity(tmp_path, leaves[0])
    source = FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=0.05)
    client = MeshClient(source)
    installed: list[str] = []
    source.subscribe(lambda snap: installed.append(serial_hex(snap.serial)))
    connections: list[int] = []
    try:
        with Load(client, echo_proxy.url(), SERVER_ID, echo_client_id(CLIENT_ID), threads=8, path="/echo") as load:
            for order, leaf in zip(["cert_first", "key_first", "cert_first"], leaves[1:], strict=True):
                load.wait_for(CLIENT_ID)
                connections.append(echo_proxy.stats.connections)
                generation = source.current().generation
                rotate_files(paths, leaf, order=order)
                load.wait_for(CLIENT_ID)  # still the same identity ...
                # ... now carried by the new certificate on new connections
                wait_until(differs(lambda: source.current().generation, generation), what="the rotation")
                wait_until(exceeds(lambda: echo_proxy.stats.requests, echo_proxy.stats.requests + 16),
                           what="requests on the new generation")
            connections.append(echo_proxy.stats.connections)
        result = load.result
    finally:
        client.close()
        source.close()
    assert result.failures == [], result.failures[:5]
    assert result.seen == [CLIENT_ID]
    assert installed == [serial_hex(leaf.cert.serial_number) for leaf in leaves[1:]]
    # the proxy verified every generation's certificate, and the newest one last
    seen = [int(s, 16) for s in echo_proxy.client_serials]
    assert {leaf.cert.serial_number for leaf in leaves} <= set(seen)
    assert seen[-1] == leaves[-1].cert.serial_number
    assert connections == sorted(connections) and len(set(connections)) == 4, connections
    assert echo_proxy.stats.denied == 0 and echo_proxy.stats.handshake_failures == 0


def test_issuer_renewal_through_proxy_zero_failures(pki: SandboxPKI, echo_proxy: InboundProxy, vault: SandboxVault,
                                                    jwt_provider: ClientCredentials) -> None:
    source = IssuerSource(VaultPKIIssuer(vault.url, role="ml-team"), CLIENT_ID, token=jwt_provider,
                          trust_anchors=pki.trust_anchors_pem)
    client = MeshClient(source)
    try:
        with Load(client, echo_proxy.url(), SERVER_ID, echo_client_id(CLIENT_ID), threads=8, path="/echo") as load:
            for _ in range(3):
                load.wait_for(CLIENT_ID)
                before = echo_proxy.stats.connections
                assert source.refresh_now()
                wait_until(exceeds(lambda: echo_proxy.stats.connections, before), what="new connections")
            load.wait_for(CLIENT_ID)
        result = load.result
    finally:
        client.close()
        source.close()
    assert result.failures == [], result.failures[:5]
    assert source.rotations == 3
    assert echo_proxy.stats.denied == 0 and echo_proxy.stats.handshake_failures == 0

