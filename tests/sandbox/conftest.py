"""Fixtures for the sandbox identity-provider tests: servers, a fake clock, a clean SDK env."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from meshclient_sandbox.oidc import OIDCIssuer
from meshclient_sandbox.workspace import WorkspaceEmulator

_SERVER_THREAD_MARKERS = ("process_request_thread", "oidc-issuer", "workspace", "sandbox-http")


class FakeClock:
    """Epoch seconds under test control: token expiry without sleeping."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def server_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if any(m in t.name for m in _SERVER_THREAD_MARKERS)]


def socket_fds() -> set[str]:
    """Open socket fds of this process (Linux): proves stop() closed what it opened."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                out.add(fd)
        except OSError:
            pass
    return out


@pytest.fixture
def no_server_threads_left() -> Iterator[None]:
    """The test must leave no server thread behind (opt in with ``pytestmark``; not
    autouse, so modules with session-scoped servers in this directory are unaffected)."""
    before = set(server_threads())
    yield
    deadline = time.monotonic() + 5
    while set(server_threads()) - before and time.monotonic() < deadline:
        time.sleep(0.01)
    leaked = set(server_threads()) - before
    assert not leaked, f"server threads left behind: {[t.name for t in leaked]}"


class LeakProbe:
    """What the lifecycle tests inspect: server threads and socket fds of this process."""

    server_threads = staticmethod(server_threads)
    socket_fds = staticmethod(socket_fds)


@pytest.fixture
def leaks() -> type[LeakProbe]:
    return LeakProbe


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def issuer(clock: FakeClock) -> Iterator[OIDCIssuer]:
    with OIDCIssuer(clock=clock, token_lifetime=300) as srv:
        yield srv


@pytest.fixture
def sdk_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Keep the real databricks-sdk away from the developer's ``~/.databrickscfg``, any
    ``DATABRICKS_*`` / cloud variables and any HTTP proxy."""
    for name in list(os.environ):
        if name.startswith(("DATABRICKS_", "ARM_", "AZURE_", "GOOGLE_")) or name.lower() in (
            "http_proxy", "https_proxy", "all_proxy", "no_proxy", "requests_ca_bundle", "curl_ca_bundle",
        ):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DATABRICKS_CONFIG_FILE", str(tmp_path / "no-such-databrickscfg"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    return home


@pytest.fixture
def workspace(sdk_env: Path) -> Iterator[WorkspaceEmulator]:
    with WorkspaceEmulator() as ws:
        yield ws
