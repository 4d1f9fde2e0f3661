"""The command line's answers to the bad inputs a newcomer gives (issue: CLI hardening)."""

from __future__ import annotations

from pathlib import Path

import pytest

from meshclient.cli.main import main

SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"


@pytest.mark.parametrize("value", ["-1", "0", "nan", "inf", "-inf", "abc", "1e400"])
@pytest.mark.parametrize("command", [["request", "GET", "https://127.0.0.1:1/"], ["doctor"]])
def test_a_bad_timeout_is_a_usage_error(command: list[str], value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*command, "--server-identity", SERVER_ID, "--timeout", value]) == 2
    err = capsys.readouterr().err
    assert "--timeout" in err and "internal error" not in err
    if not value.startswith("-inf"):  # argparse reads '-inf' as an option: "expected one argument", also exit 2
        assert repr(value) in err


@pytest.mark.parametrize("option,value", [("--workers", "0"), ("--workers", "-3"), ("--workers", "x")])
def test_a_bad_count_is_a_usage_error(option: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["push", "artifacts", "/dev/null", "--to", "https://127.0.0.1:1/x", "--server-identity", SERVER_ID,
                 option, value]) == 2
    assert option in capsys.readouterr().err


def test_swapped_cert_and_key_say_so(client_leaf: object, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "tls.crt").write_bytes(client_leaf.chain_pem)  # type: ignore[attr-defined]
    (tmp_path / "tls.key").write_bytes(client_leaf.key_pem)  # type: ignore[attr-defined]
    (tmp_path / "ca.crt").write_bytes(client_leaf.trust_anchors_pem)  # type: ignore[attr-defined]
    code = main(["request", "GET", "https://127.0.0.1:1/", "--server-identity", SERVER_ID,
                 "--cert", str(tmp_path / "tls.key"), "--key", str(tmp_path / "tls.crt"),
                 "--trust-anchors", str(tmp_path / "ca.crt")])
    err = capsys.readouterr().err
    assert code == 1
    assert "--cert and --key look swapped" in err and "Swap them" in err
    assert "PRIVATE KEY" not in err


@pytest.mark.parametrize("flag", ["--server-identity"])
def test_an_identity_with_a_space_gets_a_sensible_hint(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    main(["request", "GET", "https://127.0.0.1:1/", flag, "BAD PATTERN"])
    err = capsys.readouterr().err
    assert "BAD PATTERN" in err and "no spaces" in err
    assert "bad pattern.<namespace>" not in err  # the old hint proposed the invalid name as a fix
