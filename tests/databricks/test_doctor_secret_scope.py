"""``meshclient doctor --secret-scope`` and its token checks, against the sandbox workspace,
issuer and echo service. Subprocess runs are what users type; in-process runs (``main``)
keep the many failure cases fast. Every output is scanned for key text, tokens and secrets."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from databricks_helpers import FakeDbutils, assert_no_secrets, secret_texts, unique_user, workspace_env

from meshclient.cli.main import main
from meshclient_sandbox.runner import CLIENT_IDENTITY, Sandbox

pytest.importorskip("databricks.sdk")

SCOPE = "ml-mesh"
REPO = Path(__file__).resolve().parents[2]
SECRET_ENV = "MESHCLIENT_OIDC_CLIENT_SECRET"


# -- helpers ----------------------------------------------------------------------------------
def subprocess_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("DATABRICKS_", "MESHCLIENT_")) and k.lower() not in ("http_proxy", "https_proxy")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env["HOME"] = str(tmp_path)
    env["DATABRICKS_CONFIG_FILE"] = str(tmp_path / "no-such-databrickscfg")
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra)
    return env


def doctor_subprocess(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshclient", "doctor", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def doctor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["doctor", *args])
    out, err = capsys.readouterr()
    return code, out + err


def line(output: str, mark: str, name: str, *needles: str) -> str:
    """The one output line with this mark and check name that contains every needle."""
    found = [ln for ln in output.splitlines()
             if ln.startswith(mark) and ln[6:].strip().startswith(name) and all(n in ln for n in needles)]
    assert found, f"no {mark} {name} line with {needles} in:\n{output}"
    return found[0]


def fix_under(output: str, first_line: str) -> str:
    lines = output.splitlines()
    i = lines.index(first_line)
    assert lines[i + 1].strip().startswith("fix: "), f"no fix under {first_line!r}"
    return lines[i + 1].strip()


def target(sandbox: Sandbox) -> list[str]:
    svc = sandbox.service("echo")
    return ["--target", svc["url"] + "/hello", "--server-identity", svc["identity"]]


def oidc_args(sandbox: Sandbox, *, audience: bool = True) -> list[str]:
    o = sandbox.info["oidc"]
    args = ["--oidc-token-url", o["token_url"], "--oidc-client-id", o["client_id"]]
    return [*args, "--oidc-audience", o["audience"]] if audience else args


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def scan(sandbox: Sandbox, text: str, *extra: str | None) -> None:
    assert_no_secrets(text, secret_texts(sandbox), *extra)


# -- what users type ---------------------------------------------------------------------------
def test_doctor_secret_scope_passes(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    ws = mesh_sandbox.info["workspace"]
    env = subprocess_env(tmp_path, DATABRICKS_HOST=ws["host"], DATABRICKS_TOKEN=ws["token"])
    proc = doctor_subprocess(env, "--secret-scope", SCOPE)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    line(out, "[ok]", "workspace", ws["host"], "auth type pat", "sandbox-user@example.com")
    assert mesh_sandbox.workspace is not None
    for key in ("tls.crt", "tls.key", "ca.crt"):
        size = len(mesh_sandbox.workspace.get_secret_bytes(SCOPE, key))
        line(out, "[ok]", "secret", f"scope '{SCOPE}' key '{key}': {size} bytes")
    line(out, "[ok]", "identity", CLIENT_IDENTITY)
    line(out, "[ok]", "private key", f"secret scope '{SCOPE}' key 'tls.key'")
    assert "doctor: all checks passed" in out
    scan(mesh_sandbox, out)


def test_doctor_secret_scope_with_a_client_credentials_token_and_a_target(mesh_sandbox: Sandbox,
                                                                          tmp_path: Path) -> None:
    ws, o = mesh_sandbox.info["workspace"], mesh_sandbox.info["oidc"]
    env = subprocess_env(tmp_path, DATABRICKS_HOST=ws["host"], DATABRICKS_TOKEN=ws["token"],
                         **{SECRET_ENV: o["client_secret"]})
    proc = doctor_subprocess(env, "--secret-scope", SCOPE, *oidc_args(mesh_sandbox), *target(mesh_sandbox))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    line(out, "[ok]", "token issuer", o["token_url"], "answers")
    line(out, "[ok]", "token", "ClientCredentials", o["client_id"], f"a JWT from issuer '{o['issuer']}'", "fingerprint")
    line(out, "[ok]", "token subject", "'ml-pipeline'")
    line(out, "[ok]", "token audience", f"'{o['audience']}'")
    line(out, "[ok]", "token expiry", "valid until", "left")
    line(out, "[ok]", "handshake", "echo.ml-platform")
    line(out, "[ok]", "request", "200")
    line(out, "[ok]", "token sent", "carried the bearer token", "subject 'ml-pipeline'")
    scan(mesh_sandbox, out)


def test_request_command_takes_the_secret_scope_too(mesh_sandbox: Sandbox, tmp_path: Path) -> None:
    ws, svc = mesh_sandbox.info["workspace"], mesh_sandbox.service("echo")
    env = subprocess_env(tmp_path, DATABRICKS_HOST=ws["host"], DATABRICKS_TOKEN=ws["token"])
    proc = subprocess.run([sys.executable, "-m", "meshclient", "request", "GET", svc["url"] + "/hi",
                           "--server-identity", svc["identity"], "--secret-scope", SCOPE],
                          env=env, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert CLIENT_IDENTITY in proc.stdout
    scan(mesh_sandbox, proc.stdout + proc.stderr)


# -- secret-scope failures: a failing line naming scope and key, with the fix -----------------
def test_missing_key_is_a_failing_line(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    workspace_env(mesh_sandbox, sdk_env)
    code, out = doctor(capsys, "--secret-scope", SCOPE, "--secret-keys", "tls.crt,no-such-key,ca.crt")
    assert code == 1
    failed = line(out, "[FAIL]", "secret", f"'{SCOPE}'", "'no-such-key'")
    assert "list-secrets" in fix_under(out, failed)
    line(out, "[ok]", "secret", "'tls.crt'")
    line(out, "[skip]", "private key", "not read from the secret scope")
    line(out, "[skip]", "tls context")
    scan(mesh_sandbox, out)


def test_missing_scope_is_a_failing_line(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    workspace_env(mesh_sandbox, sdk_env)
    code, out = doctor(capsys, "--secret-scope", "no-such-scope")
    assert code == 1
    failed = line(out, "[FAIL]", "secret", "'no-such-scope'", "does not exist")
    assert "list-scopes" in fix_under(out, failed)
    assert out.count("does not exist") == 1  # one cause, one line (not one per key: tls.crt, tls.key, ca.crt)
    assert "1 failed" in out
    scan(mesh_sandbox, out)


def test_no_read_permission_is_a_failing_line(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    user = unique_user(mesh_sandbox)
    sdk_env.setenv("DATABRICKS_HOST", mesh_sandbox.info["workspace"]["host"])
    sdk_env.setenv("DATABRICKS_TOKEN", user.token)
    code, out = doctor(capsys, "--secret-scope", SCOPE)
    assert code == 1
    line(out, "[ok]", "workspace", user.name)
    failed = line(out, "[FAIL]", "secret", "may not read", "'tls.crt'", f"'{SCOPE}'")
    assert "READ" in fix_under(out, failed)
    scan(mesh_sandbox, out, user.token)


def test_no_workspace_configured_is_a_failing_line(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(capsys, "--secret-scope", SCOPE)
    assert code == 1
    failed = line(out, "[FAIL]", "workspace", f"secret scope '{SCOPE}'", "No usable Databricks workspace")
    assert "DATABRICKS_HOST" in fix_under(out, failed)
    line(out, "[skip]", "secret", "'tls.key'", "needs a workspace")
    scan(mesh_sandbox, out)


def test_refused_workspace_credentials(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    bad = "dapi" + "0" * 32
    sdk_env.setenv("DATABRICKS_HOST", mesh_sandbox.info["workspace"]["host"])
    sdk_env.setenv("DATABRICKS_TOKEN", bad)
    code, out = doctor(capsys, "--secret-scope", SCOPE)
    assert code == 1
    failed = line(out, "[FAIL]", "workspace", "refused these credentials")
    assert "DATABRICKS_TOKEN" in fix_under(out, failed)
    line(out, "[skip]", "secret", "needs a usable workspace")
    scan(mesh_sandbox, out, bad)


def test_unreachable_workspace_fails_within_the_timeout(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    sdk_env.setenv("DATABRICKS_HOST", f"http://127.0.0.1:{closed_port()}")
    sdk_env.setenv("DATABRICKS_TOKEN", "dapi" + "1" * 32)
    code, out = doctor(capsys, "--secret-scope", SCOPE, "--timeout", "1")
    assert code == 1
    failed = line(out, "[FAIL]", "workspace", "cannot be reached")
    assert "DATABRICKS_HOST" in fix_under(out, failed)


def test_doctor_in_a_notebook_reads_through_dbutils(notebook: FakeDbutils, mesh_sandbox: Sandbox,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(capsys, "--secret-scope", SCOPE)
    assert code == 0, out
    line(out, "[ok]", "workspace", "dbutils.secrets (Databricks notebook)")
    line(out, "[ok]", "secret", f"scope '{SCOPE}' key 'tls.key'", "dbutils.secrets")
    assert len(notebook.secrets.calls) == 3
    scan(mesh_sandbox, out)


@pytest.mark.parametrize("args", [
    ["--secret-scope", SCOPE, "--cert", "tls.crt"],
    ["--secret-keys", "a,b,c"],
    ["--secret-scope", SCOPE, "--secret-keys", "a,b"],
    ["--oidc-token-url", "http://127.0.0.1:1/token"],
    ["--oidc-client-id", "x"],
    ["--oidc-audience", "x"],
    ["--token-env", "A", "--token-file", "B"],
])
def test_contradictory_options_are_usage_errors(args: list[str], sdk_env: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(capsys, *args)
    assert code == 2, out


# -- token checks ------------------------------------------------------------------------------
def test_oidc_secret_must_come_from_the_environment(mesh_sandbox: Sandbox, sdk_env: Any,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(capsys, "--secret-scope", SCOPE, *oidc_args(mesh_sandbox))
    assert code == 1
    failed = line(out, "[FAIL]", "token", "No client secret", "'ml-pipeline'")
    assert SECRET_ENV in fix_under(out, failed)
    line(out, "[skip]", "token subject", "needs a token")


def test_wrong_client_secret(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                             capsys: pytest.CaptureFixture[str]) -> None:
    workspace_env(mesh_sandbox, sdk_env)
    wrong = "not-the-secret-" + "x" * 20
    sdk_env.setenv(SECRET_ENV, wrong)
    code, out = doctor(capsys, "--secret-scope", SCOPE, *oidc_args(mesh_sandbox))
    assert code == 1
    line(out, "[ok]", "token issuer")
    failed = line(out, "[FAIL]", "token", "invalid_client")
    assert "client" in fix_under(out, failed)
    scan(mesh_sandbox, out, wrong)


def test_issuer_discovery(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                          capsys: pytest.CaptureFixture[str]) -> None:
    workspace_env(mesh_sandbox, sdk_env)
    o = mesh_sandbox.info["oidc"]
    sdk_env.setenv(SECRET_ENV, o["client_secret"])
    code, out = doctor(capsys, "--secret-scope", SCOPE, "--oidc-issuer", o["issuer"], "--oidc-client-id",
                       o["client_id"], "--oidc-audience", o["audience"])
    assert code == 0, out
    line(out, "[ok]", "token issuer", "discovery document", o["token_url"])
    line(out, "[ok]", "token subject", "'ml-pipeline'")
    scan(mesh_sandbox, out)


def test_unreachable_token_url(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                               capsys: pytest.CaptureFixture[str]) -> None:
    workspace_env(mesh_sandbox, sdk_env)
    sdk_env.setenv(SECRET_ENV, "s3cr3t-value-for-a-closed-port")
    code, out = doctor(capsys, "--secret-scope", SCOPE, "--oidc-token-url",
                       f"http://127.0.0.1:{closed_port()}/token", "--oidc-client-id", "x", "--timeout", "2")
    assert code == 1
    failed = line(out, "[FAIL]", "token issuer", "cannot be reached")
    assert "token URL" in fix_under(out, failed)
    line(out, "[skip]", "token expiry")


def test_token_file_with_the_wrong_audience(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert mesh_sandbox.issuer is not None
    workspace_env(mesh_sandbox, sdk_env)
    jwt = mesh_sandbox.issuer.issue_token("batch-job", audience="scoring")
    path = tmp_path / "token"
    path.write_text(jwt + "\n")
    code, out = doctor(capsys, "--secret-scope", SCOPE, "--token-file", str(path), "--oidc-audience", "mesh-services",
                       *target(mesh_sandbox))
    assert code == 1
    line(out, "[ok]", "token", f"FileToken(path='{path}')")
    line(out, "[ok]", "token subject", "'batch-job'")
    failed = line(out, "[FAIL]", "token audience", "'scoring'", "not 'mesh-services'")
    assert "audience" in fix_under(out, failed)
    failed = line(out, "[FAIL]", "token sent", "refused it", "401")
    assert "audience" in fix_under(out, failed)
    scan(mesh_sandbox, out, jwt)


def test_token_env_expired(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert mesh_sandbox.issuer is not None
    workspace_env(mesh_sandbox, sdk_env)
    jwt = mesh_sandbox.issuer.issue_token("batch-job", lifetime=-120)
    sdk_env.setenv("JOB_TOKEN", jwt)
    code, out = doctor(capsys, "--secret-scope", SCOPE, "--token-env", "JOB_TOKEN")
    assert code == 1
    failed = line(out, "[FAIL]", "token", "expired")
    assert fix_under(out, failed)
    scan(mesh_sandbox, out, jwt)


def test_token_env_valid_and_sent(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert mesh_sandbox.issuer is not None
    workspace_env(mesh_sandbox, sdk_env)
    jwt = mesh_sandbox.issuer.issue_token("batch-job", lifetime=900)
    sdk_env.setenv("JOB_TOKEN", jwt)
    code, out = doctor(capsys, "--secret-scope", SCOPE, "--token-env", "JOB_TOKEN", *target(mesh_sandbox))
    assert code == 0, out
    line(out, "[ok]", "token", "EnvironmentToken(var='JOB_TOKEN')")
    line(out, "[ok]", "token expiry", "left")
    line(out, "[ok]", "token sent", "subject 'batch-job'")
    scan(mesh_sandbox, out, jwt)


def test_unset_token_variable(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    workspace_env(mesh_sandbox, sdk_env)
    code, out = doctor(capsys, "--secret-scope", SCOPE, "--token-env", "NO_SUCH_TOKEN_VARIABLE")
    assert code == 1
    failed = line(out, "[FAIL]", "token", "NO_SUCH_TOKEN_VARIABLE", "not set")
    assert fix_under(out, failed)


def test_databricks_oauth_m2m(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch,
                              capsys: pytest.CaptureFixture[str]) -> None:
    workspace_env(mesh_sandbox, sdk_env, m2m=True)
    ws = mesh_sandbox.info["workspace"]
    code, out = doctor(capsys, "--secret-scope", SCOPE, "--databricks-oauth")
    assert code == 0, out
    line(out, "[ok]", "workspace", "auth type oauth-m2m", ws["client_id"])
    line(out, "[ok]", "token issuer", "databricks-sdk unified auth", ws["host"], "oauth-m2m")
    line(out, "[ok]", "token", "DatabricksOAuth", f"a JWT from issuer '{ws['host']}/oidc'")
    line(out, "[ok]", "token subject", ws["client_id"])
    line(out, "[ok]", "token audience", ws["host"])
    scan(mesh_sandbox, out)


def test_databricks_oauth_without_a_workspace(mesh_sandbox: Sandbox, sdk_env: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out = doctor(capsys, "--secret-scope", SCOPE, "--databricks-oauth")
    assert code == 1
    failed = line(out, "[FAIL]", "token issuer", "No usable Databricks workspace configuration")
    assert "DATABRICKS_HOST" in fix_under(out, failed)
    line(out, "[skip]", "token subject")


def test_doctor_function_in_a_notebook_reads_through_dbutils(notebook: FakeDbutils, mesh_sandbox: Sandbox,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    import meshclient

    svc = mesh_sandbox.service("echo")
    report = meshclient.doctor(secret_scope=SCOPE, target=svc["url"] + "/hello", server_identity=svc["identity"])
    out = capsys.readouterr().out
    assert report.ok, str(report)
    assert len(notebook.secrets.calls) == 3
    secrets = [c for c in report.checks if c.name == "secret"]
    assert len(secrets) == 3 and all("dbutils.secrets" in c.text for c in secrets)
    assert [c.status for c in report.checks if c.name in ("handshake", "request")] == ["ok", "ok"]
    for text in (out, str(report), report._repr_html_()):
        scan(mesh_sandbox, text)
