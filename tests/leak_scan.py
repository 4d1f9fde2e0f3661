"""Suite-wide leak scan (a pytest plugin loaded by tests/conftest.py).

Every test, whatever it tests, is also checked for secrets in what the library shows:

* every ``MeshError`` created during the test: its message, ``repr`` and every exception in its
  chain (``__cause__`` and ``__context__``, suppressed or not, with ``OSError`` file names);
* every record logged under ``meshclient`` (DEBUG and up), formatted with its chained ``exc_info``;
* the output the test read through ``capsys``/``capfd`` (CLI runs) and what it left uncaptured.

A secret is a private key (PEM header or a known key's base64 body), a JWT, a registered literal
(the sandbox's client secrets and tokens, keys of the suite's PKI) or a value marked with
:data:`CANARY` (tests put it into URL queries and headers to prove it never comes back).
Source lines of tracebacks are not scanned: they show the test's own code.
"""

from __future__ import annotations

import logging
import re
import traceback
from collections.abc import Iterator
from typing import Any

import pytest

from meshclient.errors import MeshError

#: tests embed this in secret-looking inputs (URL query values, header values) to trace leaks
CANARY = "c4n4ry5ecret"

_PATTERNS = {
    "a PEM private key": re.compile(r"-----BEGIN (?:ENCRYPTED |EC |RSA )?PRIVATE KEY-----"),
    "a JWT": re.compile(r"eyJ[A-Za-z0-9_-]{10,}\.eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]+"),
    "the test canary (a marked secret input)": re.compile(re.escape(CANARY)),
}
#: a URL with a query: meshclient shows query values as ``...`` (redaction.py), names kept
_URL_QUERY = re.compile(r"\w://[^\s'\"<>?]*\?([^\s'\"<>#]+)")
#: query names whose values are not secret (a server identity in a ``mesh+https`` URI)
_PUBLIC_QUERY_NAMES = {"server_identity"}
_literals: set[str] = set()
_errors: list[BaseException] = []  # held until the test ends: chains are set at raise time
_findings: list[str] = []


def register_secret(value: str | bytes | None) -> None:
    """Treat ``value`` as secret for the rest of the session (short values are ignored)."""
    if value is None:
        return
    text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
    if "PRIVATE KEY-----" in text:  # a PEM key: its base64 lines are what would leak
        for line in text.splitlines():
            if len(line) >= 40 and not line.startswith("-----"):
                _literals.add(line)
        return
    if len(text) >= 12:
        _literals.add(text)


def find_secrets(text: str) -> list[str]:
    """The kinds of secret found in ``text`` (never the secret itself)."""
    found = [name for name, pattern in _PATTERNS.items() if pattern.search(text)]
    for match in _URL_QUERY.finditer(text):
        for pair in match.group(1).split("&"):
            name, _, value = pair.partition("=")
            if value and value != "..." and name not in _PUBLIC_QUERY_NAMES:
                found.append("a URL query value")
    found += [f"registered secret of {len(s)} chars" for s in _literals if s in text]
    return found


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        stack += [x for x in (e.__cause__, e.__context__) if x is not None]


def _describe(exc: BaseException) -> str:
    parts = []
    for e in _chain(exc):
        parts += traceback.format_exception_only(type(e), e)
        parts.append(repr(e))
        for attr in ("filename", "filename2", "url", "token_url"):
            value = getattr(e, attr, None)
            if value is not None:
                parts.append(str(value))
    return "\n".join(parts)


class _ScanHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
            if record.exc_info and record.exc_info[1] is not None:
                text += "\n" + _describe(record.exc_info[1])
        except Exception as exc:  # a record that cannot be formatted is a finding of its own
            _findings.append(f"log record {record.name} could not be formatted: {type(exc).__name__}")
            return
        for kind in find_secrets(text):
            _findings.append(f"log record {record.name}/{record.levelname}: {kind}")


def _record_error(self: MeshError, *args: Any, **kwargs: Any) -> None:
    _original_init(self, *args, **kwargs)
    _errors.append(self)


_original_init = MeshError.__init__
_original_readouterr = pytest.CaptureFixture.readouterr


def _scanned_readouterr(self: Any) -> Any:
    result = _original_readouterr(self)
    for stream, text in (("stdout", result.out), ("stderr", result.err)):
        if isinstance(text, bytes):
            text = text.decode("utf-8", "replace")
        for kind in find_secrets(text):
            _findings.append(f"captured {stream}: {kind}")
    return result


def pytest_configure(config: pytest.Config) -> None:
    MeshError.__init__ = _record_error  # type: ignore[method-assign]
    pytest.CaptureFixture.readouterr = _scanned_readouterr  # type: ignore[method-assign]
    logger = logging.getLogger("meshclient")
    logger.addHandler(_ScanHandler())
    if logger.level == logging.NOTSET or logger.level > logging.DEBUG:
        logger.setLevel(logging.DEBUG)


def pytest_unconfigure(config: pytest.Config) -> None:
    MeshError.__init__ = _original_init  # type: ignore[method-assign]
    pytest.CaptureFixture.readouterr = _original_readouterr  # type: ignore[method-assign]


def _register_sandbox(info: dict[str, Any]) -> None:
    oidc, ws = info.get("oidc", {}), info.get("workspace", {})
    for value in (oidc.get("client_secret"), ws.get("token"), ws.get("client_secret")):
        register_secret(value)
    for which in ("client", "outsider"):
        key = info.get(which, {}).get("key")
        if key:
            try:
                with open(key) as f:
                    register_secret(f.read())
            except OSError:
                pass


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef: Any, request: Any) -> Iterator[Any]:
    """Learn the suite's secrets as fixtures make them: PKI leaves' keys, the sandbox's secrets."""
    result = yield
    key_pem = getattr(result, "key_pem", None)
    if isinstance(key_pem, (str, bytes)):
        register_secret(key_pem)
    info = getattr(result, "info", None)
    if isinstance(info, dict) and "oidc" in info:
        _register_sandbox(info)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _errors.clear()
    _findings.clear()
    result = yield  # raises when the test itself failed: that report wins
    for err in list(_errors):
        for kind in find_secrets(_describe(err)):
            _findings.append(f"{type(err).__name__}: {kind}")
    _errors.clear()
    findings = sorted(set(_findings))
    _findings.clear()
    if findings and item.get_closest_marker("leaks_allowed") is None:
        pytest.fail("secret material in what meshclient showed:\n  " + "\n  ".join(findings), pytrace=False)
    return result


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.when != "call" or report.failed or item.get_closest_marker("leaks_allowed") is not None:
        return
    for name, content in report.sections:
        if name.startswith("Captured"):
            kinds = find_secrets(content)
            if kinds:
                report.outcome = "failed"
                report.longrepr = f"secret material in {name.lower()}: {', '.join(sorted(set(kinds)))}"
                return
