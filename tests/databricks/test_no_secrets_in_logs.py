"""A full flow at DEBUG level, every logger on (meshclient, urllib3, requests, databricks-sdk,
the sandbox servers): secret scope -> credentials -> token -> 16 requests -> failing requests.
Not one log record, formatted with its traceback, may hold key text, a token or a secret."""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from databricks_helpers import assert_no_secrets, secret_texts

from meshclient import Credentials, LoggingAuditSink, MeshClient, MeshError, raise_for_status
from meshclient.tokens import ClientCredentials
from meshclient_sandbox.runner import CLIENT_IDENTITY, Sandbox

pytest.importorskip("databricks.sdk")
from databricks.sdk import WorkspaceClient

LOGGERS = ("", "meshclient", "urllib3", "requests", "databricks", "databricks.sdk")


def test_debug_logs_of_a_full_flow_hold_no_secret(mesh_sandbox: Sandbox, sdk_env: Any,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    ws, o, svc = mesh_sandbox.info["workspace"], mesh_sandbox.info["oidc"], mesh_sandbox.service("echo")
    errors: list[str] = []

    # secret scope -> credentials, over OAuth M2M (so the SDK fetches and logs around a token too)
    w = WorkspaceClient(host=ws["host"], client_id=ws["client_id"], client_secret=ws["client_secret"],
                        debug_headers=True)
    creds = Credentials.from_secret_scope("ml-mesh", workspace_client=w)
    try:
        Credentials.from_secret_scope("ml-mesh", key_key="no-such-key", workspace_client=w)
    except MeshError as err:
        errors.append(f"{err} {err!r}")

    # token -> 16 concurrent requests -> failing requests
    provider = ClientCredentials(token_url=o["token_url"], client_id=o["client_id"],
                                 client_secret=o["client_secret"], audience=o["audience"])
    start = threading.Barrier(16)
    with MeshClient(creds, token=provider, audit=LoggingAuditSink(), pool_maxsize=16) as client:
        def call(i: int) -> dict[str, Any]:
            start.wait(timeout=10)
            resp = client.request("POST", f"{svc['url']}/items/{i}", server_identity=svc["identity"],
                                  json={"row": i})
            raise_for_status(resp)
            body: dict[str, Any] = resp.json()
            return body

        with ThreadPoolExecutor(16) as pool:
            bodies = list(pool.map(call, range(16)))
        assert {(b["client_id"], b["subject"]) for b in bodies} == {(CLIENT_IDENTITY, "ml-pipeline")}
        wrong = "scorer.ml-serving.serviceaccount.identity.linkerd.cluster.local"
        for attempt in (
            lambda: client.request("GET", svc["url"] + "/x", server_identity=wrong),
            lambda: raise_for_status(client.request("GET", svc["url"] + "/bytes/999999999999",
                                                    server_identity=svc["identity"])),
        ):
            try:
                attempt()
            except MeshError as err:
                errors.append(f"{err} {err!r}")
                logging.getLogger("test.flow").debug("request failed", exc_info=True)
        token_value = provider.token().value
    bad = MeshClient(creds, token=ClientCredentials(token_url=o["token_url"], client_id=o["client_id"],
                                                    client_secret="wrong-" + o["client_secret"]))
    with bad:
        try:
            bad.request("GET", svc["url"] + "/x", server_identity=svc["identity"])
        except MeshError as err:
            errors.append(f"{err} {err!r}")
            logging.getLogger("test.flow").debug("token failed", exc_info=True)
    sdk_token = w.config.oauth_token().access_token
    provider.close()

    assert len(errors) == 4, errors
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    text = "\n".join(formatter.format(r) for r in caplog.records)
    names = {r.name for r in caplog.records}
    # the scan covered what it claims to cover
    for prefix in ("meshclient.tokens", "meshclient.audit", "urllib3", "databricks.sdk", "test.flow"):
        assert any(n.startswith(prefix) for n in names), f"no {prefix} records captured: {sorted(names)}"
    assert "GET /api/2.0/secrets/get" in text  # databricks-sdk's request/response dump at DEBUG
    secrets = secret_texts(mesh_sandbox)
    assert_no_secrets(text, secrets, token_value, sdk_token, "wrong-" + o["client_secret"])
    assert_no_secrets("\n".join(errors), secrets, token_value, sdk_token)
