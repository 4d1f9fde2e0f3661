"""The sandbox's Vault-PKI endpoint issues short-lived identities end to end: an OIDC token from
the sandbox issuer, JWT login, ``pki/sign/<role>``, then an mTLS request with the new identity."""

from __future__ import annotations

import meshclient
from meshclient_sandbox.runner import Sandbox

JOB_ID = "job.ml-team.serviceaccount.identity.linkerd.cluster.local"


def _token(sandbox: Sandbox) -> meshclient.tokens.ClientCredentials:
    oidc = sandbox.info["oidc"]
    return meshclient.tokens.ClientCredentials(token_url=oidc["token_url"], client_id=oidc["client_id"],
                                               client_secret=oidc["client_secret"], audience=oidc["audience"])


def test_issuer_source_over_the_sandbox_vault_makes_a_working_identity(mesh_sandbox: Sandbox) -> None:
    vault = mesh_sandbox.info["vault"]
    issuer = meshclient.VaultPKIIssuer(vault["address"], role=vault["role"])
    echo = mesh_sandbox.service("echo")
    with meshclient.IssuerSource(issuer, JOB_ID, token=_token(mesh_sandbox),
                                 trust_anchors=mesh_sandbox.info["trust_anchors"]) as source:
        creds = source.current()
        assert str(creds.identity) == JOB_ID
        lifetime = (creds.not_after - creds.not_before).total_seconds()
        assert lifetime <= 3600  # short-lived, not a 24 h file
        with meshclient.MeshClient(source) as client:
            body = client.get(f"{echo['url']}/vault", server_identity=echo["identity"]).json()
    assert body["client_id"] == JOB_ID


def test_the_sandbox_vault_refuses_an_identity_outside_its_role(mesh_sandbox: Sandbox) -> None:
    vault = mesh_sandbox.info["vault"]
    issuer = meshclient.VaultPKIIssuer(vault["address"], role=vault["role"])
    outsider = "etl.finance.serviceaccount.identity.linkerd.cluster.local"
    try:
        meshclient.IssuerSource(issuer, outsider, token=_token(mesh_sandbox),
                                trust_anchors=mesh_sandbox.info["trust_anchors"], timeout=2)
    except meshclient.MeshError as exc:
        text = str(exc)
        assert vault["role"] in text and outsider in text
        assert _token(mesh_sandbox).token().value not in text
    else:
        raise AssertionError("the sandbox Vault signed an identity outside its role")
