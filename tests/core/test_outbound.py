"""The outbound-HTTP module: what its session sends and trusts, and its one retry loop.

Against a loopback stdlib HTTP server started here; clock, sleep and random are injected, so
nothing waits and nothing depends on the machine's speed.
"""

from __future__ import annotations

import pickle
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import requests

from meshclient._version import user_agent
from meshclient.outbound import (
    Cancelled,
    OutboundClient,
    OutboundRetryPolicy,
    OutboundSettings,
    Unreachable,
    new_session,
)


class Scripted(ThreadingHTTPServer):
    """Answers each request with the next (status, headers) of ``script`` (the last one repeats)."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.script: list[tuple[int, dict[str, str]]] = [(200, {})]
        self.seen: list[dict[str, str]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: Scripted

    def do_GET(self) -> None:
        self.server.seen.append(dict(self.headers))
        status, headers = self.server.script[min(len(self.server.seen), len(self.server.script)) - 1]
        self.send_response(status)
        for name, value in {**headers, "Content-Length": "2"}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def no_proxy_for_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Proxy variables apply to outbound calls: keep a developer's proxy away from loopback."""
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def server() -> Iterator[Scripted]:
    srv = Scripted()
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(10)


class Sleeps:
    def __init__(self, answer: bool = True) -> None:
        self.calls: list[float] = []
        self.answer = answer

    def __call__(self, seconds: float) -> bool:
        self.calls.append(seconds)
        return self.answer


POLICY = OutboundRetryPolicy(attempts=3, initial_backoff=0.5, jitter=0.5)


def test_the_session_sends_our_user_agent_and_never_netrc_credentials(
    server: Scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    netrc = tmp_path / "netrc"
    netrc.write_text("machine 127.0.0.1 login someone password netrc-password-0123\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    with requests.Session() as plain:  # requests' default would send the netrc credentials
        plain.get(server.url, timeout=10)
    assert server.seen[-1].get("Authorization", "").startswith("Basic ")
    http = OutboundClient()
    http.send_once("GET", server.url).close()
    http.close()
    assert "Authorization" not in server.seen[-1]
    assert server.seen[-1]["User-Agent"] == user_agent()


def test_a_redirect_is_handed_back_not_followed(server: Scripted) -> None:
    server.script = [(307, {"Location": server.url + "/elsewhere"})]
    reply = OutboundClient(OutboundSettings(retries=POLICY)).call("GET", server.url, what="probe", sleep=Sleeps())
    assert reply.response.status_code == 307 and len(server.seen) == 1


def test_retry_after_is_honoured_and_a_unicode_digit_falls_back_to_backoff(server: Scripted) -> None:
    server.script = [(503, {"Retry-After": "7"}), (503, {"Retry-After": "\u00b2"}), (200, {})]
    sleeps = Sleeps()
    reply = OutboundClient(OutboundSettings(retries=POLICY)).call(
        "GET", server.url, what="probe", sleep=sleeps, rand=lambda: 0.0
    )
    assert reply.response.status_code == 200 and reply.attempts == 3 and not reply.gave_up
    assert sleeps.calls == [7.0, POLICY.initial_backoff * POLICY.multiplier]


def test_a_retry_after_beyond_the_cap_gives_up_at_once(server: Scripted) -> None:
    server.script = [(429, {"Retry-After": "3600"})]
    sleeps = Sleeps()
    reply = OutboundClient(OutboundSettings(retries=POLICY)).call("GET", server.url, what="probe", sleep=sleeps)
    assert reply.gave_up and reply.retry_after == 3600.0 and reply.attempts == 1 and sleeps.calls == []


def test_retries_run_out_on_the_last_answer(server: Scripted) -> None:
    server.script = [(503, {})]
    sleeps = Sleeps()
    reply = OutboundClient(OutboundSettings(retries=POLICY)).call("GET", server.url, what="probe", sleep=sleeps)
    assert reply.gave_up and reply.response.status_code == 503 and reply.attempts == POLICY.attempts
    assert len(sleeps.calls) == POLICY.attempts - 1 and len(server.seen) == POLICY.attempts


def test_the_cancel_hook_stops_the_loop(server: Scripted) -> None:
    server.script = [(503, {})]
    with pytest.raises(Cancelled) as info:
        OutboundClient(OutboundSettings(retries=POLICY)).call("GET", server.url, what="probe", sleep=Sleeps(False))
    assert info.value.attempts == 1 and info.value.reason == "HTTP 503" and len(server.seen) == 1


def test_nothing_listening_is_unreachable_after_every_attempt() -> None:
    srv = Scripted()
    url = srv.url
    srv.server_close()  # the port is free again: connections are refused
    sleeps = Sleeps()
    with pytest.raises(Unreachable) as info:
        OutboundClient(OutboundSettings(retries=POLICY)).call("GET", url, what="probe", sleep=sleeps)
    assert info.value.attempts == POLICY.attempts and not info.value.verification
    assert info.value.detail.startswith("ConnectionError")


def test_settings_pickle_without_the_session(server: Scripted) -> None:
    http = OutboundClient(OutboundSettings(timeout=3.0, retries=POLICY))
    http.send_once("GET", server.url).close()
    copy = pickle.loads(pickle.dumps(http))
    assert copy.settings == http.settings and copy._session is None
    assert copy.settings.session_factory is new_session
    http.close()
