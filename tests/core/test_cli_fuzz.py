"""Every subcommand's arguments fuzzed in-process: bad input is a usage error (exit 2) or a clear
``meshclient: error`` (exit 1), never an "internal error" or a traceback, and never echoes a
secret given in a header, a URL query or userinfo. Nothing may dial out: a guard on
``getaddrinfo`` and ``connect`` records any non-loopback target (an unvalidated int once
became the host 0.0.4.210) and refuses it, and the test fails on any such record."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from leak_scan import CANARY

from meshclient.cli.main import main

SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
ID = st.sampled_from([SERVER_ID, "BAD PATTERN", "", "spiffe://cluster.local/ns/a/sa/b", f"spiffe://x/y?k={CANARY}",
                      "a", "*.ml-team.serviceaccount.identity.linkerd.cluster.local", "ÉCHO.x.y", "-x"])
URLS = st.sampled_from([
    "https://127.0.0.1:1/x", f"https://127.0.0.1:99999/q?api_key={CANARY}", "https://[::1/x", "https://h:abc/x",
    "https://exa mple.com/x", "localhost:8080/health", f"https://alice:{CANARY}@127.0.0.1:1/", "https://127.0.0.1:0/",
    "https://10.0.3.7:8080/x", "ftp://127.0.0.1/x", "https://[::1]:1/x", "", "1234", "https://example.com/x",
    f"mesh+https://127.0.0.1:1/x?server_identity={SERVER_ID}&token={CANARY}",
])
NUMBERS = st.sampled_from(["-1", "0", "nan", "inf", "abc", "1e309", "", "0.001", "1", "99999999999999999999", "٣"])
DIRECT = st.sampled_from(["1234", "127.0.0.1:1", "[::1]:1", "h:abc", "127.0.0.1:99999", "", "::1", "0.0.4.210:4143"])
HEADERS = st.sampled_from([f"Authorization: Bearer {CANARY}\n", f"X-Key: {CANARY}\r\nInjected: 1", "no-colon",
                           ": empty-name", f"Host: {CANARY}.example.com", "X-Ok: fine"])
PATHS = st.sampled_from(["/nonexistent/file", "/proc/forbidden/x", "", ".", "/dev/null", "/tmp/missing-file"])
TEXT = st.text(max_size=12)


def _option(name: str, values: st.SearchStrategy[str]) -> st.SearchStrategy[list[str]]:
    return st.one_of(st.just([]), values.map(lambda v: [name, v]), TEXT.map(lambda v: [name, v]))


def _argv(head: list[str], *options: st.SearchStrategy[list[str]]) -> st.SearchStrategy[list[str]]:
    return st.tuples(*options).map(lambda parts: head + [a for part in parts for a in part])


MATERIAL = (_option("--cert", PATHS), _option("--key", PATHS), _option("--trust-anchors", PATHS))
COMMANDS = st.one_of(
    _argv(["request"], st.one_of(st.just([]), st.lists(st.sampled_from(["GET", "POST", "BREW", ""]), max_size=1)),
          URLS.map(lambda u: [u]), _option("--server-identity", ID), _option("--timeout", NUMBERS),
          _option("-H", HEADERS), _option("--direct", DIRECT), _option("--server-name", TEXT), *MATERIAL),
    _argv(["doctor"], _option("--target", URLS), _option("--server-identity", ID), _option("--timeout", NUMBERS),
          *MATERIAL),
    _argv(["push", "artifacts"], PATHS.map(lambda p: [p]), _option("--to", URLS), _option("--server-identity", ID),
          _option("--protocol", st.sampled_from(["put", "mlflow", "ftp"])), _option("--workers", NUMBERS),
          _option("--timeout", NUMBERS), *MATERIAL),
    _argv(["push", "results"], PATHS.map(lambda p: [p]), _option("--to", URLS), _option("--server-identity", ID),
          _option("--dataset", st.sampled_from(["scores", "../etc", "", "ü"])), _option("--batch-id", TEXT),
          _option("--format", st.sampled_from(["arrow", "xml"])), *MATERIAL),
    _argv(["pull", "artifacts"], URLS.map(lambda u: [u]), _option("--dest", PATHS), _option("--server-identity", ID),
          _option("--workers", NUMBERS), *MATERIAL),
    _argv(["score"], PATHS.map(lambda p: [p]), _option("--endpoint", URLS), _option("--server-identity", ID),
          _option("--out", PATHS), _option("--batch-size", NUMBERS), _option("--max-in-flight", NUMBERS),
          _option("--param", st.sampled_from(["k=1", "k", "=", f"k={CANARY}"])), *MATERIAL),
    _argv(["sandbox", "wait"], PATHS.map(lambda p: [p]), _option("--timeout", st.sampled_from(["-1", "0", "abc", "0.01"]))),
    _argv(["sandbox"], _option("--workdir", PATHS), _option("--host", st.sampled_from(["10.0.0.1", "0.0.0.0", "x"])),
          _option("--allow", ID)),
)


class LoopbackGuard:
    """Refuses (and records) any name lookup or connect that would leave the machine."""

    def __init__(self) -> None:
        self.outside: list[str] = []

    @staticmethod
    def _loopback(host: str) -> bool:
        if host in ("localhost", "localhost.localdomain"):
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def check(self, host: Any) -> None:
        if not self._loopback(str(host)):
            self.outside.append(str(host))
            raise OSError(113, f"test guard: no route to non-loopback host {host}")


@pytest.fixture
def guard(monkeypatch: pytest.MonkeyPatch) -> Iterator[LoopbackGuard]:
    g = LoopbackGuard()
    real_getaddrinfo, real_connect = socket.getaddrinfo, socket.socket.connect

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host is not None:
            try:
                g.check(host.decode() if isinstance(host, bytes) else host)
            except OSError as exc:
                raise socket.gaierror(socket.EAI_NONAME, str(exc)) from None
        return real_getaddrinfo(host, *args, **kwargs)

    def connect(self: socket.socket, address: Any) -> Any:
        if isinstance(address, tuple):
            g.check(address[0])
        return real_connect(self, address)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    monkeypatch.setattr(socket.socket, "connect", connect)
    for name in [n for n in __import__("os").environ if n.startswith(("MESHCLIENT_", "DATABRICKS_", "MESH_"))]:
        monkeypatch.delenv(name)
    yield g


@settings(max_examples=300, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=COMMANDS)
def test_no_bad_input_is_an_internal_error_or_leaks(argv: list[str], guard: LoopbackGuard,
                                                    capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    if argv[:1] == ["sandbox"] and argv[1:2] != ["wait"] and "--host" not in argv:
        argv = [*argv, "--host", "10.0.0.1"]  # a real sandbox would run until stopped: keep it a usage error
    if argv[:2] == ["sandbox", "wait"] and "--timeout" not in argv:
        argv = [*argv, "--timeout", "0.05"]  # nothing is running: don't wait the default minute
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse inside a subcommand
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert guard.outside == [], f"{argv}: tried to reach {guard.outside}"
    assert code in (0, 1, 2, 22), (argv, code, err)
    assert "internal error" not in err and "Traceback" not in err, (argv, err)
    assert CANARY not in out + err, argv
    if code in (1, 2):
        assert (out + err).strip(), f"{argv}: failed without saying why"


# With valid material a well-formed URL is really dialled: only loopback ones are generated here, and
# the guard catches what validation should have refused (an int taken for a host, a bad --direct).
LOCAL_URLS = URLS.filter(lambda u: "10.0.3.7" not in u and "example.com" not in u)
LOCAL_DIRECT = DIRECT.filter(lambda d: not d.startswith("0.0.4.210"))

WITH_MATERIAL = st.one_of(
    _argv(["request"], st.sampled_from([["GET"], ["POST"], ["DELETE"], ["GET"]]), LOCAL_URLS.map(lambda u: [u]),
          st.just(["--server-identity", SERVER_ID]), _option("--timeout", st.sampled_from(["0.5", "-1", "nan"])),
          _option("-H", HEADERS), _option("-H", HEADERS), _option("--direct", LOCAL_DIRECT), _option("-d", TEXT)),
    _argv(["doctor"], _option("--target", LOCAL_URLS), _option("--server-identity", ID),
          _option("--timeout", st.sampled_from(["0.5", "0"]))),
    _argv(["push", "artifacts", "/dev/null"], _option("--to", LOCAL_URLS), _option("--server-identity", ID),
          _option("--timeout", st.sampled_from(["0.5", "-1"]))),
    _argv(["score", "/nonexistent.parquet", "--out", "/nonexistent/out.parquet"], _option("--endpoint", LOCAL_URLS),
          _option("--server-identity", ID)),
)


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(argv=WITH_MATERIAL)
def test_with_valid_material_urls_directs_and_headers_fail_clearly(
        argv: list[str], guard: LoopbackGuard, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch, client_leaf: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    """With real material the URL, --direct and header checks are reached, and so is the network."""
    folder = tmp_path_factory.getbasetemp() / "fuzz-material"
    if not folder.exists():
        folder.mkdir()
        (folder / "tls.crt").write_bytes(client_leaf.chain_pem)
        (folder / "tls.key").write_bytes(client_leaf.key_pem)
        (folder / "ca.crt").write_bytes(client_leaf.trust_anchors_pem)
    monkeypatch.setenv("MESHCLIENT_CERT", str(folder / "tls.crt"))
    monkeypatch.setenv("MESHCLIENT_KEY", str(folder / "tls.key"))
    monkeypatch.setenv("MESHCLIENT_TRUST_ANCHORS", str(folder / "ca.crt"))
    try:
        code = main(argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 2
    out, err = capsys.readouterr()
    assert guard.outside == [], f"{argv}: tried to reach {guard.outside}"
    assert code in (0, 1, 2, 22), (argv, code, err)
    assert "internal error" not in err and "Traceback" not in err, (argv, err)
    assert CANARY not in out + err, argv
