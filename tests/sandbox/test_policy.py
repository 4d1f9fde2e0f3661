"""ServerPolicy: Linkerd's default policies and MeshTLSAuthentication matching, without sockets."""

from __future__ import annotations

import pytest

from meshclient import Identity
from meshclient.errors import ConfigurationError
from meshclient_sandbox.policy import (
    UNAUTHORIZED_ROUTE,
    AccessPolicy,
    Authorization,
    ClientInfo,
    ServerPolicy,
)

NOTEBOOK = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
SCORER = "scorer.ml-team.serviceaccount.identity.linkerd.cluster.local"
WEB = "web.frontend.serviceaccount.identity.linkerd.cluster.local"
SPIFFE = "spiffe://cluster.local/ns/ml-team/sa/external"
ML_TEAM = "*.ml-team.serviceaccount.identity.linkerd.cluster.local"


def mtls(identity: str, address: str = "127.0.0.1") -> ClientInfo:
    return ClientInfo(address=address, tls=True, identity=Identity.parse(identity))


NO_CERT = ClientInfo(address="127.0.0.1", tls=True, identity=None)
PLAINTEXT = ClientInfo(address="127.0.0.1", tls=False, identity=None)


@pytest.mark.parametrize(
    ("access", "client", "allowed"),
    [
        ("all-unauthenticated", PLAINTEXT, True),
        ("all-unauthenticated", NO_CERT, True),
        ("all-unauthenticated", mtls(SPIFFE), True),
        ("all-authenticated", mtls(NOTEBOOK), True),
        ("all-authenticated", NO_CERT, False),
        ("all-authenticated", PLAINTEXT, False),
        # Linkerd: all-authenticated is a suffix match, which never matches a URI identity
        ("all-authenticated", mtls(SPIFFE), False),
        ("cluster-unauthenticated", ClientInfo("10.1.2.3", False), True),
        ("cluster-unauthenticated", ClientInfo("203.0.113.9", False), False),
        ("cluster-authenticated", mtls(NOTEBOOK, "10.1.2.3"), True),
        ("cluster-authenticated", mtls(NOTEBOOK, "203.0.113.9"), False),
        ("deny", mtls(NOTEBOOK), False),
        ("deny", NO_CERT, False),
        ("deny", PLAINTEXT, False),
    ],
)
def test_access_policies(access: str, client: ClientInfo, allowed: bool) -> None:
    assert ServerPolicy(access).check(client).allowed is allowed


@pytest.mark.parametrize(
    ("allow", "identity", "allowed"),
    [
        ([ML_TEAM], NOTEBOOK, True),
        ([ML_TEAM], SCORER, True),
        ([ML_TEAM], WEB, False),
        ([ML_TEAM], "x.ml-team.serviceaccount.identity.linkerd.other.domain", False),
        ([NOTEBOOK], NOTEBOOK, True),
        ([NOTEBOOK], SCORER, False),
        (["*"], WEB, True),
        ([SPIFFE], SPIFFE, True),
        ([SPIFFE], "spiffe://cluster.local/ns/ml-team/sa/other", False),
        # wildcards never match SPIFFE identities, whatever the suffix
        (["*"], SPIFFE, False),
        ([ML_TEAM, "*"], SPIFFE, False),
        ([SPIFFE, NOTEBOOK], NOTEBOOK, True),
    ],
)
def test_mesh_tls_identities(allow: list[str], identity: str, allowed: bool) -> None:
    policy = ServerPolicy("deny", allow)
    assert policy.check(mtls(identity)).allowed is allowed
    assert policy.check(NO_CERT).allowed is False


def test_denial_text_is_linkerds_and_detail_names_both_sides() -> None:
    decision = ServerPolicy("deny", [ML_TEAM]).check(mtls(WEB), server="echo.ml-platform.serviceaccount.identity.linkerd.cluster.local")
    assert not decision.allowed
    assert decision.reason == UNAUTHORIZED_ROUTE == "unauthorized request on route"
    assert decision.detail == (f"client '{WEB}' is not authorized to access server "
                               "'echo.ml-platform.serviceaccount.identity.linkerd.cluster.local'")
    assert "without a certificate" in ServerPolicy("deny").check(NO_CERT).detail


def test_spiffe_denied_by_wildcard_explains_why() -> None:
    detail = ServerPolicy("deny", ["*"]).check(mtls(SPIFFE)).detail
    assert "wildcards never match SPIFFE identities" in detail


def test_allowed_decision_names_the_authorization() -> None:
    policy = ServerPolicy("all-unauthenticated", [ML_TEAM])
    assert policy.check(mtls(NOTEBOOK)).authorization == "meshtls"
    assert policy.check(PLAINTEXT).authorization == "default:all-unauthenticated"


def test_extra_authorizations_with_networks() -> None:
    policy = ServerPolicy("deny", authorizations=[
        Authorization.unauthenticated(name="probes", networks=["192.0.2.0/24"]),
        Authorization.tls_unauthenticated(name="any-tls", networks=["198.51.100.0/24"]),
        Authorization.mesh_tls([WEB], networks=["203.0.113.0/24"]),
    ])
    assert policy.check(ClientInfo("192.0.2.7", False)).authorization == "probes"
    assert policy.check(ClientInfo("198.51.100.7", True)).allowed
    assert not policy.check(ClientInfo("198.51.100.7", False)).allowed
    assert policy.check(mtls(WEB, "203.0.113.5")).allowed
    assert not policy.check(mtls(WEB, "127.0.0.1")).allowed


def test_from_config_and_back() -> None:
    policy = ServerPolicy.from_config({"default": "deny", "allow": [ML_TEAM]})
    assert policy == ServerPolicy(AccessPolicy.DENY, [ML_TEAM])
    assert policy.to_config() == {"access": "deny", "allow": [ML_TEAM]}
    assert ServerPolicy.from_config("all-authenticated").access is AccessPolicy.ALL_AUTHENTICATED
    assert ServerPolicy.from_config(None).access is AccessPolicy.ALL_UNAUTHENTICATED
    assert ServerPolicy.from_config(policy) is policy
    assert ServerPolicy("deny", ML_TEAM).allow == ServerPolicy("deny", [ML_TEAM]).allow  # one string is one pattern
    assert repr(policy) == f"ServerPolicy('deny', allow=['{ML_TEAM}'])"


@pytest.mark.parametrize(
    "bad",
    [
        lambda: ServerPolicy("allow-everyone"),
        lambda: ServerPolicy("deny", ["spiffe://cluster.local/ns/*"]),
        lambda: ServerPolicy("deny", ["ml-team.*"]),
        lambda: ServerPolicy.from_config({"access": "deny", "alow": []}),
        lambda: ServerPolicy("deny", cluster_networks=["not-a-cidr"]),
        lambda: Authorization.mesh_tls([]),
    ],
)
def test_invalid_configuration_is_refused(bad: object) -> None:
    with pytest.raises((ConfigurationError, ValueError)):
        bad()  # type: ignore[operator]


def test_policy_is_immutable() -> None:
    policy = ServerPolicy("deny")
    with pytest.raises(AttributeError):
        policy.access = AccessPolicy.ALL_UNAUTHENTICATED  # type: ignore[misc]
