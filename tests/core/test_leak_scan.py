"""The suite-wide leak scan (tests/leak_scan.py) catches what it claims to: run small test files
under it in a subprocess and check each leak fails its test, and a clean one passes."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
# pytester echoes the inner runs' output, leaks included: the outer tests must not be scanned
pytestmark = pytest.mark.leaks_allowed
TESTS_DIR = Path(__file__).resolve().parents[1]


def _run(pytester: pytest.Pytester, body: str) -> pytest.RunResult:
    pytester.makeconftest(f"import sys\nsys.path.insert(0, {str(TESTS_DIR)!r})\npytest_plugins = ['leak_scan']\n")
    pytester.makepyfile(test_leaky="import logging, pytest\nfrom leak_scan import CANARY\n"
                        "from meshclient.errors import ConfigurationError, TransportError\n" + body)
    return pytester.runpytest_subprocess("-q", "-p", "no:cacheprovider")


def test_a_secret_in_an_error_message_fails_the_test(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "def test_it():\n    ConfigurationError('bad url https://h/?k=' + CANARY)\n")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*secret material*", "*ConfigurationError: the test canary*"])


def test_a_secret_in_a_suppressed_context_fails_the_test(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "def test_it():\n    try:\n        try:\n"
                            "            open('/nonexistent/' + CANARY)\n"
                            "        except OSError:\n"
                            "            raise TransportError('could not read it') from None\n"
                            "    except TransportError:\n        pass\n")
    result.assert_outcomes(failed=1)


def test_a_secret_in_a_meshclient_log_record_fails_the_test(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "def test_it():\n    logging.getLogger('meshclient.x').debug('token %s', CANARY)\n")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*log record meshclient.x/DEBUG*"])


def test_a_jwt_or_key_in_cli_output_fails_the_test(pytester: pytest.Pytester) -> None:
    jwt = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJtbC1waXBlbGluZSJ9.c2lnbmF0dXJl"
    result = _run(pytester, f"def test_it(capsys):\n    print({jwt!r})\n    capsys.readouterr()\n"
                            "def test_key(capsys):\n    print('-----BEGIN PRIVATE KEY-----')\n")
    result.assert_outcomes(failed=2)


def test_clean_tests_and_allowed_leaks_pass(pytester: pytest.Pytester) -> None:
    result = _run(pytester, "def test_clean():\n    ConfigurationError('bad url https://h/?k=...')\n"
                            "@pytest.mark.leaks_allowed\n"
                            "def test_allowed():\n    ConfigurationError(CANARY)\n")
    result.assert_outcomes(passed=2)
