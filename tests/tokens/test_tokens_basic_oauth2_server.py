"""ClientCredentials against an OAuth server nobody here wrote: basic-oauth2-server (PyPI).

basic-oauth2-server 0.1.6 (FastAPI + SQLite, client credentials only, JWT access tokens)
runs as a subprocess on a loopback port; clients are registered with its own CLI. It needs
Python >= 3.12, so it lives in a tool venv of its own. The test finds it through
``$MESHCLIENT_BASIC_OAUTH2_SERVER``, then ``PATH``, then ``<repo>/.venv-oauth2/bin``::

    python3.12 -m venv .venv-oauth2 && .venv-oauth2/bin/pip install basic-oauth2-server==0.1.6

Its quirks, as met by a real user: the client secret travels base64-encoded (the server
decodes what it receives, so the value to configure is the base64 text the CLI prints); it
does not form-urldecode Basic credentials (RFC 6749 §2.3.1), so a secret with ``+``/``/``/
``=`` needs ``client_secret_post`` there; and its ES256/384/512 tokens carry DER-encoded
signatures instead of RFC 7518's raw ``r || s`` (jws-algorithms signs with cryptography's
default), which strict verifiers refuse, so the server signs RS256 here.
"""

from __future__ import annotations

import base64
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from meshclient.tokens import ClientCredentials, TokenEndpointError
from meshclient_sandbox.jose import verify_jwt

REPO = Path(__file__).resolve().parents[2]
AUDIENCE = "https://scoring.ml-serving.svc.cluster.local"


def _executable() -> str | None:
    candidates = [
        os.environ.get("MESHCLIENT_BASIC_OAUTH2_SERVER"),
        shutil.which("basic-oauth2-server"),
        str(REPO / ".venv-oauth2" / "bin" / "basic-oauth2-server"),
    ]
    for c in candidates:
        if c and os.access(c, os.X_OK):
            return c
    return None


EXE = _executable()
pytestmark = pytest.mark.skipif(
    EXE is None,
    reason="basic-oauth2-server is not installed (needs Python >= 3.12: "
    "python3.12 -m venv .venv-oauth2 && .venv-oauth2/bin/pip install basic-oauth2-server==0.1.6)",
)


@dataclass
class Server:
    url: str
    db: Path
    env: dict[str, str]
    public_key: rsa.RSAPublicKey

    @property
    def token_url(self) -> str:
        return f"{self.url}/oauth/token"

    def cli(self, *args: str) -> str:
        assert EXE is not None
        out = subprocess.run(
            [EXE, "--db", str(self.db), "--app-url", self.url, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    assert EXE is not None
    work = tmp_path_factory.mktemp("basic-oauth2-server")
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    key_file = work / "rs256.pem"
    key_file.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_file.chmod(0o600)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OAUTH_", "APP_"))}
    env.update(APP_KEY=base64.b64encode(os.urandom(32)).decode(), NO_PROXY="127.0.0.1,localhost")
    srv = Server(url=url, db=work / "oauth.db", env=env, public_key=key.public_key())
    log = (work / "server.log").open("wb")
    proc = subprocess.Popen(
        [
            EXE,
            "--db",
            str(srv.db),
            "--app-url",
            url,
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--rsa-private-key",
            f"@{key_file}",
            "--rsa-key-id",
            "sandbox-rs256",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60  # bounds a hang only; normally up in about a second
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"basic-oauth2-server exited: {(work / 'server.log').read_text()}")
            try:
                requests.get(f"{url}/docs", timeout=2)
                break
            except requests.ConnectionError:
                if time.monotonic() > deadline:
                    raise AssertionError("basic-oauth2-server did not start") from None
                time.sleep(0.05)
        yield srv
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        log.close()


def _register(server: Server, client_id: str, *extra: str) -> str:
    out = server.cli(
        "clients",
        "create",
        "--client-id",
        client_id,
        "--algorithm",
        "RS256",
        "--scope",
        "mesh.read",
        "--audience",
        AUDIENCE,
        *extra,
    )
    secrets = [line.split("=", 1)[1] for line in out.splitlines() if line.startswith("OAUTH_CLIENT_SECRET=")]
    return secrets[0] if secrets else ""


def test_client_credentials_with_a_generated_secret(server: Server) -> None:
    secret = _register(server, "mesh-etl")  # the CLI prints it base64-encoded: that is what clients send
    assert secret
    p = ClientCredentials(
        token_url=server.token_url,
        client_id="mesh-etl",
        client_secret=secret,
        auth_method="client_secret_post",
        scope="mesh.read",
        audience=AUDIENCE,
    )
    t = p.token()
    claims = verify_jwt(t.value, server.public_key, issuer=server.url, audience=AUDIENCE)
    assert claims["sub"] == "mesh-etl" and t.subject == "mesh-etl" and t.scope == "mesh.read"
    assert t.expires_in() == pytest.approx(3600, abs=60)
    assert p.token() is t  # cached


def test_client_secret_basic(server: Server) -> None:
    secret = "bWVzaGNsaWVudC1iYXNpYy0wMDAx"  # base64 text without '+', '/', '=': safe in Basic either way
    _register(server, "mesh-basic", "--client-secret", f"base64:{secret}")
    p = ClientCredentials(token_url=server.token_url, client_id="mesh-basic", client_secret=secret)
    t = p.token()
    assert verify_jwt(t.value, server.public_key, issuer=server.url, audience=None)["sub"] == "mesh-basic"


def test_wrong_secret_names_url_and_client_not_secret(server: Server) -> None:
    _register(server, "mesh-wrong")
    wrong = base64.b64encode(b"definitely-not-it").decode()
    p = ClientCredentials(token_url=server.token_url, client_id="mesh-wrong", client_secret=wrong)
    with pytest.raises(TokenEndpointError) as info:
        p.token()
    err = info.value
    assert err.error == "invalid_client" and err.status == 401
    assert server.token_url in str(err) and "mesh-wrong" in str(err) and wrong not in str(err)


def test_audience_not_allowed(server: Server) -> None:
    secret = _register(server, "mesh-aud")
    p = ClientCredentials(
        token_url=server.token_url,
        client_id="mesh-aud",
        client_secret=secret,
        auth_method="client_secret_post",
        audience="https://elsewhere.example",
    )
    with pytest.raises(TokenEndpointError) as info:
        p.token()
    assert info.value.error == "invalid_audience" and "audience" in (info.value.hint or "")
