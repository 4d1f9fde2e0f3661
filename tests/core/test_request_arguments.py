"""Bad input to ``MeshClient`` and its requests: a clear ``MeshError`` at the call that receives
it, naming the argument, never quoting a secret (query value, token, password) — not in the
message, not in the chained context a traceback or Databricks' error display would print.
(Issue 10 items 1, 3, 4, 5, 10, 12, 13, 15.)"""

from __future__ import annotations

import ipaddress
import pickle
import socket
import traceback
from collections.abc import Iterator
from typing import Any

import pytest
import urllib3
from fault_server import FaultServer

from meshclient import Credentials, MeshClient, RetryPolicy
from meshclient.errors import ArgumentTypeError, ConfigurationError, ConnectError, MeshError
from meshclient.transport.address import parse_address
from meshclient_sandbox.tls import build_server_context

SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
SECRET = "SECRETVALUE-z8"


def _everything_shown(exc: BaseException) -> str:
    """What a traceback with the whole chain (and Databricks' display) would show."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=True)) + repr(exc)


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def client(client_creds: Credentials) -> Iterator[MeshClient]:
    with MeshClient(client_creds, timeout=(2.0, 5.0), retries=RetryPolicy(min_backoff=0.001, max_backoff=0.002)) as c:
        yield c


@pytest.fixture
def server(server_creds: Credentials) -> Iterator[FaultServer]:
    with FaultServer(build_server_context(server_creds)) as s:
        yield s


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection to a non-loopback address fails the test instead of dialling out."""
    real = urllib3.util.connection.create_connection

    def guarded(address: tuple[str, int], *args: Any, **kwargs: Any) -> socket.socket:
        if address[0] != "localhost" and not ipaddress.ip_address(address[0]).is_loopback:
            raise AssertionError(f"the test tried to connect to {address[0]}")
        return real(address, *args, **kwargs)

    monkeypatch.setattr(urllib3.util.connection, "create_connection", guarded)


