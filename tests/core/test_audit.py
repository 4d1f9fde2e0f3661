"""Audit events: the module's pieces (redaction, trace context, sinks), then one event per request
through a real client against the fault server, for every outcome — and never a secret in an
event or a log line."""

from __future__ import annotations

import base64
import json
import logging
import os
import pickle
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fault_server import CloseWithoutAnswer, FaultServer, ResetMidResponse, Respond, Stall

from meshclient import Credentials, MeshClient
from meshclient.audit import (
    AuditEvent,
    FileAuditSink,
    LoggingAuditSink,
    TraceContext,
    as_audit_sink,
)
from meshclient.errors import MeshError
from meshclient.policy import EgressPolicy
from meshclient.redaction import redact_url
from meshclient.tokens import StaticToken
from meshclient.transport.retry import RetryPolicy
from meshclient_sandbox.pki import IssuedLeaf
from meshclient_sandbox.tls import build_server_context

CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"  # tests/conftest.py's identities
SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


# -- redaction and trace context ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://10.0.0.1:8443/p?api_key=SECRET&x=1", "https://10.0.0.1:8443/p?api_key=...&x=..."),
        ("https://user:pw@svc.ns:443/a/b", "https://svc.ns:443/a/b"),
        ("https://[fd00::1]:8443/x?token=abc", "https://[fd00::1]:8443/x?token=..."),
        ("https://svc/x?flag", "https://svc/x?flag=..."),
        ("https://svc/x#frag=secret", "https://svc/x"),
        ("https://svc/x?a=1&a=2&&b=", "https://svc/x?a=...&a=...&b=..."),
        ("", ""),
        (None, ""),
    ],
)
def test_redact_url(url: str | None, expected: str) -> None:
    assert redact_url(url) == expected


def test_trace_context_propagates_a_valid_traceparent() -> None:
    ctx = TraceContext.from_headers({"traceparent": TRACEPARENT})
    assert ctx.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert ctx.parent_id != "00f067aa0ba902b7"  # our own span id
    assert ctx.header.startswith("00-4bf92f3577b34da6a3ce929d0e0e4736-")
    assert ctx.header.endswith("-01")


@pytest.mark.parametrize(
    "value",
    [None, "", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
     "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01", "00-4bf92f35-00f067aa0ba902b7-01"],
)
def test_trace_context_is_created_when_missing_or_invalid(value: str | None) -> None:
    headers = {} if value is None else {"traceparent": value}
    ctx = TraceContext.from_headers(headers)
    assert len(ctx.trace_id) == 32 and int(ctx.trace_id, 16) != 0
    assert len(ctx.parent_id) == 16
    assert TraceContext.from_headers(headers).trace_id != ctx.trace_id  # random each time


def _event(**overrides: Any) -> AuditEvent:
    fields: dict[str, Any] = dict(
        time="2026-01-01T00:00:00.000Z", client_identity=CLIENT_ID, server_identity=SERVER_ID,
        verified_server_identity=SERVER_ID, token_subject="svc", method="GET", url="https://svc/x",
        status=200, bytes_sent=0, bytes_received=2, duration_ms=1.5, attempts=1, idempotency_key=None,
        trace_id="4bf92f3577b34da6a3ce929d0e0e4736", outcome="ok",
    )
    fields.update(overrides)
    return AuditEvent(**fields)


def test_event_serialises_to_one_json_object() -> None:
    event = _event()
    data = json.loads(event.to_json())
    assert data == event.to_dict()
    assert "\n" not in event.to_json()
    assert AuditEvent.now().endswith("Z")


# -- sinks ---------------------------------------------------------------------------------------------------
def test_logging_sink_writes_json_on_meshclient_audit(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="meshclient.audit"):
        LoggingAuditSink()(_event())
    records = [r for r in caplog.records if r.name == "meshclient.audit"]
    assert len(records) == 1 and records[0].levelno == logging.INFO
    assert json.loads(records[0].getMessage())["outcome"] == "ok"


