"""The ``meshclient`` command line: ``doctor`` and ``request``, as subprocesses and in-process.

Subprocess runs are what users type (``python -m meshclient``, a fresh environment); in-process
runs through ``main(argv)`` keep the many doctor cases fast. Every run's output is also
scanned for key material.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from echo_server import echo_server
from mtls_server import mtls_server

from meshclient import Credentials
from meshclient.cli.main import main
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI
from meshclient_sandbox.tls import build_server_context

CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
WRONG_ID = "scorer.ml-serving.serviceaccount.identity.linkerd.cluster.local"
REPO = Path(__file__).resolve().parents[2]


# -- helpers ----------------------------------------------------------------------------------
def clean_env(**mesh: str) -> dict[str, str]:
    """This process's environment without any MESHCLIENT_* variable, plus ``mesh``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHCLIENT_")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.update(mesh)
    return env


def cli(*args: str, env: dict[str, str] | None = None, input: bytes | None = None,
        stdin: object = None) -> subprocess.CompletedProcess[bytes]:
    kwargs: dict[str, object] = {"input": input} if input is not None else {"stdin": stdin or subprocess.DEVNULL}
    return subprocess.run([sys.executable, "-m", "meshclient", *args], env=env if env is not None else clean_env(),
                          capture_output=True, timeout=60, check=False, **kwargs)  # type: ignore[call-overload]


def flags(paths: dict[str, Path]) -> list[str]:
    return ["--cert", str(paths["cert"]), "--key", str(paths["key"]), "--trust-anchors", str(paths["trust_anchors"])]


def key_secrets(leaf: IssuedLeaf) -> list[str]:
    """Strings that must never appear in output: the PEM body lines and the whole key in base64."""
    lines = [ln for ln in leaf.key_pem.decode().splitlines() if ln and not ln.startswith("-----")]
    return [*lines, "".join(lines), base64.b64encode(leaf.key_pem).decode()[:40]]


def assert_no_key_material(text: str | bytes, *leaves: IssuedLeaf) -> None:
    out = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    assert "PRIVATE KEY" not in out
    for leaf in leaves:
        for secret in key_secrets(leaf):
            assert secret not in out


def lines_with(output: str, mark: str, name: str) -> list[str]:
    return [ln for ln in output.splitlines() if ln.startswith(mark) and ln[6:].strip().startswith(name)]


def fix_for(output: str, name: str) -> str:
    """The ``fix:`` text printed under the [FAIL] line of check ``name`` (wording belongs to meshclient.pki)."""
    lines = output.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("[FAIL]") and line[6:].strip().startswith(name):
            fix = lines[i + 1].strip() if i + 1 < len(lines) else ""
            assert fix.startswith("fix: "), f"no fix under {line!r}"
            return fix
    raise AssertionError(f"no [FAIL] {name} line in:\n{output}")


# -- fixtures ---------------------------------------------------------------------------------
pytestmark = pytest.mark.usefixtures("no_mesh_env")


@pytest.fixture(scope="module")
def echo(server_creds: Credentials) -> Iterator[object]:
    """The demo's echo service: hashes bodies, reads chunked uploads, enforces ml-team policy."""
    with echo_server(server_creds) as srv:
        yield srv


# -- the command line as a whole ---------------------------------------------------------------
def test_help_lists_every_design_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("doctor", "request", "push", "score", "sandbox", "demo"):
        assert re.search(rf"^\s+{command}\s", out, re.M), command
    assert "MESHCLIENT_CERT" in out and "22" in out


def test_python_dash_m_and_version() -> None:
    proc = cli("--version")
    assert proc.returncode == 0
    assert proc.stdout.decode().startswith("meshclient ")
    proc = cli("request", "--help")
    assert proc.returncode == 0
    assert b"exit status" in proc.stdout and b"--data" in proc.stdout


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["request", "GET", "https://x:1/"]) == 2  # --server-identity is required
    assert "--server-identity" in capsys.readouterr().err
    assert main(["doctor", "--target", "https://127.0.0.1:1/"]) == 2
    assert "go together" in capsys.readouterr().err
    assert main(["request", "GET", "https://x:1/", "--server-identity", SERVER_ID, "-H", "no-colon"]) == 2


