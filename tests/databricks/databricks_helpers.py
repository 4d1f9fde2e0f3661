"""Helpers for the Databricks tests: workspace settings, a simulated ``dbutils``, and the
strings that must never show up anywhere (key text, tokens, secrets)."""

from __future__ import annotations

import base64
import re
import uuid
from pathlib import Path
from typing import Any

import pytest

from meshclient_sandbox.runner import Sandbox
from meshclient_sandbox.workspace import WorkspaceEmulator

_JWT = re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]+")


def workspace_env(sandbox: Sandbox, mp: pytest.MonkeyPatch, *, m2m: bool = False) -> None:
    """DATABRICKS_HOST plus a PAT (or the service principal's OAuth M2M settings)."""
    ws = sandbox.info["workspace"]
    mp.setenv("DATABRICKS_HOST", ws["host"])
    if m2m:
        mp.setenv("DATABRICKS_CLIENT_ID", ws["client_id"])
        mp.setenv("DATABRICKS_CLIENT_SECRET", ws["client_secret"])
    else:
        mp.setenv("DATABRICKS_TOKEN", ws["token"])


def secret_texts(sandbox: Sandbox) -> list[str]:
    """Key text in every form it travels (PEM body lines, the API's base64), and every secret."""
    key_pem = Path(sandbox.info["client"]["key"]).read_bytes()
    body = [ln for ln in key_pem.decode().splitlines() if ln and not ln.startswith("-----")]
    api_b64 = base64.b64encode(key_pem).decode()
    ws, oidc = sandbox.info["workspace"], sandbox.info["oidc"]
    return [
        *body,
        "".join(body),
        api_b64[60:100],  # inside the key body (the first bytes are the well-known PEM header)
        api_b64[-60:-20],
        ws["token"],
        ws["client_secret"],
        oidc["client_secret"],
    ]


def assert_no_secrets(text: str, secrets: list[str], *extra: str | None) -> None:
    """No key line, token, client secret or JWT-shaped string in ``text``."""
    assert "PRIVATE KEY" not in text
    for secret in [*secrets, *(e for e in extra if e)]:
        assert secret not in text, f"secret text leaked: {secret[:6]}..."
    assert not _JWT.search(text), "a JWT leaked"


def unique_user(sandbox: Sandbox) -> Any:
    """A fresh workspace user with a PAT and no ACL on any scope (the session sandbox is shared)."""
    assert sandbox.workspace is not None
    return sandbox.workspace.add_user(f"no-read-{uuid.uuid4().hex[:8]}@example.com")


class FakeSecrets:
    """``dbutils.secrets`` as the Databricks runtime has it, backed by the workspace emulator.

    Missing keys raise what the runtime raises (a py4j-wrapped IllegalArgumentException, whose
    Python type carries no meaning), so classification by message is exercised.
    """

    def __init__(self, workspace: WorkspaceEmulator) -> None:
        self._ws = workspace
        self.calls: list[tuple[str, str]] = []

    def getBytes(self, scope: str, key: str) -> bytes:  # the runtime's camelCase name
        self.calls.append((scope, key))
        try:
            return self._ws.get_secret_bytes(scope, key)
        except KeyError:
            raise RuntimeError(f"java.lang.IllegalArgumentException: Secret does not exist with scope: {scope} "
                               f"and key: {key}") from None

    def get(self, scope: str, key: str) -> str:
        return self.getBytes(scope, key).decode("utf-8")


class FakeDbutils:
    def __init__(self, workspace: WorkspaceEmulator) -> None:
        self.secrets = FakeSecrets(workspace)
