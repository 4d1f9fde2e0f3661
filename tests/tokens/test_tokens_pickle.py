"""Providers travel to Spark executors by pickle: no locks, sessions, threads or cached tokens."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tokens_helpers import CLIENT_ID, SECRET, FakeClock

from meshclient.tokens import (
    ClientCredentials,
    EnvironmentToken,
    FileToken,
    RefreshSettings,
    StaticToken,
    TokenExchange,
    TokenState,
)
from meshclient_sandbox.oidc import OIDCIssuer


def test_client_credentials_round_trip(issuer: OIDCIssuer, clock: FakeClock) -> None:
    p = ClientCredentials(
        token_url=issuer.token_url,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        scope="mesh.read",
        refresh=RefreshSettings(clock=clock),
    )
    cached = p.token()
    data = pickle.dumps(p)
    assert cached.value.encode() not in data  # cached tokens stay behind
    q = pickle.loads(data)
    assert q.state is TokenState.EXPIRED  # nothing cached on arrival
    assert q._cond is not p._cond and q._http._session is None
    assert isinstance(q._cond, type(threading.Condition()))
    fresh = q.token()
    assert fresh.value != cached.value and fresh.subject == CLIENT_ID
    assert issuer.token_requests == 2
    assert repr(q) == repr(p)


def test_private_key_jwt_round_trip(
    issuer: OIDCIssuer, clock: FakeClock, client_key: ec.EllipticCurvePrivateKey
) -> None:
    p = ClientCredentials(
        token_url=issuer.token_url, client_id="jwt-client", private_key=client_key, refresh=RefreshSettings(clock=clock)
    )
    p.token()
    q = pickle.loads(pickle.dumps(p))
    assert q._client_auth.key is not None and q.token().subject == "jwt-client"


def test_background_refresh_provider_round_trip(issuer: OIDCIssuer, clock: FakeClock) -> None:
    p = ClientCredentials(
        token_url=issuer.token_url,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        refresh=RefreshSettings(clock=clock, background=True),
    )
    p.token()
    assert p._bg_thread is not None and p._bg_thread.is_alive()
    q = pickle.loads(pickle.dumps(p))
    assert q._bg_thread is None  # threads are rebuilt lazily on arrival
    q.token()
    assert q._bg_thread is not None and q._bg_thread is not p._bg_thread and q._bg_thread.is_alive()
    p.close()
    q.close()
    assert not q._bg_thread.is_alive()


def test_a_closed_provider_arrives_open(issuer: OIDCIssuer, clock: FakeClock) -> None:
    p = ClientCredentials(
        token_url=issuer.token_url, client_id=CLIENT_ID, client_secret=SECRET, refresh=RefreshSettings(clock=clock)
    )
    p.close()
    assert pickle.loads(pickle.dumps(p)).token().subject == CLIENT_ID


def test_token_exchange_round_trip_with_file_subject(issuer: OIDCIssuer, clock: FakeClock, tmp_path: Path) -> None:
    path = tmp_path / "token"
    path.write_text(issuer.issue_token("system:serviceaccount:ml-team:scorer"))
    x = TokenExchange(
        token_url=issuer.token_url,
        subject_token=FileToken(path, refresh=RefreshSettings(clock=clock)),
        client_id=CLIENT_ID,
        client_secret=SECRET,
        refresh=RefreshSettings(clock=clock),
    )
    first = x.token()
    data = pickle.dumps(x)
    assert first.value.encode() not in data and path.read_text().encode() not in data
    y = pickle.loads(data)
    assert y.token().subject == "system:serviceaccount:ml-team:scorer"


def test_simple_providers_round_trip(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    s = pickle.loads(pickle.dumps(StaticToken("static-token-value")))
    assert s.token().value == "static-token-value"  # a static token *is* its configuration
    monkeypatch.setenv("EXEC_TOKEN", "env-token-value")
    e = EnvironmentToken("EXEC_TOKEN")
    e.token()
    data = pickle.dumps(e)
    assert b"env-token-value" not in data  # the executor reads its own environment
    assert pickle.loads(data).token().value == "env-token-value"
    (tmp_path / "t").write_text("file-token-value")
    f = FileToken(tmp_path / "t")
    f.token()
    data = pickle.dumps(f)
    assert b"file-token-value" not in data
    assert pickle.loads(data).token().value == "file-token-value"


def test_unpickled_in_another_process(client_key: ec.EllipticCurvePrivateKey) -> None:
    """What a Spark executor does: a fresh interpreter, the pickled provider, a token."""
    with OIDCIssuer(token_lifetime=300) as srv:  # real clock: the child process has no fake one
        srv.register_client(CLIENT_ID, secret=SECRET)
        p = ClientCredentials(token_url=srv.token_url, client_id=CLIENT_ID, client_secret=SECRET)
        p.token()
        code = (
            "import pickle, sys; p = pickle.loads(sys.stdin.buffer.read()); t = p.token(); "
            "print(t.subject, p.state.value, p._bg_thread is None)"
        )
        env = dict(os.environ, NO_PROXY="127.0.0.1,localhost")
        out = subprocess.run(
            [sys.executable, "-c", code], input=pickle.dumps(p), capture_output=True, timeout=60, env=env, check=True
        )
        assert out.stdout.decode().split() == [CLIENT_ID, "fresh", "True"]
        assert srv.token_requests == 2
