"""``meshclient.doctor()``: the command's checks from Python, against a real mTLS server.

The same checks as ``meshclient doctor`` (compared line for line with the command's output), the
result as values (``ok``, ``failures``, ``raise_for_failure``), options checked with Python's
words, and no key text in any line, table or error.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest

import meshclient
from meshclient import ArgumentTypeError, ConfigurationError, DoctorFailedError, DoctorReport
from meshclient.cli.main import main
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI

CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
WRONG_ID = "scorer.ml-serving.serviceaccount.identity.linkerd.cluster.local"


pytestmark = pytest.mark.usefixtures("no_mesh_env")


def material(paths: dict[str, Path]) -> dict[str, object]:
    return {"cert": paths["cert"], "key": paths["key"], "trust_anchors": str(paths["trust_anchors"])}


def no_key_text(text: str, leaf: IssuedLeaf) -> None:
    body = [ln for ln in leaf.key_pem.decode().splitlines() if ln and not ln.startswith("-----")]
    assert "PRIVATE KEY" not in text
    assert all(ln not in text for ln in body)


def test_good_material_and_a_live_server(good: dict[str, Path], url: str, client_leaf: IssuedLeaf,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    report = meshclient.doctor(target=f"{url}/health", server_identity=SERVER_ID, **material(good))  # type: ignore[arg-type]
    printed = capsys.readouterr().out
    assert isinstance(report, DoctorReport) and report.ok and report.failures == ()
    by_name = {c.name: c for c in report.checks}
    assert by_name["identity"].status == "ok" and CLIENT_ID in by_name["identity"].text
    assert by_name["handshake"].status == "ok" and f"proved '{SERVER_ID}'" in by_name["handshake"].text
    assert by_name["request"].text.endswith("-> 200 OK")
    assert report.summary.startswith("doctor: all checks passed")
    assert report.raise_for_failure() is report
    # echo prints what the command prints: the same lines, in the same order
    assert main(["doctor", "--target", f"{url}/health", "--server-identity", SERVER_ID, "--cert", str(good["cert"]),
                 "--key", str(good["key"]), "--trust-anchors", str(good["trust_anchors"])]) == 0
    command = capsys.readouterr().out
    checks = lambda text: [ln.split()[:2] for ln in text.splitlines() if ln.startswith("[")]  # noqa: E731
    assert checks(printed) == checks(command) == checks(str(report))
    html = report._repr_html_()
    assert html.startswith("<table>") and "handshake" in html
    for text in (printed, str(report), html):
        no_key_text(text, client_leaf)


def test_echo_off_prints_nothing(good: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    report = meshclient.doctor(echo=False, **material(good))  # type: ignore[arg-type]
    assert report.ok and len(report.checks) >= 10
    assert capsys.readouterr().out == ""


def test_a_wrong_server_identity_fails_before_any_request(good: dict[str, Path], url: str, server: object) -> None:
    seen = len(server.requests)  # type: ignore[attr-defined]
    report = meshclient.doctor(target=url, server_identity=meshclient.Identity.parse(WRONG_ID), echo=False,
                               **material(good))  # type: ignore[arg-type]
    assert not report.ok
    [failed] = report.failures
    assert failed.name == "handshake" and f"not the expected identity '{WRONG_ID}'" in failed.text and failed.hint
    assert [c.status for c in report.checks if c.name == "request"] == ["skip"]
    assert len(server.requests) == seen  # type: ignore[attr-defined]


def test_raise_for_failure_names_each_failed_check_and_the_fix(pki: SandboxPKI, tmp_path: Path) -> None:
    paths = pki.issue(CLIENT_ID).write(tmp_path)
    other = pki.issue(CLIENT_ID)
    paths["key"].write_bytes(other.key_pem)
    report = meshclient.doctor(echo=False, **material(paths))  # type: ignore[arg-type]
    assert [c.name for c in report.failures] == ["key match"]
    with pytest.raises(DoctorFailedError) as caught:
        report.raise_for_failure()
    err = caught.value
    assert "1 check(s) failed (key match)" in err.message and err.hint and "same issuance" in err.hint
    assert err.checks == report.failures
    again = pickle.loads(pickle.dumps(err))  # Spark ships errors pickled
    assert again.checks == err.checks and again.hint == err.hint
    for text in (str(err), str(report), report._repr_html_()):
        no_key_text(text, other)


def test_the_table_escapes_what_the_checks_quote(pki: SandboxPKI, tmp_path: Path) -> None:
    odd = tmp_path / "<b>x&y"
    odd.mkdir()
    paths = pki.issue(CLIENT_ID).write(odd)
    paths["cert"].unlink()
    report = meshclient.doctor(echo=False, **material(paths))  # type: ignore[arg-type]
    assert not report.ok
    html = report._repr_html_()
    assert "<b>x&y" not in html and "&lt;b&gt;x&amp;y" in html


@pytest.mark.parametrize(("kwargs", "error", "words"), [
    ({"target": "https://127.0.0.1:1/"}, ConfigurationError, "target= and server_identity= go together"),
    ({"token_env": "A", "token_file": "B"}, ConfigurationError, "token_file="),
    ({"cert": 123}, ArgumentTypeError, "cert=...) must be a str"),
    ({"server_identity": 7, "target": "https://127.0.0.1:1/"}, ArgumentTypeError, "server_identity"),
    ({"secret_keys": ("a", "b")}, ArgumentTypeError, "three key names"),
    ({"timeout": 0}, ConfigurationError, "timeout"),
    ({"timeout": True}, ConfigurationError, "timeout"),
])
def test_options_that_make_no_sense_are_refused_in_python_terms(kwargs: dict[str, object], error: type[Exception],
                                                                words: str, capsys: pytest.CaptureFixture[str]
                                                                ) -> None:
    with pytest.raises(error) as caught:
        meshclient.doctor(echo=False, **kwargs)  # type: ignore[arg-type]
    assert words in str(caught.value)
    assert "--" not in str(caught.value).split("hint")[0].replace("-->", "")
    assert capsys.readouterr().err == ""  # argparse's complaint is not printed: it is in the error


def test_a_value_that_looks_like_an_option_stays_a_value(good: dict[str, Path]) -> None:
    report = meshclient.doctor(echo=False, cert="--key", key=str(good["key"]), trust_anchors=str(good["trust_anchors"]))
    certificate = [c for c in report.checks if c.name == "certificate"]
    assert certificate and certificate[0].status == "fail" and "--key" in certificate[0].text