def test_file_sink_appends_json_lines_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "audit.jsonl"
    old = os.umask(0)  # even with a permissive umask
    try:
        sink = FileAuditSink(path)
    finally:
        os.umask(old)
    try:
        threads = [threading.Thread(target=lambda: [sink(_event(attempts=i)) for i in range(50)]) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    finally:
        sink.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = path.read_text().splitlines()
    assert len(lines) == 200
    assert all(json.loads(line)["client_identity"] == CLIENT_ID for line in lines)
    again = FileAuditSink(path)  # appends, never truncates
    again(_event())
    again.close()
    assert len(path.read_text().splitlines()) == 201


def test_file_sink_pickles_as_its_path(tmp_path: Path) -> None:
    sink = FileAuditSink(tmp_path / "audit.jsonl")
    copy = pickle.loads(pickle.dumps(sink))
    try:
        copy(_event())
        assert copy.path == sink.path
    finally:
        copy.close()
        sink.close()
    assert len((tmp_path / "audit.jsonl").read_text().splitlines()) == 1


def test_as_audit_sink(tmp_path: Path) -> None:
    assert as_audit_sink(None) is None
    assert as_audit_sink(False) is None
    assert isinstance(as_audit_sink(True), LoggingAuditSink)
    assert isinstance(as_audit_sink("logging"), LoggingAuditSink)
    assert isinstance(as_audit_sink(logging.getLogger("x")), LoggingAuditSink)
    file_sink = as_audit_sink(str(tmp_path / "a.jsonl"))
    assert isinstance(file_sink, FileAuditSink)
    file_sink.close()
    assert as_audit_sink(print) is print
    with pytest.raises(TypeError):
        as_audit_sink(42)  # type: ignore[arg-type]


# -- through the client --------------------------------------------------------------------------------------
@pytest.fixture
def server(server_creds: Credentials) -> Iterator[FaultServer]:
    with FaultServer(build_server_context(server_creds)) as s:
        yield s


@pytest.fixture
def audited(client_creds: Credentials) -> Iterator[Callable[..., tuple[MeshClient, list[AuditEvent]]]]:
    clients: list[MeshClient] = []

    def make(events: list[AuditEvent] | None = None, **kwargs: Any) -> tuple[MeshClient, list[AuditEvent]]:
        events = [] if events is None else events
        kwargs.setdefault("retries", RetryPolicy(min_backoff=0.001, max_backoff=0.002))
        kwargs.setdefault("timeout", (5.0, 5.0))
        client = MeshClient(client_creds, audit=events.append, **kwargs)
        clients.append(client)
        return client, events

    yield make
    for client in clients:
        client.close()


def test_one_event_per_request_with_both_identities_and_the_facts(server: FaultServer, audited: Any) -> None:
    client, events = audited(token=StaticToken("opaque-token-value", subject="svc-notebook"))
    server.push(Respond(503), Respond(201, body=b"x" * 123))
    response = client.post(f"{server.url}/results?dataset=a", data=b"y" * 456,
                           headers={"Idempotency-Key": "run-7-part-3", "traceparent": TRACEPARENT},
                           server_identity=SERVER_ID)
    assert response.status_code == 201
    assert len(events) == 1
    e = events[0]
    assert e.client_identity == CLIENT_ID
    assert e.server_identity == SERVER_ID
    assert e.verified_server_identity == SERVER_ID
    assert e.token_subject == "svc-notebook"
    assert (e.method, e.url, e.status, e.outcome, e.error) == ("POST", f"{server.url}/results?dataset=...", 201, "ok",
                                                               None)
    assert (e.bytes_sent, e.bytes_received) == (456, 123)
    assert e.attempts == 2
    assert e.idempotency_key == "run-7-part-3"
    assert e.trace_id == "4bf92f3577b34da6a3ce929d0e0e4736"  # propagated from the incoming traceparent
    assert e.endpoint == server.address
    assert e.duration_ms >= 0
    assert all(r.headers["traceparent"].split("-")[1] == e.trace_id for r in server.requests)


def test_trace_id_is_created_and_sent_when_there_is_none(server: FaultServer, audited: Any) -> None:
    client, events = audited()
    client.get(f"{server.url}/x", server_identity=SERVER_ID)
    client.get(f"{server.url}/x", server_identity=SERVER_ID)
    sent = [r.headers["traceparent"] for r in server.requests]
    assert [h.split("-")[1] for h in sent] == [e.trace_id for e in events]
    assert events[0].trace_id != events[1].trace_id
    assert all(len(e.trace_id) == 32 for e in events)


def _unused_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_outcomes(server: FaultServer, audited: Any, server_creds: Credentials) -> None:
    client, events = audited(timeout=(5.0, 0.3))
    url = f"{server.url}/x"

    server.push(Respond(404))
    assert client.get(url, server_identity=SERVER_ID).status_code == 404
    server.push(Respond.with_headers(403, {"l5d-proxy-error": "unauthorized request on route"}))
    assert client.get(url, server_identity=SERVER_ID).status_code == 403
    server.push(Stall())
    with pytest.raises(MeshError):
        client.get(url, server_identity=SERVER_ID, retry=False)
    server.push(Stall())
    with pytest.raises(MeshError):
        client.get(url, server_identity=SERVER_ID, deadline=0.2)
    server.push(ResetMidResponse())
    with pytest.raises(MeshError):
        client.post(url, data=b"z", server_identity=SERVER_ID)
    with pytest.raises(MeshError):
        client.get(f"https://127.0.0.1:{_unused_port()}/x", server_identity=SERVER_ID)
    with pytest.raises(MeshError):  # a server without the direct-mode ALPN
        client.get("https://127.0.0.1:8080/x", server_identity=SERVER_ID, direct=server.address)
    with pytest.raises(MeshError):  # the right mesh, the wrong workload
        client.get(url, server_identity="other.ml-platform.serviceaccount.identity.linkerd.cluster.local")
    denied, denied_events = audited(policy=EgressPolicy(allow=["*.ml-serving.serviceaccount.identity.linkerd.cluster.local"]))
    with pytest.raises(MeshError):
        denied.get(url, server_identity=SERVER_ID)

    assert [e.outcome for e in events] == [
        "http_error", "policy_denied", "timeout", "deadline_exceeded", "transport_error", "connect_error",
        "tls_error", "server_identity_mismatch",
    ]
    assert [e.status for e in events] == [404, 403, None, None, None, None, None, None]
    assert [e.error for e in events][2:] == ["MeshTimeoutError", "DeadlineExceededError", "TransportError",
                                             "ConnectError", "TLSHandshakeError", "ServerIdentityError"]
    assert [e.outcome for e in denied_events] == ["egress_denied"]
    assert denied_events[0].error == "EgressDeniedError"
    for e in events + denied_events:
        assert e.client_identity == CLIENT_ID
        assert e.server_identity in (SERVER_ID, "other.ml-platform.serviceaccount.identity.linkerd.cluster.local")
    assert [e.verified_server_identity for e in events[:2]] == [SERVER_ID, SERVER_ID]


# -- no secret anywhere, ever ------------------------------------------------------------------------------
QUERY_SECRET = "SECRETVALUE-q7"
TOKEN_SECRET = "TOKENSECRET-t9"
HEADER_SECRET = "HEADERSECRET-h3"
PASSWORD_SECRET = "PASSWORDVALUE-p1"


def _secrets(client_leaf: IssuedLeaf) -> list[str]:
    key_lines = [line for line in client_leaf.key_pem.decode().splitlines() if line and "-----" not in line]
    basic = base64.b64encode(f"user:{PASSWORD_SECRET}".encode()).decode()
    return [QUERY_SECRET, TOKEN_SECRET, HEADER_SECRET, PASSWORD_SECRET, basic, *key_lines]


def _exercise(server: FaultServer, client: MeshClient, userinfo_client: MeshClient) -> list[str]:
    """Requests over every path that writes an event or a log line; returns the error texts."""
    errors: list[str] = []
    q = f"api_key={QUERY_SECRET}&page=2"
    headers = {"X-Api-Key": HEADER_SECRET}
    server.push(Respond(503), Respond(200))  # a retry (debug log line)
    client.get(f"{server.url}/a?{q}", headers=headers, server_identity=SERVER_ID)
    server.push(Respond(401))  # the 401 path with a token provider
    client.get(f"{server.url}/b?{q}", headers=headers, server_identity=SERVER_ID)
    server.push(Stall())
    server.push(CloseWithoutAnswer(rst=True))
    for path in ("/c", "/d"):
        try:
            client.post(f"{server.url}{path}?{q}", data=b"body", headers=headers, server_identity=SERVER_ID)
        except MeshError as exc:
            errors.append(str(exc))
    host = server.url.removeprefix("https://")
    try:  # userinfo is refused before anything is sent (a mesh identity is the credential)
        userinfo_client.get(f"https://user:{PASSWORD_SECRET}@{host}/e?{q}", server_identity=SERVER_ID)
    except MeshError as exc:
        errors.append(str(exc))
    else:
        raise AssertionError("a URL with userinfo was sent")
    try:
        client.get(f"https://127.0.0.1:{_unused_port()}/f?{q}", headers=headers, server_identity=SERVER_ID)
    except MeshError as exc:
        errors.append(str(exc))
    errors.append(repr(client))
    return errors


@pytest.fixture
def secret_clients(audited: Any) -> tuple[MeshClient, MeshClient, list[AuditEvent]]:
    client, events = audited(timeout=(5.0, 0.3), token=StaticToken(TOKEN_SECRET, subject="svc-notebook"))
    userinfo_client, _ = audited(events, timeout=(5.0, 0.3))  # no token: the URL's userinfo is its auth
    return client, userinfo_client, events


def test_no_secret_in_any_audit_event_or_error(
    server: FaultServer, secret_clients: Any, client_leaf: IssuedLeaf
) -> None:
    client, userinfo_client, events = secret_clients
    errors = _exercise(server, client, userinfo_client)
    assert len(events) == 5  # the userinfo URL is refused before any request, so it has no event
    assert server.requests[0].headers["authorization"] == f"Bearer {TOKEN_SECRET}"  # it was really sent
    assert QUERY_SECRET in server.requests[0].target
    for text in [json.dumps(e.to_dict()) for e in events] + [e.to_json() for e in events] + errors:
        for secret in _secrets(client_leaf):
            assert secret not in text


def test_no_secret_in_meshclients_debug_logs(
    server: FaultServer, secret_clients: Any, client_leaf: IssuedLeaf, caplog: pytest.LogCaptureFixture
) -> None:
    client, userinfo_client, _ = secret_clients
    with caplog.at_level(logging.DEBUG):
        _exercise(server, client, userinfo_client)
    own = "\n".join(r.getMessage() for r in caplog.records if r.name.startswith("meshclient"))
    assert "retrying GET" in own  # the debug lines were there to be checked
    for secret in _secrets(client_leaf):
        assert secret not in own


def test_no_secret_in_any_debug_log_line(
    server: FaultServer, secret_clients: Any, client_leaf: IssuedLeaf, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression (transport/connections.py): urllib3's ``urllib3.connectionpool`` logger writes, at DEBUG, every
    request line of the mesh pools with its full query string — ``https://127.0.0.1:PORT "GET
    /a?api_key=SECRETVALUE... HTTP/1.1" 200 2`` — so a notebook that turns on DEBUG logging leaks
    query secrets through meshclient requests. Fix: in adapter.py, install once (at import) a
    ``logging.Filter`` on ``logging.getLogger("urllib3.connectionpool")`` that, for records whose
    ``msg`` is urllib3's request-line format (``'%s://%s:%s "%s %s %s" %s %s'``), replaces
    ``record.args[4]`` (the request target) with its query values redacted, as ``redact_url``
    does; return True so the line is still logged."""
    client, userinfo_client, _ = secret_clients
    with caplog.at_level(logging.DEBUG):
        _exercise(server, client, userinfo_client)
    text = caplog.text + "\n".join(r.getMessage() for r in caplog.records)
    for secret in _secrets(client_leaf):
        assert secret not in text


def test_client_writes_an_audit_file_0600(server: FaultServer, client_creds: Credentials, tmp_path: Path) -> None:
    path = tmp_path / "audit" / "meshclient.jsonl"
    path.parent.mkdir()
    with MeshClient(client_creds, audit=str(path)) as client:
        for _ in range(3):
            client.get(f"{server.url}/x?k=v", server_identity=SERVER_ID)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(rows) == 3
    assert {r["outcome"] for r in rows} == {"ok"}
    assert {r["url"] for r in rows} == {f"{server.url}/x?k=..."}


def test_a_failing_audit_sink_does_not_fail_the_request(
    server: FaultServer, client_creds: Credentials, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: AuditEvent) -> None:
        raise RuntimeError("disk full")

    with MeshClient(client_creds, audit=broken) as client, caplog.at_level(logging.ERROR, logger="meshclient"):
        assert client.get(f"{server.url}/x", server_identity=SERVER_ID).status_code == 200
    assert "audit sink raised" in caplog.text
