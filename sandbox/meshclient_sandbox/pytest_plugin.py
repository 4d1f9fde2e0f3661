"""The sandbox's pytest plugin (entry point ``pytest11``: active wherever meshclient-sandbox is installed).

* ``mesh_sandbox``: a started :class:`~meshclient_sandbox.runner.Sandbox`, one per test session;
  ``mesh_sandbox.info`` is the ``sandbox.json`` document.
* Peers decided in one place. ``nginx_binary`` / ``stunnel_binary`` give the binary's path, and the
  markers ``@pytest.mark.nginx`` / ``@pytest.mark.stunnel`` say a test needs it. Wherever a peer is
  started without either, its :class:`~meshclient_sandbox.nginx.PeerUnavailable` is turned into a
  skip too, so no test can forget. ``MESHCLIENT_SANDBOX_HIDE_PEERS=1`` hides installed peers (check
  the suite on a machine without them); ``MESHCLIENT_REQUIRE_PEERS=1`` (CI) makes a missing peer fail.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from .nginx import PeerUnavailable, find_nginx
from .runner import Sandbox
from .stunnel import find_stunnel

__all__ = ["mesh_sandbox", "nginx_binary", "stunnel_binary", "REQUIRE_PEERS_ENV"]

#: set to 1 (CI does) to fail, not skip, a test whose peer is missing
REQUIRE_PEERS_ENV = "MESHCLIENT_REQUIRE_PEERS"
_INSTALL = {"nginx": "apt-get install nginx-light", "stunnel": "apt-get install stunnel4"}


def _required() -> bool:
    return os.environ.get(REQUIRE_PEERS_ENV, "").strip() not in ("", "0")


def _missing(name: str, why: str) -> None:
    message = f"{why} (Debian: {_INSTALL[name]})" if name in _INSTALL else why
    if _required():
        pytest.fail(f"{message}; {REQUIRE_PEERS_ENV} is set, so this is a failure, not a skip", pytrace=False)
    pytest.skip(message)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "nginx: needs nginx from Debian (skipped when missing)")
    config.addinivalue_line("markers", "stunnel: needs stunnel from Debian (skipped when missing)")


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("nginx") is not None and find_nginx() is None:
        _missing("nginx", "nginx is not installed")
    if item.get_closest_marker("stunnel") is not None and find_stunnel() is None:
        _missing("stunnel", "stunnel is not installed")


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    try:
        return (yield)
    except PeerUnavailable as exc:  # a test (or a helper it called) started a peer that is not there
        _missing("", str(exc))
        raise


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: pytest.FixtureDef[object], request: pytest.FixtureRequest
                         ) -> Generator[None, object, object]:
    try:
        return (yield)
    except PeerUnavailable as exc:  # a fixture started a peer that is not there
        _missing("", str(exc))
        raise


@pytest.fixture(scope="session")
def nginx_binary() -> str:
    """Path of nginx; skips the test when it is not installed."""
    found = find_nginx()
    if found is None:
        _missing("nginx", "nginx is not installed")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def stunnel_binary() -> str:
    """Path of stunnel; skips the test when it is not installed."""
    found = find_stunnel()
    if found is None:
        _missing("stunnel", "stunnel is not installed")
    assert found is not None
    return found


@pytest.fixture(scope="session")
def mesh_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """A running sandbox mesh for the whole test session, stopped at the end."""
    with Sandbox(tmp_path_factory.mktemp("mesh-sandbox")) as sandbox:
        yield sandbox
