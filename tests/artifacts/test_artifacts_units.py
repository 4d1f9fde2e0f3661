"""Small pieces without a server: paths, manifest, bodies; and secrets kept out of reports and errors."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from artifact_helpers import OTHER_ID, STORE_ID, needs_nginx

from meshclient import MeshClient, TLSHandshakeError
from meshclient.artifacts import ArtifactChangedError, Manifest, ManifestEntry, push
from meshclient.artifacts.body import FileBody
from meshclient.artifacts.digest import content_digest, parse_sha256
from meshclient.artifacts.paths import check_relative, join_url, quote_path
from meshclient.errors import ConfigurationError
from meshclient_sandbox.nginx_dav import NginxDavPeer


def test_paths_are_encoded_per_segment_and_checked() -> None:
    assert quote_path("a b/ü#1?.txt") == "a%20b/%C3%BC%231%3F.txt"
    assert quote_path("100%/x+y") == "100%25/x%2By"
    assert join_url("https://h:1/base/?k=v", "a%20b") == "https://h:1/base/a%20b?k=v"
    for bad in ("../x", "/abs", "a//b", "a/./b", "a\\b", "", "a/\0"):
        with pytest.raises(ConfigurationError):
            check_relative(bad, "test")


def test_manifest_round_trip_and_refusals() -> None:
    m = Manifest.of([ManifestEntry("b", 1, "a" * 64), ManifestEntry("ä/c", 0, "b" * 64)])
    back = Manifest.from_json(m.to_json(), "here")
    assert [e.path for e in back.entries] == ["b", "ä/c"] and back.total_bytes == 1
    for doc in (b"not json", b'{"format": "other", "entries": []}',
                b'{"format": "meshclient-artifacts/1", "entries": [{"path": "x", "size": -1, "sha256": "' + b"a" * 64 + b'"}]}',
                b'{"format": "meshclient-artifacts/1", "entries": [{"path": "x", "size": 1, "sha256": "zz"}]}'):
        with pytest.raises(ConfigurationError):
            Manifest.from_json(doc, "here")


def test_content_digest_format() -> None:
    sha = hashlib.sha256(b"hello").hexdigest()
    assert content_digest(sha) == "sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:"
    assert parse_sha256("sha-512=:AAAA:, sha-256=:LPJNul+wow4m6DsqxbninhsWHlwfp0JecwQzYpOLmCQ=:") == sha
    assert parse_sha256("sha-256=:bad:") is None and parse_sha256(None) is None


@pytest.mark.parametrize("inline", [False, True])
def test_file_body_replays_and_hashes(tmp_path: Path, inline: bool) -> None:
    f = tmp_path / "f"
    data = os.urandom(3 * 1024 * 1024 + 5)
    f.write_bytes(data)
    body = FileBody(f, len(data), "f", hash_inline=inline)
    first = iter(body)
    next(first)  # a cut after the first chunk...
    first.close()
    body.seek(0)  # ...then the retry's rewind
    assert b"".join(body) == data and body.passes == 2 and len(body) == len(data)
    if inline:
        assert body.sha256 == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("inline", [False, True])
def test_file_body_stops_when_the_file_changed(tmp_path: Path, inline: bool) -> None:
    f = tmp_path / "f"
    f.write_bytes(b"x" * 100)
    with pytest.raises(ArtifactChangedError, match="changed while it was being pushed"):
        b"".join(FileBody(f, 200, "f", hash_inline=inline))


@needs_nginx
def test_query_values_never_reach_reports_audit_or_errors(dav: NginxDavPeer, client: MeshClient,
                                                          tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_text("a")
    report = push(client, src, to=f"{dav.dav_url}/q?sig=s3cr3t-value", server_identity=STORE_ID, verify="read")
    assert report.entries[0].verified == "read"
    assert "s3cr3t" not in repr(report) + str(report.url) + str(report.manifest_url)
    assert all("s3cr3t" not in e.to_json() for e in client.events)  # type: ignore[attr-defined]
    with pytest.raises(TLSHandshakeError) as info:
        push(client, src, to=f"{dav.dav_url}/q?sig=s3cr3t-value", server_identity=OTHER_ID)
    assert "s3cr3t" not in str(info.value)
