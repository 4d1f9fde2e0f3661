"""StaticToken, EnvironmentToken and FileToken (with the kubelet symlink swap)."""

from __future__ import annotations

import datetime as dt
import logging
import os
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from tokens_helpers import FakeClock

from meshclient.jose import sign_jwt
from meshclient.tokens import (
    EnvironmentToken,
    FileToken,
    RefreshSettings,
    StaticToken,
    TokenError,
    TokenExpiredError,
    TokenState,
)


def jwt(clock: FakeClock, lifetime: float, sub: str = "system:serviceaccount:ml-team:scorer") -> str:
    now = int(clock())
    claims = {"iss": "https://kubernetes.default.svc", "sub": sub, "aud": "mesh", "iat": now, "exp": now + lifetime}
    return sign_jwt(claims, ec.generate_private_key(ec.SECP256R1()))


# ---- StaticToken ------------------------------------------------------------------------------


def test_static_token_opaque_never_expires() -> None:
    p = StaticToken("dapi0123456789abcdef")
    t = p.token()
    assert t.value == "dapi0123456789abcdef" and t.expires_at is None
    assert p.state is TokenState.FRESH
    assert "dapi0123456789abcdef" not in repr(p) and "fingerprint" in repr(p)


def test_static_jwt_exp_is_honoured(clock: FakeClock) -> None:
    p = StaticToken(jwt(clock, 600), refresh=RefreshSettings(clock=clock))
    t = p.token()
    assert t.subject == "system:serviceaccount:ml-team:scorer" and t.audience == "mesh"
    assert t.expires_in(clock()) == pytest.approx(600)
    clock.advance(601)
    with pytest.raises(TokenExpiredError, match="cannot be refreshed"):
        p.token()


def test_static_explicit_expiry_wins(clock: FakeClock) -> None:
    when = dt.datetime.fromtimestamp(clock() + 60, dt.timezone.utc)
    assert (
        StaticToken(jwt(clock, 600), expires_at=when, refresh=RefreshSettings(clock=clock)).token().expires_at == when
    )


# ---- EnvironmentToken ---------------------------------------------------------------------------


def test_environment_token_follows_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHCLIENT_TOKEN", "first-token-value\n")
    p = EnvironmentToken()
    assert p.token().value == "first-token-value"
    monkeypatch.setenv("MESHCLIENT_TOKEN", "second-token-value")
    assert p.authorization_header() == "Bearer second-token-value"
    assert repr(p) == "EnvironmentToken(var='MESHCLIENT_TOKEN')"


def test_environment_token_missing_says_what_to_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MY_TOKEN", raising=False)
    with pytest.raises(TokenError, match="MY_TOKEN is not set") as info:
        EnvironmentToken("MY_TOKEN").token()
    assert "secrets/" in (info.value.hint or "")


def test_environment_token_on_unauthorized_needs_a_new_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHCLIENT_TOKEN", "token-one")
    p = EnvironmentToken()
    header = p.authorization_header()
    assert p.on_unauthorized(header) is False  # same value: retrying is pointless
    monkeypatch.setenv("MESHCLIENT_TOKEN", "token-two")
    assert p.on_unauthorized(header) is True


# ---- FileToken ----------------------------------------------------------------------------------


class ProjectedVolume:
    """Kubelet's AtomicWriter layout: token -> ..data/token, ..data -> ..<timestamp>/."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.generation = 0

    @property
    def path(self) -> Path:
        return self.root / "token"

    def write(self, value: str, *, mtime_ns: int | None = None) -> None:
        self.generation += 1
        ts_dir = self.root / f"..2026_01_01_00_00_0{self.generation}.{self.generation}"
        ts_dir.mkdir()
        (ts_dir / "token").write_text(value)
        if mtime_ns is not None:
            os.utime(ts_dir / "token", ns=(mtime_ns, mtime_ns))
        tmp = self.root / "..data_tmp"
        tmp.symlink_to(ts_dir.name)
        old = os.readlink(self.root / "..data") if (self.root / "..data").is_symlink() else None
        os.rename(tmp, self.root / "..data")  # the atomic swap
        if not self.path.is_symlink():
            self.path.symlink_to("..data/token")
        if old is not None:
            (self.root / old / "token").unlink()
            (self.root / old).rmdir()


def test_file_token_reread_after_symlink_swap_with_same_size_and_mtime(tmp_path: Path) -> None:
    vol = ProjectedVolume(tmp_path)
    vol.write("token-AAAA", mtime_ns=1_700_000_000_000_000_000)
    p = FileToken(vol.path)
    assert p.token().value == "token-AAAA"
    assert p.token().value == "token-AAAA"
    # Same length, same mtime: only the inode tells the swap apart.
    vol.write("token-BBBB", mtime_ns=1_700_000_000_000_000_000)
    assert p.token().value == "token-BBBB"
    assert repr(p) == f"FileToken(path={str(vol.path)!r})"


def test_file_token_rewritten_in_place(tmp_path: Path) -> None:
    path = tmp_path / "tok"
    path.write_text("short\n")
    p = FileToken(path)
    assert p.token().value == "short"
    path.write_text("a-longer-token\n")
    assert p.token().value == "a-longer-token"


def test_file_token_with_jwt_expiry_rereads_when_stale(tmp_path: Path, clock: FakeClock) -> None:
    vol = ProjectedVolume(tmp_path)
    first = jwt(clock, 3600)
    vol.write(first)
    p = FileToken(vol.path, refresh=RefreshSettings(clock=clock))
    assert p.token().value == first
    clock.advance(3600)  # kubelet did not renew: the cached token expired
    with pytest.raises(TokenExpiredError) as info:
        p.token()
    assert str(vol.path) in str(info.value) and first not in str(info.value)
    second = jwt(clock, 3600)
    vol.write(second)
    assert p.token().value == second


def test_a_half_written_file_does_not_break_a_valid_cached_token(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tok"
    good = jwt(clock, 3600)
    path.write_text(good)
    p = FileToken(path, refresh=RefreshSettings(clock=clock))
    assert p.token().value == good
    path.write_text("")  # a writer truncated the file and has not finished
    with caplog.at_level(logging.WARNING, logger="meshclient.tokens"):
        assert p.token().value == good
        assert p.token().value == good
    assert sum("keeping the cached token" in r.getMessage() for r in caplog.records) == 1
    path.write_text(good)
    assert p.token().value == good


def test_file_token_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TokenError, match="does not exist"):
        FileToken(tmp_path / "nope").token()


def test_file_token_refuses_binary_and_huge_files(tmp_path: Path) -> None:
    (tmp_path / "bin").write_bytes(b"\xff\xfe\x00token")
    with pytest.raises(TokenError, match="not ASCII"):
        FileToken(tmp_path / "bin").token()
    (tmp_path / "big").write_bytes(b"a" * (65 * 1024))
    with pytest.raises(TokenError, match="larger than"):
        FileToken(tmp_path / "big").token()
