"""The Databricks workspace emulator, driven by the real ``databricks-sdk``.

``sdk_env`` keeps the SDK away from ``~/.databrickscfg``, ``DATABRICKS_*`` variables and
proxies, so the only configuration is what each test passes.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from cryptography import x509

from meshclient_sandbox.pki import IssuedLeaf
from meshclient_sandbox.workspace import MESH_IDENTITY_KEYS, Principal, WorkspaceEmulator

sdk = pytest.importorskip("databricks.sdk")
from databricks.sdk import WorkspaceClient  # noqa: E402
from databricks.sdk.errors import NotFound, PermissionDenied, ResourceDoesNotExist, Unauthenticated  # noqa: E402
from databricks.sdk.service.workspace import AclPermission  # noqa: E402

pytestmark = pytest.mark.usefixtures("no_server_threads_left")

SCOPE = "ml-mesh"
SECRET_VALUE = "the-secret-value-9f3a"


@pytest.fixture
def web() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False
        yield s


@pytest.fixture
def people(workspace: WorkspaceEmulator) -> dict[str, Principal]:
    p = {
        "admin": workspace.add_user("admin@example.com", admin=True),
        "alice": workspace.add_user("alice@example.com"),
        "mallory": workspace.add_user("mallory@example.com"),
        "sp": workspace.add_service_principal("notebook-sp"),
        "sp_noread": workspace.add_service_principal("other-sp"),
    }
    workspace.put_secret(SCOPE, "db-password", SECRET_VALUE)
    workspace.put_secret(SCOPE, "blob", b"\x00\xffbinary")
    workspace.put_acl(SCOPE, "alice@example.com", "READ")
    workspace.put_acl(SCOPE, "notebook-sp", "READ")
    return p


def sp_auth(who: Principal, secret: str | None = None) -> tuple[str, str]:
    assert who.client_id and who.client_secret
    return who.client_id, secret if secret is not None else who.client_secret


def pat_client(ws: WorkspaceEmulator, who: Principal) -> Any:
    return WorkspaceClient(host=ws.url, token=who.token)


def m2m_client(ws: WorkspaceEmulator, who: Principal) -> Any:
    return WorkspaceClient(host=ws.url, client_id=who.client_id, client_secret=who.client_secret)


def test_the_sdk_accepts_a_plain_http_loopback_host(workspace: WorkspaceEmulator, people: dict[str, Principal],
                                                    sdk_env: Any) -> None:
    w = pat_client(workspace, people["alice"])
    assert w.config.host == workspace.url and w.config.host.startswith("http://127.0.0.1:")
    assert w.config.auth_type == "pat"
    assert w.config.config_file == str(sdk_env.parent / "no-such-databrickscfg")


def test_pat_reads_a_secret(workspace: WorkspaceEmulator, people: dict[str, Principal]) -> None:
    w = pat_client(workspace, people["alice"])
    resp = w.secrets.get_secret(SCOPE, "db-password")
    assert resp.key == "db-password"
    assert base64.b64decode(resp.value).decode() == SECRET_VALUE
    assert base64.b64decode(w.secrets.get_secret(SCOPE, "blob").value) == b"\x00\xffbinary"
    assert sorted(s.key for s in w.secrets.list_secrets(SCOPE)) == ["blob", "db-password"]
    assert [s.name for s in w.secrets.list_scopes()] == [SCOPE]
    me = w.current_user.me()
    assert me.user_name == "alice@example.com" and me.active
    # the SDK's remote dbutils shim goes through the same endpoint
    assert w.dbutils.secrets.get(SCOPE, "db-password") == SECRET_VALUE
    assert w.dbutils.secrets.getBytes(SCOPE, "blob") == b"\x00\xffbinary"


def test_m2m_oauth_service_principal(workspace: WorkspaceEmulator, people: dict[str, Principal]) -> None:
    w = m2m_client(workspace, people["sp"])
    assert base64.b64decode(w.secrets.get_secret(SCOPE, "db-password").value).decode() == SECRET_VALUE
    assert [s.key for s in w.secrets.list_secrets(SCOPE)] == ["blob", "db-password"]
    me = w.current_user.me()
    assert me.display_name == "notebook-sp" and me.user_name == people["sp"].client_id
    assert w.config.auth_type == "oauth-m2m"
    assert workspace.token_requests == 1  # the SDK caches its token


def test_m2m_tokens_are_jwts_with_all_apis_scope(workspace: WorkspaceEmulator, people: dict[str, Principal],
                                                 web: requests.Session) -> None:
    sp = people["sp"]
    meta = web.get(f"{workspace.url}/.well-known/databricks-config", timeout=10).json()
    assert meta["oidc_endpoint"] == workspace.oidc_issuer
    doc = web.get(f"{workspace.url}/oidc/.well-known/oauth-authorization-server", timeout=10).json()
    assert doc["token_endpoint"] == workspace.token_url
    resp = web.post(workspace.token_url, data={"grant_type": "client_credentials", "scope": "all-apis",
                                               "client_id": sp.client_id, "client_secret": sp.client_secret},
                    timeout=10)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "all-apis" and body["expires_in"] == 3600
    assert body["access_token"].count(".") == 2
    for bad_scope in ("admin", "sql"):
        resp = web.post(workspace.token_url, data={"grant_type": "client_credentials", "scope": bad_scope},
                        auth=sp_auth(sp), timeout=10)
        assert resp.status_code == 400 and resp.json()["error"] == "invalid_scope"
    resp = web.post(workspace.token_url, data={"grant_type": "client_credentials"},
                    auth=sp_auth(sp, "wrong"), timeout=10)
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_client"
    assert resp.headers["WWW-Authenticate"].startswith("Basic")


def test_missing_key_and_scope_are_not_found(workspace: WorkspaceEmulator, people: dict[str, Principal]) -> None:
    w = pat_client(workspace, people["alice"])
    with pytest.raises(NotFound) as e:
        w.secrets.get_secret(SCOPE, "no-such-key")
    assert isinstance(e.value, ResourceDoesNotExist)
    assert e.value.error_code == "RESOURCE_DOES_NOT_EXIST"
    assert "no-such-key" in str(e.value)
    with pytest.raises(NotFound):
        w.secrets.list_secrets("no-such-scope")
    with pytest.raises(NotFound):
        m2m_client(workspace, people["sp"]).secrets.get_secret("no-such-scope", "x")


def test_principal_without_read_is_denied(workspace: WorkspaceEmulator, people: dict[str, Principal]) -> None:
    for w in (pat_client(workspace, people["mallory"]), m2m_client(workspace, people["sp_noread"])):
        with pytest.raises(PermissionDenied) as e:
            w.secrets.get_secret(SCOPE, "db-password")
        assert e.value.error_code == "PERMISSION_DENIED"
        assert "READ" in str(e.value) and SECRET_VALUE not in str(e.value)
        with pytest.raises(PermissionDenied):
            w.secrets.list_secrets(SCOPE)
    # READ does not allow writing, nor managing ACLs
    alice = pat_client(workspace, people["alice"])
    with pytest.raises(PermissionDenied):
        alice.secrets.put_secret(SCOPE, "k", string_value="v")
    with pytest.raises(PermissionDenied):
        alice.secrets.list_acls(SCOPE)


def test_seeding_through_the_api(workspace: WorkspaceEmulator, people: dict[str, Principal]) -> None:
    admin = pat_client(workspace, people["admin"])
    admin.secrets.create_scope("team")
    admin.secrets.put_secret("team", "s", string_value="text")
    admin.secrets.put_secret("team", "b", bytes_value=base64.b64encode(b"\x01\x02").decode())
    admin.secrets.put_acl("team", "alice@example.com", AclPermission.READ)
    admin.secrets.put_acl("team", people["sp"].client_id, AclPermission.WRITE)  # SP by application id
    acls = {a.principal: a.permission for a in admin.secrets.list_acls("team")}
    assert acls == {"admin@example.com": AclPermission.MANAGE, "alice@example.com": AclPermission.READ,
                    people["sp"].client_id: AclPermission.WRITE}
    assert admin.secrets.get_acl("team", "alice@example.com").permission == AclPermission.READ
    with pytest.raises(NotFound):
        admin.secrets.get_acl("team", "mallory@example.com")
    with pytest.raises(NotFound):
        admin.secrets.put_acl("team", "ghost@example.com", AclPermission.READ)
    assert workspace.get_secret_bytes("team", "b") == b"\x01\x02"

    sp = m2m_client(workspace, people["sp"])  # WRITE implies READ
    sp.secrets.put_secret("team", "from-sp", string_value="x")
    assert base64.b64decode(sp.secrets.get_secret("team", "from-sp").value) == b"x"
    sp.secrets.delete_secret("team", "from-sp")
    with pytest.raises(NotFound):
        sp.secrets.get_secret("team", "from-sp")

    alice = pat_client(workspace, people["alice"])
    assert base64.b64decode(alice.secrets.get_secret("team", "s").value) == b"text"
    admin.secrets.delete_acl("team", "alice@example.com")
    with pytest.raises(PermissionDenied):
        alice.secrets.get_secret("team", "s")
    # the users group grants everyone
    admin.secrets.put_acl("team", "users", AclPermission.READ)
    assert alice.secrets.get_secret("team", "s").value
    # any user may create a scope and manages it; RESOURCE_ALREADY_EXISTS on a duplicate
    alice.secrets.create_scope("alices")
    alice.secrets.put_secret("alices", "mine", string_value="1")
    with pytest.raises(sdk.errors.ResourceAlreadyExists):
        admin.secrets.create_scope("alices")
    with pytest.raises(sdk.errors.InvalidParameterValue):
        admin.secrets.create_scope("bad name!")
    with pytest.raises(sdk.errors.InvalidParameterValue):
        admin.secrets.put_secret("team", "x", string_value="a", bytes_value="YQ==")
    admin.secrets.delete_scope("alices")
    assert [s.name for s in admin.secrets.list_scopes()] == [SCOPE, "team"]


def test_unknown_and_expired_tokens_are_unauthenticated(workspace: WorkspaceEmulator, people: dict[str, Principal],
                                                        web: requests.Session) -> None:
    w = WorkspaceClient(host=workspace.url, token="dapi" + "0" * 32)
    with pytest.raises(Unauthenticated):
        w.secrets.list_scopes()
    resp = web.get(f"{workspace.url}/api/2.0/secrets/get", params={"scope": SCOPE, "key": "db-password"}, timeout=10)
    assert resp.status_code == 401
    assert resp.json() == {"error_code": "UNAUTHENTICATED",
                           "message": "Credential was not sent or was of an unsupported type for this API."}
    assert resp.headers["x-databricks-org-id"] == workspace.workspace_id
    resp = web.get(f"{workspace.url}/api/2.0/secrets/scopes/list", headers={"Authorization": "Bearer a.b.c"},
                   timeout=10)
    assert resp.status_code == 401 and resp.json()["error_code"] == "UNAUTHENTICATED"
    workspace.revoke_token(people["alice"].token or "")
    with pytest.raises(Unauthenticated):
        pat_client(workspace, people["alice"]).secrets.list_scopes()


def test_token_expiry_follows_the_clock(sdk_env: Any, web: requests.Session) -> None:
    now = [1_700_000_000.0]
    with WorkspaceEmulator(clock=lambda: now[0], oauth_token_lifetime=600) as ws:
        sp = ws.add_service_principal("sp", admin=True)
        user = ws.add_user("u@example.com", admin=True)
        short_pat = ws.create_token("u@example.com", lifetime=60)
        resp = web.post(ws.token_url, data={"grant_type": "client_credentials", "scope": "all-apis"},
                        auth=sp_auth(sp), timeout=10)
        oauth_token = resp.json()["access_token"]

        def status(tok: str) -> int:
            return web.get(f"{ws.url}/api/2.0/secrets/scopes/list", headers={"Authorization": f"Bearer {tok}"},
                           timeout=10).status_code

        assert status(oauth_token) == status(short_pat) == status(user.token or "") == 200
        now[0] += 61
        assert status(short_pat) == 401 and status(oauth_token) == 200
        now[0] += 600
        assert status(oauth_token) == 401
        assert "expired" in web.get(f"{ws.url}/api/2.0/secrets/scopes/list",
                                    headers={"Authorization": f"Bearer {oauth_token}"}, timeout=10).json()["message"]
        assert status(user.token or "") == 200


def test_seed_mesh_identity(workspace: WorkspaceEmulator, client_leaf: IssuedLeaf) -> None:
    workspace.seed_mesh_identity("mesh-id", client_leaf.chain_pem, client_leaf.key_pem,
                                 client_leaf.trust_anchors_pem, readers=["notebook-sp"])
    sp = workspace.add_service_principal("notebook-sp")
    w = m2m_client(workspace, sp)
    assert MESH_IDENTITY_KEYS == {"cert": "tls.crt", "key": "tls.key", "trust_anchors": "ca.crt"}
    assert sorted(s.key for s in w.secrets.list_secrets("mesh-id")) == ["ca.crt", "tls.crt", "tls.key"]
    chain = w.dbutils.secrets.getBytes("mesh-id", "tls.crt")
    assert chain == client_leaf.chain_pem
    assert w.dbutils.secrets.getBytes("mesh-id", "tls.key") == client_leaf.key_pem
    assert w.dbutils.secrets.getBytes("mesh-id", "ca.crt") == client_leaf.trust_anchors_pem
    certs = x509.load_pem_x509_certificates(chain)
    assert len(certs) == 2 and certs[0] == client_leaf.cert


def test_workspace_outage_hook(workspace: WorkspaceEmulator, people: dict[str, Principal],
                               web: requests.Session) -> None:
    workspace.set_outage(retry_after=2)
    resp = web.get(f"{workspace.url}/api/2.0/secrets/scopes/list",
                   headers={"Authorization": f"Bearer {people['alice'].token}"}, timeout=10)
    assert resp.status_code == 503 and resp.headers["Retry-After"] == "2"
    assert resp.json()["error_code"] == "TEMPORARILY_UNAVAILABLE"
    workspace.set_outage(False)
    assert pat_client(workspace, people["alice"]).secrets.list_scopes()
    assert workspace.api_requests >= 2


def test_unknown_endpoint_has_the_databricks_shape(workspace: WorkspaceEmulator, web: requests.Session) -> None:
    resp = web.get(f"{workspace.url}/api/2.0/clusters/list", timeout=10)
    assert resp.status_code == 404 and resp.json()["error_code"] == "ENDPOINT_NOT_FOUND"


def test_principal_repr_hides_credentials(people: dict[str, Principal]) -> None:
    for p in people.values():
        text = repr(p)
        assert (p.token or p.client_secret or "?") not in text


def test_logs_carry_no_secret_values_or_tokens(workspace: WorkspaceEmulator, people: dict[str, Principal],
                                               client_leaf: IssuedLeaf, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    workspace.seed_mesh_identity("mesh-id", client_leaf.chain_pem, client_leaf.key_pem,
                                 client_leaf.trust_anchors_pem, readers=["notebook-sp"])
    w = m2m_client(workspace, people["sp"])
    w.secrets.get_secret(SCOPE, "db-password")
    w.dbutils.secrets.getBytes("mesh-id", "tls.key")
    access = w.config.authenticate()["Authorization"].split(" ", 1)[1]  # works on SDK 0.20 and today
    a = pat_client(workspace, people["alice"])
    a.secrets.get_secret(SCOPE, "db-password")
    with pytest.raises(PermissionDenied):
        pat_client(workspace, people["mallory"]).secrets.get_secret(SCOPE, "db-password")
    with pytest.raises(Exception):  # noqa: B017 - any failure will do, the log is what matters
        WorkspaceClient(host=workspace.url, client_id=people["sp"].client_id,
                        client_secret="wrong-" + (people["sp"].client_secret or "")).secrets.list_scopes()
    # Our loggers only: the emulator's logs are what this project controls (databricks-sdk
    # masks "value" in its own DEBUG round-trip log; urllib3 logs query strings).
    ours = [r for r in caplog.records if r.name.startswith("meshclient")]
    text = "\n".join(r.getMessage() for r in ours)
    assert "read secret ml-mesh/db-password" in text and "GET /api/2.0/secrets/get -> 200" in text
    key_b64 = base64.b64encode(client_leaf.key_pem).decode()
    for needle in (SECRET_VALUE, base64.b64encode(SECRET_VALUE.encode()).decode(), people["alice"].token,
                   people["sp"].client_secret, access, *access.split(".")[1:], key_b64[:40], "PRIVATE KEY"):
        assert needle and needle not in text