# -- doctor on material -----------------------------------------------------------------------
def test_doctor_passes_on_good_material(good: dict[str, Path], client_leaf: IssuedLeaf,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", *flags(good)]) == 0
    out = capsys.readouterr().out
    for name in ("certificate", "private key", "trust anchors", "identity", "key match", "expiry", "chain",
                 "profile", "anchor expiry", "tls context"):
        assert lines_with(out, "[ok]", name), name
    assert "[FAIL]" not in out and "[warn]" not in out
    assert f"--cert {good['cert']}" in out  # where the material came from
    assert CLIENT_ID in out and "CN=identity.linkerd.cluster.local" in out and "CN=root.linkerd.cluster.local" in out
    assert re.search(r"valid until \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC: 2[34] h \d+ min left of 24 h", out)
    assert "doctor: all checks passed" in out
    assert_no_key_material(out, client_leaf)


def test_doctor_reads_pem_text_from_the_environment(client_leaf: IssuedLeaf) -> None:
    env = clean_env(MESHCLIENT_CERT=client_leaf.chain_pem.decode(), MESHCLIENT_KEY=client_leaf.key_pem.decode(),
                    MESHCLIENT_TRUST_ANCHORS=client_leaf.trust_anchors_pem.decode())
    proc = cli("doctor", env=env)
    out = proc.stdout.decode()
    assert proc.returncode == 0, out
    assert "PEM text in $MESHCLIENT_KEY" in out
    assert_no_key_material(proc.stdout + proc.stderr, client_leaf)


def test_doctor_reads_paths_from_the_environment(good: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHCLIENT_CERT", str(good["cert"]))
    monkeypatch.setenv("MESHCLIENT_KEY", str(good["key"]))
    monkeypatch.setenv("MESHCLIENT_TRUST_ANCHORS", str(good["trust_anchors"]))
    assert main(["doctor"]) == 0
    assert f"$MESHCLIENT_CERT={good['cert']}" in capsys.readouterr().out


def test_doctor_fails_on_missing_environment() -> None:
    proc = cli("doctor")
    out = proc.stdout.decode()
    assert proc.returncode == 1
    assert len(lines_with(out, "[FAIL]", "")) == 3
    for option, var in (("--cert", "MESHCLIENT_CERT"), ("--key", "MESHCLIENT_KEY"),
                        ("--trust-anchors", "MESHCLIENT_TRUST_ANCHORS")):
        assert f"neither {option} nor ${var} is set" in out
        assert f"fix: Pass {option} PATH, or set {var}" in out
    assert lines_with(out, "[skip]", "chain")
    assert "Traceback" not in proc.stderr.decode()


def test_doctor_fails_on_expired_leaf(pki: SandboxPKI, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = pki.issue_expired(CLIENT_ID).write(tmp_path)
    assert main(["doctor", *flags(paths)]) == 1
    out = capsys.readouterr().out
    [line] = lines_with(out, "[FAIL]", "expiry")
    assert "expired at" in line and "ago" in line
    assert "fresh" in fix_for(out, "expiry")
    assert lines_with(out, "[ok]", "key match") and lines_with(out, "[ok]", "chain")  # the rest is still checked
    assert "doctor: FAILED" in out


def test_doctor_warns_when_under_a_fifth_of_the_lifetime_is_left(pki: SandboxPKI, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    now = dt.datetime.now(dt.timezone.utc)
    leaf = pki.issue(CLIENT_ID, not_before=now - dt.timedelta(hours=21), not_after=now + dt.timedelta(hours=3))
    assert main(["doctor", *flags(leaf.write(tmp_path))]) == 0
    out = capsys.readouterr().out
    [line] = lines_with(out, "[warn]", "expiry")
    assert "2 h 59 min left of 24 h 0 min" in line or "3 h 0 min left of 24 h 0 min" in line
    assert "1 warning" in out


def test_doctor_fails_on_key_mismatch(pki: SandboxPKI, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = pki.issue(CLIENT_ID).write(tmp_path)
    other = pki.issue(CLIENT_ID)
    paths["key"].write_bytes(other.key_pem)
    assert main(["doctor", *flags(paths)]) == 1
    out = capsys.readouterr().out
    assert "same issuance" in fix_for(out, "key match")
    assert lines_with(out, "[skip]", "tls context")
    assert_no_key_material(out, other)


def test_doctor_fails_on_wrong_trust_anchors(client_leaf: IssuedLeaf, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    paths = client_leaf.write(tmp_path)
    paths["trust_anchors"].write_bytes(SandboxPKI.create().trust_anchors_pem)
    assert main(["doctor", *flags(paths)]) == 1
    out = capsys.readouterr().out
    [line] = lines_with(out, "[FAIL]", "chain")
    assert "trust anchors" in line
    assert "anchors" in fix_for(out, "chain")


def test_doctor_reports_several_problems_at_once(pki: SandboxPKI, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    paths = pki.issue_expired(CLIENT_ID).write(tmp_path)
    paths["trust_anchors"].write_bytes(SandboxPKI.create().trust_anchors_pem)
    paths["key"].write_bytes(pki.issue(CLIENT_ID).key_pem)
    assert main(["doctor", *flags(paths)]) == 1
    out = capsys.readouterr().out
    for name in ("key match", "expiry", "chain"):
        assert lines_with(out, "[FAIL]", name), name
    assert "3 failed" in out


def test_doctor_with_the_key_given_as_certificate(good: dict[str, Path], client_leaf: IssuedLeaf,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["doctor", "--cert", str(good["key"]), "--key", str(good["key"]), "--trust-anchors", str(good["cert"])]
    assert main(argv) == 1
    captured = capsys.readouterr()
    assert lines_with(captured.out, "[FAIL]", "certificate")
    assert "contains a private key" in captured.out
    assert_no_key_material(captured.out + captured.err, client_leaf)


def test_doctor_warns_about_a_readable_key_file(good: dict[str, Path], tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "tls.key"
    key.write_bytes(good["key"].read_bytes())
    key.chmod(0o644)
    assert main(["doctor", *flags({**good, "key": key})]) == 0
    out = capsys.readouterr().out
    assert "readable by other users (mode 0644)" in out and f"chmod 600 {key}" in out


def test_doctor_warns_about_profile_deviations(pki: SandboxPKI, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", *flags(pki.issue(CLIENT_ID, key_kind="p384").write(tmp_path))]) == 0
    [line] = lines_with(capsys.readouterr().out, "[warn]", "profile")
    assert "not ECDSA P-256" in line


def test_doctor_encrypted_key_needs_the_password_variable(client_leaf: IssuedLeaf, tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str],
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    paths = client_leaf.write(tmp_path)
    paths["key"].write_bytes(client_leaf.key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret-pass")))
    assert main(["doctor", *flags(paths)]) == 1
    out = capsys.readouterr().out
    assert "encrypted" in lines_with(out, "[FAIL]", "private key")[0]
    assert "MESHCLIENT_KEY_PASSWORD" in fix_for(out, "private key")
    assert main(["request", "GET", "https://127.0.0.1:1/", "--server-identity", SERVER_ID, *flags(paths)]) == 1
    assert "fix: Set MESHCLIENT_KEY_PASSWORD" in capsys.readouterr().err
    monkeypatch.setenv("MESHCLIENT_KEY_PASSWORD", "s3cret-pass")
    assert main(["doctor", *flags(paths)]) == 0
    out = capsys.readouterr().out
    assert "(decrypted)" in lines_with(out, "[ok]", "private key")[0]
    assert "s3cret-pass" not in out


def test_doctor_rejects_a_plain_http_target(good: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["doctor", "--target", "http://127.0.0.1:8080/", "--server-identity", SERVER_ID, *flags(good)]) == 1
    out = capsys.readouterr().out
    assert "not an https:// URL" in lines_with(out, "[FAIL]", "handshake")[0]
    assert "mutual TLS" in fix_for(out, "handshake")


# -- doctor with a live target ----------------------------------------------------------------
def test_doctor_live_handshake(good: dict[str, Path], url: str) -> None:
    proc = cli("doctor", "--target", f"{url}/health", "--server-identity", SERVER_ID, *flags(good))
    out = proc.stdout.decode()
    assert proc.returncode == 0, out + proc.stderr.decode()
    [line] = lines_with(out, "[ok]", "handshake")
    assert f"proved '{SERVER_ID}'" in line
    assert "TLSv1.3" in line
    assert re.search(r"TLS_(AES_(128|256)_GCM_SHA(256|384)|CHACHA20_POLY1305_SHA256)", line)
    assert lines_with(out, "[ok]", "request")[0].endswith("-> 200 OK")


def test_doctor_live_handshake_with_the_wrong_identity(good: dict[str, Path], url: str, server: object,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    seen = len(server.requests)  # type: ignore[attr-defined]
    assert main(["doctor", "--target", url, "--server-identity", WRONG_ID, *flags(good)]) == 1
    out = capsys.readouterr().out
    [line] = lines_with(out, "[FAIL]", "handshake")
    assert f"is '{SERVER_ID}', not the expected identity '{WRONG_ID}'" in line
    assert lines_with(out, "[skip]", "request")
    assert len(server.requests) == seen  # type: ignore[attr-defined]


def test_doctor_live_handshake_with_a_server_of_another_mesh(good: dict[str, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    foreign = SandboxPKI.create().issue(SERVER_ID)
    foreign_creds = Credentials.from_pem(foreign.chain_pem, foreign.key_pem, foreign.trust_anchors_pem)
    with mtls_server(build_server_context(foreign_creds)) as srv:
        target = f"https://127.0.0.1:{srv.server_address[1]}/"
        assert main(["doctor", "--target", target, "--server-identity", SERVER_ID, *flags(good)]) == 1
        assert srv.requests == []
    out = capsys.readouterr().out
    assert "does not verify against the mesh trust anchors" in lines_with(out, "[FAIL]", "handshake")[0]
    assert "anchors" in fix_for(out, "handshake")


def test_doctor_when_the_server_refuses_this_client(pki: SandboxPKI, tmp_path: Path, url: str,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """TLS 1.3: the client finishes its handshake before the server checks the client certificate,
    so the refusal shows on the request line, with its own fix."""
    other = SandboxPKI.create()
    paths = other.issue(CLIENT_ID).write(tmp_path)
    paths["trust_anchors"].write_bytes(pki.trust_anchors_pem + other.trust_anchors_pem)  # trusts the server
    assert main(["doctor", "--target", url, "--server-identity", SERVER_ID, *flags(paths)]) == 1
    out = capsys.readouterr().out
    assert lines_with(out, "[ok]", "handshake")
    # the alert ("unknown ca") may lose the race with the server's close ("EOF"): only the fix is certain
    assert lines_with(out, "[FAIL]", "request")
    assert "the server most likely refused this client's certificate" in fix_for(out, "request")


def test_doctor_reports_a_policy_denial(pki: SandboxPKI, tmp_path: Path, echo: object,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    outsider = pki.issue("etl.data-eng.serviceaccount.identity.linkerd.cluster.local").write(tmp_path)
    assert main(["doctor", "--target", echo.url, "--server-identity", SERVER_ID, *flags(outsider)]) == 1  # type: ignore[attr-defined]
    out = capsys.readouterr().out
    assert lines_with(out, "[ok]", "handshake")
    [line] = lines_with(out, "[FAIL]", "request")
    assert "403" in line and "mesh policy denied" in line
    assert "fix: Ask the service owner to authorize this identity" in out


def test_doctor_reports_an_unreachable_target(good: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and now has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    assert main(["doctor", "--target", f"https://127.0.0.1:{port}/", "--server-identity", SERVER_ID,
                 "--timeout", "5", *flags(good)]) == 1
    out = capsys.readouterr().out
    assert "refused the connection" in lines_with(out, "[FAIL]", "handshake")[0]


def test_doctor_skips_the_live_check_when_material_is_broken(pki: SandboxPKI, tmp_path: Path, url: str,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    paths = pki.issue_expired(CLIENT_ID).write(tmp_path)
    assert main(["doctor", "--target", url, "--server-identity", SERVER_ID, *flags(paths)]) == 1
    out = capsys.readouterr().out
    assert lines_with(out, "[skip]", "handshake") and lines_with(out, "[skip]", "request")


# -- request ----------------------------------------------------------------------------------
def test_request_get(good: dict[str, Path], url: str, client_leaf: IssuedLeaf) -> None:
    proc = cli("request", "GET", f"{url}/hello", "--server-identity", SERVER_ID, *flags(good))
    assert proc.returncode == 0, proc.stderr.decode()
    body = json.loads(proc.stdout)
    assert body["method"] == "GET" and body["path"] == "/hello"
    assert f"DNS:{CLIENT_ID}" in body["client"] or CLIENT_ID in body["client"]
    assert proc.stderr == b""
    assert_no_key_material(proc.stdout + proc.stderr, client_leaf)


def test_request_in_process_from_environment(good: dict[str, Path], url: str, monkeypatch: pytest.MonkeyPatch,
                                             capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    monkeypatch.setenv("MESHCLIENT_CERT", str(good["cert"]))
    monkeypatch.setenv("MESHCLIENT_KEY", str(good["key"]))
    monkeypatch.setenv("MESHCLIENT_TRUST_ANCHORS", str(good["trust_anchors"]))
    assert main(["request", "DELETE", f"{url}/item/7", "--server-identity", SERVER_ID]) == 0
    assert json.loads(capsysbinary.readouterr().out)["method"] == "DELETE"


def test_request_post_file_with_headers(good: dict[str, Path], url: str, tmp_path: Path) -> None:
    data = tmp_path / "payload.json"
    data.write_text(json.dumps({"inputs": list(range(1000))}))
    proc = cli("request", "POST", f"{url}/invocations", "--server-identity", SERVER_ID, *flags(good),
               "-H", "Content-Type: application/json", "-H", "X-Trace:  abc-123 ", "--data", f"@{data}")
    assert proc.returncode == 0, proc.stderr.decode()
    body = json.loads(proc.stdout)
    assert body["method"] == "POST" and body["body_len"] == data.stat().st_size
    assert body["headers"]["Content-Type"] == "application/json"
    assert body["headers"]["X-Trace"] == "abc-123"
    assert body["headers"]["Content-Length"] == str(data.stat().st_size)


def test_request_text_data(good: dict[str, Path], url: str) -> None:
    proc = cli("request", "PUT", f"{url}/x", "--server-identity", SERVER_ID, *flags(good), "--data", "hello=1")
    assert proc.returncode == 0
    assert json.loads(proc.stdout)["body_len"] == 7


def test_request_binary_file_and_stdin_are_sent_intact(good: dict[str, Path], echo: object, tmp_path: Path) -> None:
    blob = bytes(range(256)) * 12289  # ~3 MiB, every byte value, no line structure
    data = tmp_path / "blob.bin"
    data.write_bytes(blob)
    digest = hashlib.sha256(blob).hexdigest()
    target = f"{echo.url}/upload"  # type: ignore[attr-defined]
    from_file = cli("request", "PUT", target, "--server-identity", SERVER_ID, *flags(good), "--data", f"@{data}")
    assert from_file.returncode == 0, from_file.stderr.decode()
    assert json.loads(from_file.stdout)["body_sha256"] == digest
    from_pipe = cli("request", "PUT", target, "--server-identity", SERVER_ID, *flags(good), "--data", "@-",
                    input=blob)
    assert from_pipe.returncode == 0, from_pipe.stderr.decode()
    assert json.loads(from_pipe.stdout)["body_bytes"] == len(blob)
    assert json.loads(from_pipe.stdout)["body_sha256"] == digest
    with data.open("rb") as fh:  # stdin redirected from a file: sent with its length
        redirected = cli("request", "PUT", target, "--server-identity", SERVER_ID, *flags(good), "--data", "@-",
                         stdin=fh)
    assert json.loads(redirected.stdout)["body_sha256"] == digest


def test_request_include_prints_status_and_headers_like_curl(good: dict[str, Path], url: str) -> None:
    proc = cli("request", "-i", "GET", f"{url}/hello", "--server-identity", SERVER_ID, *flags(good))
    assert proc.returncode == 0
    head, sep, body = proc.stdout.partition(b"\r\n\r\n")
    assert sep
    status, *headers = head.decode("latin-1").split("\r\n")
    assert status == "HTTP/1.1 200 OK"
    assert all(re.match(r"^[A-Za-z0-9-]+: ", h) for h in headers), headers
    assert f"Content-Length: {len(body)}" in headers
    assert "Content-Type: application/json" in headers
    assert json.loads(body)["path"] == "/hello"


def test_request_head_with_include(good: dict[str, Path], url: str) -> None:
    proc = cli("request", "-i", "HEAD", url, "--server-identity", SERVER_ID, *flags(good))
    assert proc.returncode == 0
    assert proc.stdout.startswith(b"HTTP/1.1 200 OK\r\n") and proc.stdout.endswith(b"\r\n\r\n")


def test_request_non_2xx_exits_22(good: dict[str, Path], url: str) -> None:
    proc = cli("request", "GET", f"{url}/redirect-other", "--server-identity", SERVER_ID, *flags(good))
    assert proc.returncode == 22
    err = proc.stderr.decode()
    assert "302" in err and "-L" in err
    followed = cli("request", "-L", "GET", f"{url}/redirect-same", "--server-identity", SERVER_ID, *flags(good))
    assert followed.returncode == 0
    assert json.loads(followed.stdout)["path"] == "/echo-after-redirect"


def test_request_wrong_server_identity_sends_nothing(good: dict[str, Path], url: str, server: object,
                                                      client_leaf: IssuedLeaf) -> None:
    seen = len(server.requests)  # type: ignore[attr-defined]
    proc = cli("request", "POST", f"{url}/x", "--server-identity", WRONG_ID, *flags(good), "--data", "secret")
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert err.startswith("meshclient: error: ")
    assert f"not the expected identity '{WRONG_ID}'" in err and "No request was sent" in err
    assert "  fix: " in err and "Traceback" not in err
    assert proc.stdout == b""
    assert len(server.requests) == seen  # type: ignore[attr-defined]
    assert_no_key_material(proc.stdout + proc.stderr, client_leaf)


def test_request_policy_denied(pki: SandboxPKI, tmp_path: Path, echo: object) -> None:
    outsider_id = "etl.data-eng.serviceaccount.identity.linkerd.cluster.local"
    outsider = pki.issue(outsider_id).write(tmp_path)
    proc = cli("request", "GET", f"{echo.url}/hello", "--server-identity", SERVER_ID, *flags(outsider))  # type: ignore[attr-defined]
    assert proc.returncode == 22
    err = proc.stderr.decode()
    assert f"the mesh policy at {echo.url}/hello denied this client's identity '{outsider_id}'" in err  # type: ignore[attr-defined]
    assert "l5d-proxy-error" in err and "fix: Ask the service owner" in err


def test_request_errors_are_one_line_without_traceback_unless_debug(tmp_path: Path, good: dict[str, Path]) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = ["request", "GET", f"https://127.0.0.1:{port}/", "--server-identity", SERVER_ID, *flags(good)]
    plain = cli(*argv)
    assert plain.returncode == 1
    assert plain.stderr.decode().startswith("meshclient: error: Could not connect to 127.0.0.1:")
    assert "Traceback" not in plain.stderr.decode()
    debug = cli(*argv, "--debug")
    assert debug.returncode == 1 and "Traceback" in debug.stderr.decode()


def test_request_without_material(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["request", "GET", "https://127.0.0.1:1/", "--server-identity", SERVER_ID]) == 1
    err = capsys.readouterr().err
    assert "meshclient: error: No certificate given" in err and "fix: Pass --cert PATH" in err


def test_request_missing_data_file(good: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["request", "POST", "https://127.0.0.1:1/", "--server-identity", SERVER_ID, *flags(good),
                 "--data", "@/nonexistent/body.json"]) == 1
    assert "Cannot read the --data file /nonexistent/body.json" in capsys.readouterr().err


def test_request_with_expired_material_names_the_fix(pki: SandboxPKI, tmp_path: Path) -> None:
    leaf = pki.issue_expired(CLIENT_ID)
    proc = cli("request", "GET", "https://127.0.0.1:1/", "--server-identity", SERVER_ID, *flags(leaf.write(tmp_path)))
    assert proc.returncode == 1
    err = proc.stderr.decode()
    assert "expired" in err and "fix:" in err
    assert_no_key_material(proc.stdout + proc.stderr, leaf)
