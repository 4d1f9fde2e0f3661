"""The sandbox apps: echo (tokens), artifact store (digests, paths), results sink (idempotency, durability)."""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import requests
from proxy_fixtures import ML_TEAM, socket_fds, wait_until

from meshclient import Credentials
from meshclient.client import MeshClient
from meshclient_sandbox.apps import ArtifactStore, EchoApp, ResultsSink
from meshclient_sandbox.proxy import InboundProxy

SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
GOOD_TOKEN = "good-token-value-1234567890"


class FakeJWTError(Exception):
    """Shaped like meshclient.jose.JWTError: a message and a stable ``reason``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


def validator(token: str) -> Mapping[str, Any]:
    """A stand-in for the OIDC TokenValidator: claims for the one good token, an error otherwise."""
    if token == GOOD_TOKEN:
        return {"sub": "alice@example.com", "aud": "sandbox"}
    if token.startswith("expired"):
        raise FakeJWTError(f"token {token} expired", reason="expired")
    raise ValueError(f"signature check failed for {token}")


def digest_header(data: bytes, alg: str = "sha-256") -> str:
    h = hashlib.new(alg.replace("-", ""), data).digest()
    return f"{alg}=:{base64.b64encode(h).decode()}:"


def raw(app: Any, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """http.client, so paths reach the app exactly as written (requests normalizes dot segments)."""
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


@pytest.fixture
def session() -> Iterator[requests.Session]:
    with requests.Session() as s:
        s.trust_env = False
        yield s


# -- echo ----------------------------------------------------------------------------------------
def test_echo_reports_what_the_app_saw(session: requests.Session) -> None:
    with EchoApp() as app:
        resp = session.post(app.url + "/some/path?q=1", data=b"abc",
                            headers={"l5d-client-id": "notebook.ml-team", "X-Trace": "t1", "Cookie": "c=secret"})
    body = resp.json()
    assert body["client_id"] == "notebook.ml-team"
    assert body["method"] == "POST"
    assert body["path"] == "/some/path"
    assert body["headers"]["x-trace"] == "t1"
    assert "cookie" not in body["headers"]
    assert body["body"] == {"length": 3, "sha256": hashlib.sha256(b"abc").hexdigest()}
    assert body["subject"] is None and body["token"] == "none"


def test_echo_token_subject_never_the_token(session: requests.Session) -> None:
    with EchoApp(token_validator=validator) as app:
        good = session.get(app.url + "/", headers={"Authorization": f"Bearer {GOOD_TOKEN}"})
        bad = session.get(app.url + "/", headers={"Authorization": "Bearer forged-token-xyz"})
        none = session.get(app.url + "/")
    assert good.status_code == 200
    assert good.json()["subject"] == "alice@example.com"
    assert good.json()["token"] == "verified"
    assert GOOD_TOKEN not in good.text
    assert "authorization" not in good.json()["headers"]

    assert bad.status_code == 401
    assert bad.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert "forged-token-xyz" not in bad.headers["WWW-Authenticate"] + bad.text  # not even in the error
    assert bad.json()["error"] == "invalid_token"

    assert none.status_code == 200
    assert none.json()["subject"] is None


def test_echo_invalid_token_reason_is_a_code_never_the_message(session: requests.Session) -> None:
    with EchoApp(token_validator=validator) as app:
        expired = session.get(app.url + "/", headers={"Authorization": "Bearer expired-abc"})
        other = session.get(app.url + "/", headers={"Authorization": "Bearer forged-abc"})
    assert expired.headers["WWW-Authenticate"] == 'Bearer error="invalid_token", error_description="expired"'
    assert other.headers["WWW-Authenticate"] == 'Bearer error="invalid_token", error_description="ValueError"'
    assert "abc" not in expired.text + other.text


def test_echo_require_token(session: requests.Session) -> None:
    with EchoApp(token_validator=validator, require_token=True) as app:
        missing = session.get(app.url + "/")
        good = session.get(app.url + "/", headers={"Authorization": f"Bearer {GOOD_TOKEN}"})
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert good.status_code == 200
    with pytest.raises(ValueError):
        EchoApp(require_token=True)


def test_echo_without_validator_does_not_trust_tokens(session: requests.Session) -> None:
    with EchoApp() as app:
        body = session.get(app.url + "/", headers={"Authorization": "Bearer whatever"}).json()
    assert body["token"] == "unverified"
    assert body["subject"] is None


def test_echo_bad_token_keeps_connection_usable() -> None:
    with EchoApp(token_validator=validator) as app:
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
        conn.request("POST", "/", body=b"x" * 1000, headers={"Authorization": "Bearer nope"})
        first = conn.getresponse()
        first.read()
        conn.request("GET", "/")
        second = conn.getresponse()
        second.read()
        conn.close()
    assert (first.status, second.status) == (401, 200)


def test_echo_through_the_proxy_with_tokens(server_creds: Credentials, client_creds: Credentials) -> None:
    with EchoApp(token_validator=validator) as app, \
            InboundProxy(server_creds, app.port, policy={"access": "deny", "allow": [ML_TEAM]}) as proxy, \
            MeshClient(client_creds) as client:
        resp = client.get(proxy.url() + "/who", server_identity=SERVER_ID,
                          headers={"Authorization": f"Bearer {GOOD_TOKEN}"})
    assert resp.json()["client_id"] == str(client_creds.identity)
    assert resp.json()["subject"] == "alice@example.com"


# -- artifact store --------------------------------------------------------------------------------
def test_artifact_put_get_head(tmp_path: Path, session: requests.Session) -> None:
    data = os.urandom(3 * 1024 * 1024 + 1)
    with ArtifactStore(tmp_path) as store:
        put = session.put(store.url + "/runs/1/model.pkl", data=data, headers={"Content-Digest": digest_header(data)})
        assert put.status_code == 201
        assert put.json() == {"path": "runs/1/model.pkl", "size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        etag = put.headers["ETag"]
        got = session.get(store.url + "/runs/1/model.pkl")
        assert got.content == data
        assert got.headers["Content-Digest"] == digest_header(data)
        assert got.headers["ETag"] == etag
        head = session.head(store.url + "/runs/1/model.pkl")
        assert head.headers["Content-Length"] == str(len(data))
        assert head.headers["Content-Digest"] == digest_header(data)
        assert session.get(store.url + "/runs/1/model.pkl", headers={"If-None-Match": etag}).status_code == 304
        replaced = session.put(store.url + "/runs/1/model.pkl", data=b"v2")
        assert replaced.status_code == 200
        assert replaced.headers["ETag"] != etag
        listing = session.get(store.url + "/runs/").json()
        assert listing == {"path": "runs", "files": [{"path": "runs/1/model.pkl", "size": 2}]}
    # a new store on the same workdir serves the file and recomputes its digest
    with ArtifactStore(tmp_path) as again:
        assert session.get(again.url + "/runs/1/model.pkl").headers["Content-Digest"] == digest_header(b"v2")


def test_artifact_chunked_upload_and_sha512(tmp_path: Path, session: requests.Session) -> None:
    parts = [os.urandom(100_000) for _ in range(7)]
    data = b"".join(parts)
    with ArtifactStore(tmp_path) as store:
        put = session.put(store.url + "/c.bin", data=iter(parts),
                          headers={"Content-Digest": f"{digest_header(data, 'sha-512')}, md5=:AAAA:"})
        assert put.status_code == 201
        assert session.get(store.url + "/c.bin").content == data


def test_artifact_digest_mismatch_keeps_nothing(tmp_path: Path, session: requests.Session) -> None:
    with ArtifactStore(tmp_path) as store:
        bad = session.put(store.url + "/m.bin", data=b"actual bytes", headers={"Content-Digest": digest_header(b"other")})
        assert bad.status_code == 400
        assert bad.json()["error"] == "digest_mismatch"
        assert session.get(store.url + "/m.bin").status_code == 404
        # an existing file survives a failed replacement
        session.put(store.url + "/keep.bin", data=b"v1")
        assert session.put(store.url + "/keep.bin", data=b"v2",
                           headers={"Content-Digest": digest_header(b"v3")}).status_code == 400
        assert session.get(store.url + "/keep.bin").content == b"v1"
        malformed = session.put(store.url + "/x.bin", data=b"x", headers={"Content-Digest": "sha-256=not-base64"})
        assert malformed.status_code == 400
    assert not list((tmp_path / ".incoming").iterdir())  # no temporary file left behind


@pytest.mark.parametrize(
    "path",
    ["/../escape", "/a/../../escape", "/a/%2e%2e/%2e%2e/escape", "/a//b", "/a/./b", "/a%00b", "/a%5c..%5cb",
     "/%ff"],
)
def test_artifact_paths_cannot_escape(tmp_path: Path, path: str) -> None:
    with ArtifactStore(tmp_path / "store") as store:
        status, _, body = raw(store, "PUT", path, b"data")
        assert status == 400, body
        assert raw(store, "GET", path)[0] == 400
    assert not (tmp_path / "escape").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_artifact_symlink_escape_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("s")
    with ArtifactStore(tmp_path / "store") as store:
        (store.files / "link").symlink_to(outside)
        assert raw(store, "GET", "/link/secret")[0] == 400
        assert raw(store, "PUT", "/link/new", b"x")[0] == 400
    assert not (outside / "new").exists()


def test_artifact_create_only_and_conflicts(tmp_path: Path, session: requests.Session) -> None:
    with ArtifactStore(tmp_path, prefix="/artifacts") as store:
        assert session.put(store.url + "/artifacts/a", data=b"1", headers={"If-None-Match": "*"}).status_code == 201
        assert session.put(store.url + "/artifacts/a", data=b"2", headers={"If-None-Match": "*"}).status_code == 412
        assert session.put(store.url + "/artifacts/a/b", data=b"x").status_code == 409  # 'a' is a file
        assert session.put(store.url + "/elsewhere", data=b"x").status_code == 404
        assert session.delete(store.url + "/artifacts/a").status_code == 405
        assert session.get(store.url + "/artifacts/a").content == b"1"


# -- results sink -----------------------------------------------------------------------------------
def stage(session: requests.Session, sink: ResultsSink, name: str, batch: str, data: bytes, key: str | None,
          **headers: str) -> requests.Response:
    h = dict(headers)
    if key is not None:
        h["Idempotency-Key"] = key
    return session.put(f"{sink.url}/v1/datasets/{name}/batches/{batch}", data=data, headers=h)


def test_results_idempotent_staging(tmp_path: Path, session: requests.Session) -> None:
    with ResultsSink(tmp_path) as sink:
        first = stage(session, sink, "scores", "b1", b'{"id": 1, "score": 0.5}\n', "key-1",
                      **{"l5d-client-id": "notebook.ml-team"})
        assert first.status_code == 201
        assert first.json()["sha256"] == hashlib.sha256(b'{"id": 1, "score": 0.5}\n').hexdigest()
        assert first.json()["client_id"] == "notebook.ml-team"
        replay = stage(session, sink, "scores", "b1", b'{"id": 1, "score": 0.5}\n', "key-1")
        assert replay.status_code == 200
        assert replay.json() == first.json()
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert stage(session, sink, "scores", "b1", b"other bytes", "key-1").status_code == 422
        assert stage(session, sink, "scores", "b1", b'{"id": 1, "score": 0.5}\n', "key-2").status_code == 409
        assert stage(session, sink, "scores", "b2", b"x", "key-1").status_code == 422
        assert stage(session, sink, "scores", "b3", b"x", None).status_code == 400
        assert stage(session, sink, "scores", "bad id!", b"x", "k").status_code in (400, 404)
        assert stage(session, sink, "scores", "b4", b"x", "k4", **{"Content-Digest": digest_header(b"y")}).status_code == 400
        assert session.get(f"{sink.url}/v1/datasets/scores/batches/b4").status_code == 404
    batch_files = sorted(p.name for p in (tmp_path / "datasets" / "scores" / "batches").iterdir())
    assert batch_files == ["b1.data", "b1.json"]  # stored once, nothing from the refused requests


def test_results_commit_and_manifest(tmp_path: Path, session: requests.Session) -> None:
    with ResultsSink(tmp_path) as sink:
        for i in range(3):
            assert stage(session, sink, "scores", f"b{i}", b"row %d\n" % i, f"k{i}").status_code == 201
        assert session.get(f"{sink.url}/v1/datasets/scores").status_code == 404  # nothing committed yet
        missing = session.post(f"{sink.url}/v1/datasets/scores/commit", json={"batches": ["b0", "nope"]})
        assert missing.status_code == 409
        assert missing.json()["missing"] == ["nope"]
        c1 = session.post(f"{sink.url}/v1/datasets/scores/commit", json={"batches": ["b0", "b1"]})
        assert c1.status_code == 200
        assert c1.json()["version"] == 1
        assert c1.json()["added"] == ["b0", "b1"]
        again = session.post(f"{sink.url}/v1/datasets/scores/commit", json={"batches": ["b1", "b0"]})
        assert again.json()["version"] == 1 and again.json()["added"] == []
        c2 = session.post(f"{sink.url}/v1/datasets/scores/commit", json={"batches": ["b1", "b2"]})
        assert c2.json()["version"] == 2
        manifest = session.get(f"{sink.url}/v1/datasets/scores").json()
        assert [b["batch_id"] for b in manifest["batches"]] == ["b0", "b1", "b2"]
        assert manifest["size"] == sum(len(b"row %d\n" % i) for i in range(3))
        assert session.get(f"{sink.url}/v1/datasets/scores/batches/b2/data").content == b"row 2\n"
        assert session.get(f"{sink.url}/v1/datasets/scores/batches/b2").json()["committed"] is True
        assert session.get(f"{sink.url}/v1/datasets").json() == {"datasets": ["scores"]}
        assert session.post(f"{sink.url}/v1/datasets/scores/commit", data=b"not json").status_code == 400


def test_results_survive_a_restart(tmp_path: Path, session: requests.Session) -> None:
    with ResultsSink(tmp_path) as sink:
        first = stage(session, sink, "scores", "b1", b"batch one", "key-1")
        assert first.status_code == 201
        session.post(f"{sink.url}/v1/datasets/scores/commit", json={"batches": ["b1"]})
        manifest = session.get(f"{sink.url}/v1/datasets/scores").json()
    with ResultsSink(tmp_path) as restarted:
        replay = stage(session, restarted, "scores", "b1", b"batch one", "key-1")
        assert replay.status_code == 200
        assert replay.json() == first.json()  # the original result, staged_at included
        assert stage(session, restarted, "scores", "b9", b"x", "key-1").status_code == 422  # key index rebuilt
        assert session.get(f"{restarted.url}/v1/datasets/scores").json() == manifest
        assert session.get(f"{restarted.url}/v1/datasets/scores/batches/b1/data").content == b"batch one"


def test_results_partial_upload_is_never_visible(tmp_path: Path) -> None:
    import socket

    with ResultsSink(tmp_path) as sink:
        with socket.create_connection(("127.0.0.1", sink.port)) as sock:
            sock.sendall(b"PUT /v1/datasets/scores/batches/cut HTTP/1.1\r\nHost: x\r\nIdempotency-Key: k\r\n"
                         b"Content-Length: 1000\r\n\r\n" + b"x" * 10)
        assert wait_until(lambda: not list((tmp_path / ".incoming").iterdir()))
        status, _, _ = raw(sink, "GET", "/v1/datasets/scores/batches/cut")
        assert status == 404
        # the key is still free: the cut upload did not claim it
        status, _, _ = raw(sink, "PUT", "/v1/datasets/scores/batches/cut", b"complete", {"Idempotency-Key": "k"})
        assert status == 201


def test_results_concurrent_replays_store_once(tmp_path: Path) -> None:
    with ResultsSink(tmp_path) as sink:
        statuses: list[int] = []

        def send() -> None:
            statuses.append(raw(sink, "PUT", "/v1/datasets/d/batches/b", b"same" * 1000, {"Idempotency-Key": "k"})[0])

        threads = [threading.Thread(target=send) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert sorted(statuses) == [200] * 5 + [201]


def test_results_through_the_proxy(tmp_path: Path, server_creds: Credentials, client_creds: Credentials) -> None:
    with ResultsSink(tmp_path) as sink, \
            InboundProxy(server_creds, sink.port, policy={"access": "deny", "allow": [ML_TEAM]}) as proxy, \
            MeshClient(client_creds) as client:
        resp = client.put(proxy.url() + "/v1/datasets/scores/batches/b1", server_identity=SERVER_ID,
                          data=b"rows", headers={"Idempotency-Key": "k1"})
        assert resp.status_code == 201
        assert resp.json()["client_id"] == str(client_creds.identity)
        commit = client.post(proxy.url() + "/v1/datasets/scores/commit", server_identity=SERVER_ID,
                             json={"batches": ["b1"]})
        assert commit.json()["committed_by"] == str(client_creds.identity)


# -- lifecycle ---------------------------------------------------------------------------------------
def test_apps_stop_cleanly_with_idle_keep_alive_connections(tmp_path: Path) -> None:
    threads_before = set(threading.enumerate())
    sockets_before = socket_fds()
    apps = [EchoApp().start(), ArtifactStore(tmp_path / "a").start(), ResultsSink(tmp_path / "r").start()]
    conns = []
    for app in apps:
        conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
        conn.request("GET", "/")
        conn.getresponse().read()  # the connection stays open, its server thread waiting
        conns.append(conn)
    for app in apps:
        app.stop()
        assert not app.running
        app.stop()  # idempotent
    for conn in conns:
        conn.close()
    assert wait_until(lambda: set(threading.enumerate()) <= threads_before)
    assert wait_until(lambda: socket_fds() <= sockets_before)


def test_json_errors_have_a_stable_shape(tmp_path: Path) -> None:
    with ResultsSink(tmp_path) as sink:
        status, headers, body = raw(sink, "GET", "/nowhere")
    assert status == 404
    assert headers["content-type"] == "application/json"
    assert set(json.loads(body)) == {"error", "message"}