# -- URLs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("url", [
    f"https://127.0.0.1:99999/q?api_key={SECRET}",
    f"https://[::1/q?api_key={SECRET}",
    f"https://h:abc/q?api_key={SECRET}",
    f"https://exa mple.com/q?api_key={SECRET}",
    f"https://127.0.0.1:0/q?api_key={SECRET}",
    f"http://127.0.0.1:8080/q?api_key={SECRET}",
    f"https://alice:{SECRET}@127.0.0.1:8443/q",
    f"localhost:8080/health?api_key={SECRET}",
    f"https://1234/q?api_key={SECRET}",
    "",
])
def test_a_bad_url_is_a_configuration_error_that_quotes_no_secret(client: MeshClient, url: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        client.get(url, server_identity=SERVER_ID)
    shown = _everything_shown(info.value)
    assert SECRET not in shown
    assert info.value.__context__ is None and info.value.__cause__ is None


def test_a_scheme_less_url_is_named_as_such(client: MeshClient) -> None:
    with pytest.raises(ConfigurationError) as info:
        client.get("localhost:8080/health", server_identity=SERVER_ID)
    assert "localhost://" not in str(info.value)
    assert "https://localhost:8080/health" in str(info.value)  # the fix, spelled out


def test_userinfo_is_refused_not_sent_as_basic_auth(client: MeshClient, server: FaultServer) -> None:
    host = server.url.removeprefix("https://")
    with pytest.raises(ConfigurationError, match="user information"):
        client.get(f"https://alice:{SECRET}@{host}/x", server_identity=SERVER_ID)
    assert server.attempts() == 0


def test_a_url_that_is_not_a_string_is_named(client: MeshClient) -> None:
    with pytest.raises(ConfigurationError, match="must be a string"):
        client.get(b"https://127.0.0.1/", server_identity=SERVER_ID)  # type: ignore[arg-type]


# -- headers and bodies ------------------------------------------------------------------------
@pytest.mark.parametrize("value", [f"Bearer {SECRET}\n", f"Bearer {SECRET}\r\nX-Evil: 1", f" {SECRET}", f"{SECRET}\x00"])
def test_a_header_value_with_a_line_break_is_refused_without_the_value(client: MeshClient, server: FaultServer,
                                                                       value: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        client.get(f"{server.url}/x", server_identity=SERVER_ID, headers={"Authorization": value})
    assert "'Authorization'" in str(info.value)
    assert SECRET not in _everything_shown(info.value)
    assert server.attempts() == 0


@pytest.mark.parametrize("headers", ["x", ["a", "b"], {"X-Count": 3}, {"": "v"}, {"Bad Name": "v"}])
def test_headers_of_the_wrong_shape_are_refused(client: MeshClient, headers: Any) -> None:
    with pytest.raises(ConfigurationError, match="headers="):
        client.get("https://127.0.0.1:8443/x", server_identity=SERVER_ID, headers=headers)


def test_json_with_nan_is_refused(client: MeshClient, server: FaultServer) -> None:
    with pytest.raises(ConfigurationError, match="NaN"):
        client.post(f"{server.url}/x", server_identity=SERVER_ID, json={"x": float("nan")})
    assert server.attempts() == 0


def test_a_generator_body_yielding_ints_is_a_clear_error(client: MeshClient, server: FaultServer) -> None:
    with pytest.raises(ConfigurationError, match="yielded a int"):
        client.post(f"{server.url}/x", server_identity=SERVER_ID, data=(i for i in (1, 2, 3)))


def test_a_generator_body_of_bytes_and_str_is_streamed(client: MeshClient, server: FaultServer) -> None:
    r = client.post(f"{server.url}/x", server_identity=SERVER_ID, data=(c for c in (b"ab", "cd", b"")))
    assert r.status_code == 200
    assert server.wait_for(lambda s: s.bodies())
    assert server.bodies() == [b"abcd"]


# -- constructor arguments ---------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "name", "kind"), [
    ({"token": "abc"}, "token", ArgumentTypeError),
    ({"retries": 3}, "retries", ArgumentTypeError),
    ({"retry_budget": 0.2}, "retry_budget", ArgumentTypeError),
    ({"pool_maxsize": "10"}, "pool_maxsize", ArgumentTypeError),
    ({"pool_maxsize": 0}, "pool_maxsize", ConfigurationError),
    ({"deadline": -5}, "deadline", ConfigurationError),
    ({"deadline": float("inf")}, "deadline", ConfigurationError),
    ({"timeout": 0}, "timeout", ConfigurationError),
    ({"timeout": -1}, "timeout", ConfigurationError),
    ({"timeout": (1, 2, 3)}, "timeout", ConfigurationError),
    ({"timeout": "10"}, "timeout", ArgumentTypeError),
    ({"allow_tls12": "no"}, "allow_tls12", ArgumentTypeError),
    ({"headers": "x"}, "headers", ConfigurationError),
    ({"policy": ["*.ns"]}, "policy", ArgumentTypeError),
    ({"audit": 3}, "audit", ArgumentTypeError),
])
def test_constructor_arguments_are_checked_where_they_are_given(client_creds: Credentials, kwargs: dict[str, Any],
                                                                 name: str, kind: type[Exception]) -> None:
    with pytest.raises(kind) as info:
        MeshClient(client_creds, **kwargs)
    assert isinstance(info.value, MeshError)
    assert name in str(info.value)


def test_type_errors_are_also_type_errors(client_creds: Credentials) -> None:
    with pytest.raises(TypeError):
        MeshClient(client_creds, retries=3)  # type: ignore[arg-type]


def test_credentials_of_the_wrong_type_are_named(client_creds: Credentials) -> None:
    with pytest.raises(ArgumentTypeError, match="credentials"):
        MeshClient("tls.crt")  # type: ignore[arg-type]


