"""EgressPolicy: Linkerd's identity matching rules, and a refusal that happens before any
connection is opened (proved with a server that counts TCP connections and handshakes)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fault_server import FaultServer

from meshclient import Credentials, MeshClient
from meshclient.audit import AuditEvent
from meshclient.errors import ConfigurationError, EgressDeniedError, IdentityError, MeshError
from meshclient.policy import EgressPolicy
from meshclient_sandbox.tls import build_server_context

CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"  # tests/conftest.py's identities
SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
SERVING = "*.ml-serving.serviceaccount.identity.linkerd.cluster.local"
FRAUD = "fraud.ml-serving.serviceaccount.identity.linkerd.cluster.local"
FEATURES = "api.feature-store.serviceaccount.identity.linkerd.cluster.local"
SPIFFE = "spiffe://cluster.local/ns/feature-store/sa/api"


# -- matching ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("identity", "allowed"),
    [
        (FRAUD, True),
        ("scorer.ml-serving.serviceaccount.identity.linkerd.cluster.local", True),
        ("fraud.ml-serving.serviceaccount.identity.linkerd.other.domain", False),  # other trust domain
        ("fraud.ml-serving2.serviceaccount.identity.linkerd.cluster.local", False),
        ("fraud.xml-serving.serviceaccount.identity.linkerd.cluster.local", False),  # suffix, not label boundary
        (FEATURES, True),  # exact entry
        ("web.feature-store.serviceaccount.identity.linkerd.cluster.local", False),
        (SPIFFE, True),  # exact SPIFFE entry
        ("spiffe://cluster.local/ns/feature-store/sa/api2", False),
        ("spiffe://cluster.local/ns/ml-serving/sa/fraud", False),  # the DNS wildcard never covers SPIFFE
    ],
)
def test_matching(identity: str, allowed: bool) -> None:
    policy = EgressPolicy(allow=[SERVING, FEATURES, SPIFFE])
    assert policy.allows(identity) is allowed


def test_wildcard_matches_one_label_or_more() -> None:
    policy = EgressPolicy(allow=["*.cluster.local"])
    assert policy.allows(FRAUD)
    assert policy.allows(FEATURES)
    assert not policy.allows(SPIFFE)


def test_star_matches_every_dns_identity_but_no_spiffe_id() -> None:
    policy = EgressPolicy.allow_all()
    assert policy.allows(FRAUD)
    assert not policy.allows(SPIFFE)


def test_empty_allow_list_allows_nothing() -> None:
    policy = EgressPolicy(allow=[])
    assert not policy.allows(FRAUD)
    with pytest.raises(EgressDeniedError, match="allowed: nothing"):
        policy.check(FRAUD)


@pytest.mark.parametrize(
    "pattern",
    ["*.spiffe://cluster.local/ns/x", "spiffe://cluster.local/ns/*/sa/api", "fraud.*.serviceaccount.identity.linkerd.cluster.local",
     "*.*.serviceaccount.identity.linkerd.cluster.local", "*.ML-serving.serviceaccount.identity.linkerd.cluster.local"],
)
def test_invalid_patterns_are_refused_when_the_policy_is_built(pattern: str) -> None:
    with pytest.raises(IdentityError):
        EgressPolicy(allow=[pattern])


def test_one_string_instead_of_a_list_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="list"):
        EgressPolicy(allow=SERVING)  # type: ignore[arg-type]


def test_json_round_trip() -> None:
    policy = EgressPolicy(allow=[SERVING, SPIFFE])
    again = EgressPolicy.from_json(policy.to_json())
    assert again == policy
    assert again.allows(FRAUD)


@pytest.mark.parametrize("text", ["", "[]", '{"deny": []}', '{"allow": "x"}', "not json"])
def test_bad_json_is_a_configuration_error(text: str) -> None:
    with pytest.raises(ConfigurationError):
        EgressPolicy.from_json(text)


def test_refusal_names_both_identities() -> None:
    with pytest.raises(EgressDeniedError) as info:
        EgressPolicy(allow=[SERVING]).check(FEATURES, client_identity=CLIENT_ID)  # type: ignore[arg-type]
    text = str(info.value)
    assert f"'{CLIENT_ID}'" in text
    assert f"'{FEATURES}'" in text
    assert SERVING in text
    assert "No connection was opened" in text
    assert isinstance(info.value, MeshError)


# -- through the client, against a server that counts connections ---------------------------------
@pytest.fixture
def server(server_creds: Credentials) -> Iterator[FaultServer]:
    with FaultServer(build_server_context(server_creds)) as s:
        yield s


class CountingToken:
    def __init__(self) -> None:
        self.calls = 0

    def token(self) -> object:
        self.calls += 1

        class _T:
            value = "TOKEN-VALUE-NOT-FOR-DENIED-DESTINATIONS"
            subject = "svc-account"

        return _T()

    def invalidate(self) -> None:
        pass

    def on_unauthorized(self, authorization: str | None = None) -> bool:
        return False


def test_denied_request_opens_no_connection(server: FaultServer, client_creds: Credentials) -> None:
    events: list[AuditEvent] = []
    token = CountingToken()
    denied = MeshClient(client_creds, policy=EgressPolicy(allow=[SERVING]), audit=events.append, token=token)
    allowed = MeshClient(client_creds, policy=EgressPolicy(allow=["*.ml-platform.serviceaccount.identity.linkerd.cluster.local"]))
    try:
        for method in ("GET", "POST", "PUT"):
            with pytest.raises(EgressDeniedError) as info:
                denied.request(method, f"{server.url}/data?x=1", server_identity=SERVER_ID, data=b"payload")
            assert CLIENT_ID in str(info.value) and SERVER_ID in str(info.value)
        with pytest.raises(EgressDeniedError):
            denied.service(server.url, SERVER_ID, endpoints=[server.address]).get("/x")
        # A request that is allowed goes over a new TCP connection; a connection the denied
        # client had opened would have been queued (and accepted) before it.
        assert allowed.get(f"{server.url}/sentinel", server_identity=SERVER_ID).status_code == 200
    finally:
        denied.close()
        allowed.close()
    assert server.tcp_connections == 1
    assert server.handshakes == 1
    assert [r.path for r in server.requests] == ["/sentinel"]
    assert token.calls == 0  # no token is fetched for a destination the policy refuses
    assert [e.outcome for e in events] == ["egress_denied"] * 4
    assert all(e.attempts == 0 and e.status is None and e.verified_server_identity is None for e in events)
    assert all(e.client_identity == CLIENT_ID and e.server_identity == SERVER_ID for e in events)


def test_allowed_by_wildcard_reaches_the_server(server: FaultServer, client_creds: Credentials) -> None:
    with MeshClient(client_creds, policy=EgressPolicy(allow=["*.ml-platform.serviceaccount.identity.linkerd.cluster.local"])) as c:
        assert c.get(f"{server.url}/ok", server_identity=SERVER_ID).status_code == 200
    assert server.attempts(path="/ok") == 1


def test_allowed_by_exact_identity_reaches_the_server(server: FaultServer, client_creds: Credentials) -> None:
    with MeshClient(client_creds, policy=EgressPolicy(allow=[SERVER_ID])) as c:
        assert c.get(f"{server.url}/ok", server_identity=SERVER_ID).status_code == 200


def test_policy_must_be_an_egress_policy(client_creds: Credentials) -> None:
    with pytest.raises(ConfigurationError, match="EgressPolicy"):
        MeshClient(client_creds, policy=[SERVING])  # type: ignore[arg-type]
