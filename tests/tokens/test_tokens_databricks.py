"""DatabricksOAuth through the real databricks-sdk against the sandbox WorkspaceEmulator."""

from __future__ import annotations

import datetime as dt
import logging
import pickle
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tokens_helpers import FakeClock

from meshclient import ConfigurationError
from meshclient.tokens import DatabricksOAuth, RefreshSettings, TokenEndpointError, TokenError, TokenState
from meshclient.tokens.databricks import _aware
from meshclient_sandbox.jose import verify_jwt
from meshclient_sandbox.workspace import WorkspaceEmulator

pytest.importorskip("databricks.sdk")

SP_SECRET = "dose-0123456789abcdef0123456789abcdef"
PAT = "dapi0123456789abcdef0123456789abcdef"


@pytest.fixture
def workspace(clean_env: Path) -> Iterator[WorkspaceEmulator]:
    with WorkspaceEmulator() as ws:
        ws.add_service_principal("etl-sp", client_id="etl-sp-app-id", client_secret=SP_SECRET)
        ws.add_user("alice", token=PAT)
        yield ws


def test_oauth_m2m_service_principal(workspace: WorkspaceEmulator) -> None:
    p = DatabricksOAuth(host=workspace.url, client_id="etl-sp-app-id", client_secret=SP_SECRET)
    t = p.token()
    claims = verify_jwt(t.value, workspace._key, issuer=workspace.oidc_issuer, audience=workspace.url)
    assert claims["sub"] == "etl-sp-app-id" and t.subject == "etl-sp-app-id"
    assert t.expires_at is not None and t.expires_at.tzinfo is not None
    assert t.expires_in() == pytest.approx(workspace.oauth_token_lifetime, abs=30)
    assert p.token() is t and workspace.token_requests == 1
    assert "etl-sp-app-id" in repr(p) and SP_SECRET not in repr(p)


def test_m2m_from_the_environment_like_a_job_cluster(
    workspace: WorkspaceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABRICKS_HOST", workspace.url)
    monkeypatch.setenv("DATABRICKS_CLIENT_ID", "etl-sp-app-id")
    monkeypatch.setenv("DATABRICKS_CLIENT_SECRET", SP_SECRET)
    assert DatabricksOAuth().token().subject == "etl-sp-app-id"


def test_from_workspace_client(workspace: WorkspaceEmulator) -> None:
    from databricks.sdk import WorkspaceClient

    w = WorkspaceClient(host=workspace.url, client_id="etl-sp-app-id", client_secret=SP_SECRET)
    p = DatabricksOAuth.from_workspace_client(w)
    assert p.token().subject == "etl-sp-app-id"
    q = pickle.loads(pickle.dumps(p))  # a Config does not travel: its settings do
    assert q._config is None and q.token().subject == "etl-sp-app-id"
    assert SP_SECRET not in repr(q)


def test_pat_through_the_header_path(workspace: WorkspaceEmulator) -> None:
    p = DatabricksOAuth(host=workspace.url, token=PAT)
    t = p.token()
    assert t.value == PAT and t.expires_at is None
    assert p.authorization_header() == f"Bearer {PAT}"
    assert PAT not in repr(p)


def test_sdk_without_oauth_token_uses_the_authenticate_header(
    workspace: WorkspaceEmulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """databricks-sdk 0.20.0 (Databricks Runtime 15.4) has no Config.oauth_token()."""
    from databricks.sdk.core import Config

    monkeypatch.delattr(Config, "oauth_token", raising=False)
    p = DatabricksOAuth(host=workspace.url, client_id="etl-sp-app-id", client_secret=SP_SECRET)
    t = p.token()
    assert t.subject == "etl-sp-app-id" and t.expires_at is not None  # expiry from the JWT claims


def test_the_sdk_cache_is_asked_again_every_recheck_interval(workspace: WorkspaceEmulator) -> None:
    clock = FakeClock(dt.datetime.now(dt.timezone.utc).timestamp())
    p = DatabricksOAuth(
        host=workspace.url,
        client_id="etl-sp-app-id",
        client_secret=SP_SECRET,
        refresh=RefreshSettings(clock=clock),
        recheck_interval=60,
    )
    first = p.token()
    clock.advance(61)
    assert p.state is TokenState.STALE
    p.token()
    t = p._async_thread
    assert t is not None
    t.join(30)
    assert p.state is TokenState.FRESH
    if workspace.token_requests == 1:  # SDKs that cache M2M tokens: the same token comes back
        assert p.token().value == first.value
    else:  # databricks-sdk 0.49 (Runtime 17.3) mints a new one when asked again
        assert workspace.token_requests == 2 and p.token().value != first.value


def test_wrong_secret_is_a_clear_endpoint_error(workspace: WorkspaceEmulator, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "dose-not-the-right-secret-0000"
    p = DatabricksOAuth(host=workspace.url, client_id="etl-sp-app-id", client_secret=secret)
    with pytest.raises(TokenEndpointError) as info:
        p.token()
    err = info.value
    assert err.error == "invalid_client" and err.client_id == "etl-sp-app-id"
    assert workspace.url in str(err) and "etl-sp-app-id" in str(err)
    assert secret not in str(err) and secret not in caplog.text


def test_no_credentials_at_all_is_a_token_error(workspace: WorkspaceEmulator) -> None:
    with pytest.raises(TokenError) as info:
        DatabricksOAuth(host=workspace.url).token()
    assert "DatabricksOAuth" in str(info.value)


def test_missing_sdk_says_which_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "databricks" or m.startswith("databricks.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "databricks", None)  # makes the import fail
    with pytest.raises(ConfigurationError) as info:
        DatabricksOAuth(host="https://adb-1.azuredatabricks.net")
    assert "pip install 'meshclient[databricks]'" in str(info.value)


def test_settings_and_config_are_exclusive() -> None:
    with pytest.raises(ConfigurationError):
        DatabricksOAuth(host="https://x.cloud.databricks.com", config=object())


def test_naive_sdk_expiry_is_local_time() -> None:
    naive_local = dt.datetime.now() + dt.timedelta(seconds=600)
    aware = _aware(naive_local)
    assert aware is not None and aware.tzinfo is not None
    assert (aware - dt.datetime.now(dt.timezone.utc)).total_seconds() == pytest.approx(600, abs=5)
