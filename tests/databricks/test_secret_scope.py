"""``Credentials.from_secret_scope`` through the real databricks-sdk against the sandbox workspace,
then mutual TLS (and a client-credentials token) to the sandbox echo service with what it read."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from databricks_helpers import FakeDbutils, assert_no_secrets, secret_texts, unique_user, workspace_env

from meshclient import Credentials, MeshClient, MeshError
from meshclient.credentials.secret_scope import DbutilsSecretReader, read_secrets
from meshclient.errors import SecretScopeError
from meshclient.tokens import ClientCredentials
from meshclient_sandbox.runner import CLIENT_IDENTITY, Sandbox

pytest.importorskip("databricks.sdk")
from databricks.sdk import WorkspaceClient

SCOPE = "ml-mesh"


def echo(sandbox: Sandbox, client: MeshClient, path: str = "/hello") -> dict[str, Any]:
    svc = sandbox.service("echo")
    resp = client.request("GET", svc["url"] + path, server_identity=svc["identity"])
    assert resp.status_code == 200, resp.text
    body: dict[str, Any] = resp.json()
    return body


def client_credentials(sandbox: Sandbox) -> ClientCredentials:
    o = sandbox.info["oidc"]
    return ClientCredentials(token_url=o["token_url"], client_id=o["client_id"], client_secret=o["client_secret"],
                             audience=o["audience"])


def pat_client(sandbox: Sandbox) -> WorkspaceClient:
    ws = sandbox.info["workspace"]
    return WorkspaceClient(host=ws["host"], token=ws["token"])


def assert_clean_error(err: MeshError, sandbox: Sandbox, *, key: str) -> None:
    text = f"{err} {err!r} {err.hint}"
    assert f"'{SCOPE}'" in str(err) or f"'{key}'" in str(err)
    assert_no_secrets(text, secret_texts(sandbox))


# -- the identity from the scope, three ways of finding the workspace -------------------------
def test_pat_workspace_client_gives_the_identity_and_speaks_mtls(mesh_sandbox: Sandbox, sdk_env: Any) -> None:
    creds = Credentials.from_secret_scope(SCOPE, workspace_client=pat_client(mesh_sandbox))
    assert str(creds.identity) == CLIENT_IDENTITY == mesh_sandbox.info["client"]["identity"]
    assert f"secret scope '{SCOPE}'" in creds.source
    assert_no_secrets(repr(creds) + str(creds), secret_texts(mesh_sandbox))
    with MeshClient(creds) as client:
        body = echo(mesh_sandbox, client)
    assert body["client_id"] == CLIENT_IDENTITY
    assert body["token"] == "none"


def test_oauth_m2m_service_principal(mesh_sandbox: Sandbox, sdk_env: Any) -> None:
    ws = mesh_sandbox.info["workspace"]
    w = WorkspaceClient(host=ws["host"], client_id=ws["client_id"], client_secret=ws["client_secret"])
    assert w.config.auth_type == "oauth-m2m"
    creds = Credentials.from_secret_scope(SCOPE, workspace_client=w)
    assert str(creds.identity) == CLIENT_IDENTITY
    with MeshClient(creds, token=client_credentials(mesh_sandbox)) as client:
        body = echo(mesh_sandbox, client)
    assert (body["client_id"], body["subject"], body["token"]) == (CLIENT_IDENTITY, "ml-pipeline", "verified")


def test_unified_auth_from_the_environment_pat(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch) -> None:
    """No workspace_client: DATABRICKS_HOST/DATABRICKS_TOKEN, as on a job cluster or a laptop."""
    workspace_env(mesh_sandbox, sdk_env)
    creds = Credentials.from_secret_scope(SCOPE)
    assert str(creds.identity) == CLIENT_IDENTITY
    with MeshClient(creds) as client:
        assert echo(mesh_sandbox, client)["client_id"] == CLIENT_IDENTITY


def test_unified_auth_from_the_environment_m2m(mesh_sandbox: Sandbox, sdk_env: pytest.MonkeyPatch) -> None:
    workspace_env(mesh_sandbox, sdk_env, m2m=True)
    assert str(Credentials.from_secret_scope(SCOPE).identity) == CLIENT_IDENTITY


def test_custom_key_names(mesh_sandbox: Sandbox, sdk_env: Any) -> None:
    assert mesh_sandbox.workspace is not None
    ws = mesh_sandbox.workspace
    scope = "ml-mesh-renamed"
    for src, dst in (("tls.crt", "chain.pem"), ("tls.key", "key.pem"), ("ca.crt", "anchors.pem")):
        ws.put_secret(scope, dst, ws.get_secret_bytes(SCOPE, src))  # creates the scope; idempotent
    creds = Credentials.from_secret_scope(scope, cert_key="chain.pem", key_key="key.pem", anchors_key="anchors.pem",
                                          workspace_client=pat_client(mesh_sandbox))
    assert str(creds.identity) == CLIENT_IDENTITY


# -- failures name scope and key, say what to do, and hold no secret text -------------------
def test_missing_key(mesh_sandbox: Sandbox, sdk_env: Any) -> None:
    with pytest.raises(MeshError) as info:
        Credentials.from_secret_scope(SCOPE, key_key="no-such-key", workspace_client=pat_client(mesh_sandbox))
    err = info.value
    assert isinstance(err, SecretScopeError) and (err.scope, err.key) == (SCOPE, "no-such-key")
    assert f"Secret scope '{SCOPE}' has no key 'no-such-key'" in err.message
    assert err.hint and "list-secrets" in err.hint
    assert_clean_error(err, mesh_sandbox, key="no-such-key")


def test_missing_scope(mesh_sandbox: Sandbox, sdk_env: Any) -> None:
    with pytest.raises(SecretScopeError) as info:
        Credentials.from_secret_scope("no-such-scope", workspace_client=pat_client(mesh_sandbox))
    err = info.value
    assert err.scope == "no-such-scope" and "does not exist" in err.message
    assert err.hint and "list-scopes" in err.hint
    assert_no_secrets(str(err), secret_texts(mesh_sandbox))


def test_principal_without_read(mesh_sandbox: Sandbox, sdk_env: Any) -> None:
    user = unique_user(mesh_sandbox)
    w = WorkspaceClient(host=mesh_sandbox.info["workspace"]["host"], token=user.token)
    with pytest.raises(SecretScopeError) as info:
        Credentials.from_secret_scope(SCOPE, workspace_client=w)
    err = info.value
    assert "may not read" in err.message and f"'{SCOPE}'" in err.message and "'tls.crt'" in err.message
    assert err.hint and "READ" in err.hint and "put-acl" in err.hint
    assert_no_secrets(str(err), secret_texts(mesh_sandbox), user.token)


def test_no_workspace_configured(sdk_env: Any, mesh_sandbox: Sandbox) -> None:
    with pytest.raises(SecretScopeError) as info:
        Credentials.from_secret_scope(SCOPE)
    assert "No Databricks workspace is configured" in info.value.message
    assert info.value.hint and "DATABRICKS_HOST" in info.value.hint


# -- the notebook path: dbutils.secrets ------------------------------------------------------
def test_notebook_reads_through_dbutils(notebook: FakeDbutils, mesh_sandbox: Sandbox) -> None:
    """DATABRICKS_RUNTIME_VERSION + dbutils in the IPython namespace: no WorkspaceClient at all
    (no DATABRICKS_HOST is set, so the SDK path would fail)."""
    assert mesh_sandbox.workspace is not None
    before = mesh_sandbox.workspace.api_requests
    creds = Credentials.from_secret_scope(SCOPE)
    assert str(creds.identity) == CLIENT_IDENTITY
    assert notebook.secrets.calls == [(SCOPE, "tls.crt"), (SCOPE, "tls.key"), (SCOPE, "ca.crt")]
    assert mesh_sandbox.workspace.api_requests == before
    with MeshClient(creds) as client:
        assert echo(mesh_sandbox, client)["client_id"] == CLIENT_IDENTITY


def test_notebook_missing_key_through_dbutils(notebook: FakeDbutils, mesh_sandbox: Sandbox) -> None:
    with pytest.raises(SecretScopeError) as info:
        Credentials.from_secret_scope(SCOPE, anchors_key="no-such-key")
    err = info.value
    assert (err.scope, err.key) == (SCOPE, "no-such-key") and "dbutils.secrets" in err.message
    assert "'no-such-key'" in err.message
    assert_no_secrets(str(err), secret_texts(mesh_sandbox))


def test_sdk_dbutils_shim_as_a_reader(mesh_sandbox: Sandbox, sdk_env: Any) -> None:
    """databricks-sdk's own REST-backed ``dbutils`` (what a job gets from ``w.dbutils``) works too."""
    reader = DbutilsSecretReader(pat_client(mesh_sandbox).dbutils)
    values = read_secrets(SCOPE, ("tls.crt", "tls.key", "ca.crt"), reader)
    creds = Credentials.from_pem(values["tls.crt"], values["tls.key"], values["ca.crt"])
    assert str(creds.identity) == CLIENT_IDENTITY
    with pytest.raises(SecretScopeError) as info:
        reader.get_bytes(SCOPE, "no-such-key")
    assert "'no-such-key'" in info.value.message


# -- one token for many concurrent requests ----------------------------------------------------
def test_sixteen_concurrent_requests_fetch_one_token(mesh_sandbox: Sandbox, sdk_env: Any) -> None:
    assert mesh_sandbox.issuer is not None
    creds = Credentials.from_secret_scope(SCOPE, workspace_client=pat_client(mesh_sandbox))
    provider = client_credentials(mesh_sandbox)
    start = threading.Barrier(16)
    before = mesh_sandbox.issuer.token_requests
    with MeshClient(creds, token=provider, pool_maxsize=16) as client:
        def call(_: int) -> dict[str, Any]:
            start.wait(timeout=10)
            return echo(mesh_sandbox, client)

        with ThreadPoolExecutor(16) as pool:
            bodies = list(pool.map(call, range(16)))
    assert mesh_sandbox.issuer.token_requests - before == 1
    assert len(bodies) == 16
    assert {(b["client_id"], b["subject"], b["token"]) for b in bodies} == {(CLIENT_IDENTITY, "ml-pipeline", "verified")}
    provider.close()