# -- request arguments -------------------------------------------------------------------------
@pytest.mark.parametrize(("kwargs", "name"), [
    ({"timeout": 0}, "timeout"),
    ({"timeout": (1, -1)}, "timeout"),
    ({"deadline": 0}, "deadline"),
    ({"server_name": 123}, "server_name"),
    ({"endpoints": "127.0.0.1:1"}, "endpoints"),
    ({"endpoints": [1234]}, "endpoint"),
    ({"stream": "yes"}, "stream"),
    ({"retry": 1}, "retry"),
    ({"direct": 1234}, "direct"),
])
def test_request_arguments_are_checked_before_anything_is_sent(client: MeshClient, server: FaultServer,
                                                              kwargs: dict[str, Any], name: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        client.get(f"{server.url}/x", server_identity=SERVER_ID, **kwargs)
    assert name in str(info.value)
    assert server.attempts() == 0


def test_an_int_direct_address_is_never_dialled_as_an_ip(client: MeshClient, loopback_only: None) -> None:
    """``direct=1234`` once became the host '1234', i.e. 0.0.4.210."""
    for bad in (1234, "1234", "1234:4143", "10.0.3", "host:", "[::1", "[::1]x", "::1:4143", "h:99999", "h:-1"):
        with pytest.raises(ConfigurationError):
            client.get("https://127.0.0.1:8443/x", server_identity=SERVER_ID, direct=bad)  # type: ignore[arg-type]


def test_parse_address_never_returns_a_dialable_surprise() -> None:
    """Property: anything parse_address accepts is a real host and a port in range (or it raises)."""
    hypothesis = pytest.importorskip("hypothesis")
    st = hypothesis.strategies

    @hypothesis.given(st.one_of(st.text(max_size=40), st.integers(), st.none(), st.binary(max_size=10),
                                st.from_regex(r"\[?[0-9a-f:.]{0,20}\]?(:[0-9]{0,6})?", fullmatch=True)))
    @hypothesis.settings(max_examples=400, deadline=None)
    def check(value: object) -> None:
        try:
            host, port = parse_address(value, 4143)
        except ConfigurationError:
            return
        assert isinstance(value, str)
        assert 0 < port < 65536
        try:
            ipaddress.ip_address(host)
        except ValueError:  # a name: never all digits, which a resolver would read as an IPv4 address
            assert any(not label.isdigit() for label in host.split("."))

    check()


# -- chained context ----------------------------------------------------------------------------
def test_a_transport_error_carries_no_url_query_in_its_chain(client: MeshClient) -> None:
    url = f"https://127.0.0.1:{_unused_port()}/f?api_key={SECRET}"
    with pytest.raises(ConnectError) as info:
        client.get(url, server_identity=SERVER_ID)
    assert info.value.__context__ is None and info.value.__cause__ is None
    assert SECRET not in _everything_shown(info.value)


def test_a_dns_failure_is_named_as_one(client: MeshClient, monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib3 2.x raises NameResolutionError (a NewConnectionError), 1.26 a NewConnectionError
    wrapping socket.gaierror: both must read "could not resolve", not "the connection broke"."""
    real = socket.getaddrinfo

    def resolver(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "no-such-service.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    with pytest.raises(ConnectError, match="Could not resolve"):
        client.get("https://no-such-service.invalid:8443/x", server_identity=SERVER_ID)


# -- pickling ------------------------------------------------------------------------------------
def test_a_client_does_not_pickle_and_says_what_to_use(client: MeshClient) -> None:
    with pytest.raises(ConfigurationError, match="spark.share"):
        pickle.dumps(client)


def test_a_config_pickles_and_rebuilds_a_client(client: MeshClient, server: FaultServer) -> None:
    config = pickle.loads(pickle.dumps(client.config()))
    with MeshClient.from_config(config) as again:
        assert again.get(f"{server.url}/x", server_identity=SERVER_ID).status_code == 200
