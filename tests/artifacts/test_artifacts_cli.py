"""``meshclient push artifacts`` / ``meshclient pull artifacts`` against nginx WebDAV behind mTLS."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from artifact_helpers import OTHER_ID, STORE_ID, make_tree, tree_bytes

from meshclient.cli.main import main
from meshclient_sandbox.nginx_dav import NginxDavPeer
from meshclient_sandbox.pki import IssuedLeaf


@pytest.fixture
def material(client_leaf: IssuedLeaf, tmp_path: Path) -> list[str]:
    d = tmp_path / "id"
    d.mkdir()
    (d / "tls.crt").write_bytes(client_leaf.chain_pem)
    (d / "tls.key").write_bytes(client_leaf.key_pem)
    (d / "tls.key").chmod(0o600)
    (d / "ca.crt").write_bytes(client_leaf.trust_anchors_pem)
    return ["--cert", str(d / "tls.crt"), "--key", str(d / "tls.key"), "--trust-anchors", str(d / "ca.crt")]


def test_push_and_pull_on_the_command_line(dav: NginxDavPeer, material: list[str], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    src = make_tree(tmp_path / "src")
    to = f"{dav.dav_url}/cli"
    assert main(["push", "artifacts", str(src), "--to", to, "--server-identity", STORE_ID, "--workers", "3",
                 *material]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"pushed {len(tree_bytes(src))} file(s)") and to in out
    assert main(["pull", "artifacts", to, "--dest", str(tmp_path / "back"), "--server-identity", STORE_ID,
                 "--json", *material]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["files"] == len(tree_bytes(src)) and all(len(e["sha256"]) == 64 for e in report["entries"])
    assert tree_bytes(tmp_path / "back") == tree_bytes(src)


def test_wrong_identity_exits_1_and_nothing_is_sent(dav: NginxDavPeer, material: list[str], tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    src = make_tree(tmp_path / "src")
    assert main(["push", "artifacts", str(src), "--to", f"{dav.dav_url}/x", "--server-identity", OTHER_ID,
                 *material]) == 1
    err = capsys.readouterr().err
    assert OTHER_ID in err and "internal error" not in err
    assert dav.access_log() == []


@pytest.mark.parametrize("argv", [
    ["push", "artifacts", "{src}", "--server-identity", STORE_ID],  # no --to
    ["push", "artifacts", "{src}", "--to", "https://127.0.0.1:1/x", "--server-identity", STORE_ID, "--workers", "0"],
    ["push", "artifacts", "{src}", "--to", "http://127.0.0.1:1/x", "--server-identity", STORE_ID],
    ["push", "artifacts", "{src}/missing", "--to", "https://127.0.0.1:1/x", "--server-identity", STORE_ID],
    ["push", "artifacts", "{src}", "--to", "https://127.0.0.1:1/x", "--server-identity", "not an identity"],
    ["push", "artifacts", "{src}", "--to", "https://127.0.0.1:1/x", "--server-identity", STORE_ID, "--protocol", "s3"],
    ["pull", "artifacts", "https://127.0.0.1:1/x", "--server-identity", STORE_ID],  # no --dest
])
def test_usage_errors_exit_2(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "src").mkdir()
    assert main([a.replace("{src}", str(tmp_path / "src")) for a in argv]) == 2
    assert "internal error" not in capsys.readouterr().err


def test_help() -> None:
    proc = subprocess.run([sys.executable, "-m", "meshclient", "push", "artifacts", "--help"], capture_output=True)
    assert proc.returncode == 0
    assert b"--protocol" in proc.stdout and b"mlflow" in proc.stdout and b"--workers" in proc.stdout
