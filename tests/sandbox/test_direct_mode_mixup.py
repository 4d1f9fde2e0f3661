"""Direct mode's two ports, mixed up as a newcomer does with sandbox.json (README: direct mode)."""

from __future__ import annotations

from typing import Any

import pytest

from meshclient import MeshClient
from meshclient.errors import TLSHandshakeError, TransportError
from meshclient_sandbox.runner import Sandbox


def test_the_service_url_with_the_direct_port_says_which_port_is_which(mesh_sandbox: Sandbox) -> None:
    echo: dict[str, Any] = mesh_sandbox.service("echo")
    with MeshClient(mesh_sandbox.client_credentials()) as client, pytest.raises(TransportError) as err:
        client.get(f"{echo['url']}/x", server_identity=echo["identity"], direct=echo["direct"])
    text = str(err.value)
    assert "direct mode the URL names the application's own port" in text and "app_port" in text


def test_the_proxied_port_given_as_the_direct_port_is_refused_clearly(mesh_sandbox: Sandbox) -> None:
    echo: dict[str, Any] = mesh_sandbox.service("echo")
    proxied = echo["url"].removeprefix("https://")
    with MeshClient(mesh_sandbox.client_credentials()) as client, pytest.raises(TLSHandshakeError) as err:
        client.get(f"https://127.0.0.1:{echo['app_port']}/x", server_identity=echo["identity"], direct=proxied)
    assert "not a Linkerd inbound proxy's direct port" in str(err.value)


def test_the_app_port_with_the_direct_port_works(mesh_sandbox: Sandbox) -> None:
    echo: dict[str, Any] = mesh_sandbox.service("echo")
    with MeshClient(mesh_sandbox.client_credentials()) as client:
        body = client.get(f"https://127.0.0.1:{echo['app_port']}/x", server_identity=echo["identity"],
                          direct=echo["direct"]).json()
    assert body["client_id"] == mesh_sandbox.info["client"]["identity"]
