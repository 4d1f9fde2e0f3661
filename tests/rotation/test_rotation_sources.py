"""Source lifecycle without a network peer: partial and truncated files, subscribers, close,
expired material at start-up, and renewal through an issuer outage (Linkerd's retry cadence)."""

from __future__ import annotations

import logging
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from rotation_helpers import CLIENT_ID, MemoryIssuer, exceeds, serial_hex, wait_until, write_atomic, write_identity

from meshclient import (
    CertificateValidityError,
    Credentials,
    CredentialsError,
    FileSource,
    IdentitySource,
)
from meshclient.credentials.issuers import IssuanceError, IssuerSource
from meshclient.errors import CertificateExpiredError, CertificateNotYetValidError
from meshclient.tokens import StaticToken
from meshclient_sandbox.pki import SandboxPKI

POLL = 0.05


def key_matches(snapshot: Credentials) -> bool:
    key = load_pem_private_key(snapshot.private_key_pem(), None)
    return key.public_key() == snapshot.leaf.public_key()


@pytest.mark.parametrize("order", ["cert_first", "key_first"])
def test_one_file_at_a_time_never_installs_a_mismatched_pair(pki: SandboxPKI, tmp_path: Path, order: str,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    old, new = pki.issue(CLIENT_ID), pki.issue(CLIENT_ID)
    paths = write_identity(tmp_path, old)
    installed: list[Credentials] = []
    with FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=POLL) as source:
        source.subscribe(installed.append)
        caplog.set_level(logging.INFO, logger="meshclient.rotation")
        first, second = ("cert", new.chain_pem), ("key", new.key_pem)
        if order == "key_first":
            first, second = second, first
        write_atomic(paths[first[0]], first[1])
        wait_until(lambda: any("renewal failed (KeyMismatchError" in r.getMessage() for r in caplog.records),
                   what="the source to see the inconsistent pair")
        assert source.current().serial == old.cert.serial_number  # the old, consistent pair stays
        assert all(r.levelno == logging.INFO for r in caplog.records if "renewal failed" in r.getMessage())
        write_atomic(paths[second[0]], second[1])
        wait_until(lambda: source.rotations == 1, what="the rotation")
        assert source.current().serial == new.cert.serial_number
    assert [s.serial for s in installed] == [new.cert.serial_number]
    assert all(key_matches(s) for s in installed)


@pytest.mark.parametrize("which", ["cert", "key"])
def test_truncated_file_mid_write_is_ignored_until_complete(pki: SandboxPKI, tmp_path: Path, which: str) -> None:
    old, new = pki.issue(CLIENT_ID), pki.issue(CLIENT_ID)
    paths = write_identity(tmp_path, old)
    installed: list[Credentials] = []
    data = {"cert": new.chain_pem, "key": new.key_pem}
    other = "key" if which == "cert" else "cert"
    with FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=POLL) as source:
        source.subscribe(installed.append)
        write_atomic(paths[other], data[other])
        with open(paths[which], "r+b") as fh:  # an in-place rewrite caught halfway
            fh.truncate(0)
            fh.write(data[which][: len(data[which]) // 2])
        time.sleep(10 * POLL)  # many polls see the half-written file
        assert source.current().serial == old.cert.serial_number
        assert installed == []
        with open(paths[which], "r+b") as fh:
            fh.seek(len(data[which]) // 2)
            fh.write(data[which][len(data[which]) // 2:])
        wait_until(lambda: source.rotations == 1, what="the completed file to be picked up")
    assert [s.serial for s in installed] == [new.cert.serial_number]
    assert key_matches(installed[0])


def test_subscribers_are_called_after_each_swap(pki: SandboxPKI, tmp_path: Path) -> None:
    leaves = [pki.issue(CLIENT_ID) for _ in range(3)]
    paths = write_identity(tmp_path, leaves[0])
    calls: list[tuple[int, bool]] = []
    late: list[int] = []
    with FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=POLL) as source:
        def record(snapshot: Credentials) -> None:
            # Called after the swap: the source already hands out the new snapshot.
            calls.append((snapshot.serial, source.current() is snapshot))

        def broken(snapshot: Credentials) -> None:
            raise RuntimeError("a subscriber bug must not stop rotation")

        source.subscribe(broken)
        source.subscribe(record)
        for n, leaf in enumerate(leaves[1:], start=1):
            write_identity(tmp_path, leaf)
            wait_until(exceeds(lambda: source.rotations, n - 1), what=f"rotation {n}")
        source.unsubscribe(record)
        source.subscribe(lambda s: late.append(s.serial))
        write_identity(tmp_path, leaves[0])
        wait_until(lambda: source.rotations == 3, what="rotation 3")
    assert calls == [(leaves[1].cert.serial_number, True), (leaves[2].cert.serial_number, True)]
    assert late == [leaves[0].cert.serial_number]


def _rotation_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("meshclient-rotation:") and t.is_alive()]


def test_close_stops_the_refresh_thread(pki: SandboxPKI, tmp_path: Path) -> None:
    paths = write_identity(tmp_path, pki.issue(CLIENT_ID))
    before = set(_rotation_threads())
    source = FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=POLL)
    assert len(set(_rotation_threads()) - before) == 1
    source.close()
    assert set(_rotation_threads()) - before == set()
    with pytest.raises(CredentialsError, match="is closed"):
        source.current()


def test_expired_material_at_startup_fails_in_the_constructor(pki: SandboxPKI, tmp_path: Path) -> None:
    paths = pki.issue_expired(CLIENT_ID).write(tmp_path)
    started = time.monotonic()
    with pytest.raises(CertificateExpiredError) as err:
        FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=POLL)
    assert time.monotonic() - started < 5, "the constructor waited out its timeout instead of failing"
    assert str(paths["cert"]) in str(err.value) and "expired at" in str(err.value)
    assert err.value.hint
    later = pki.issue_not_yet_valid(CLIENT_ID).write(tmp_path / "future")
    with pytest.raises(CertificateNotYetValidError, match="not valid yet"):
        FileSource(later["cert"], later["key"], later["trust_anchors"], poll_interval=POLL)


def test_issuer_handing_out_expired_material_fails_in_the_constructor(pki: SandboxPKI) -> None:
    issuer = MemoryIssuer(pki)
    now = datetime.now(timezone.utc)
    issuer.window = (now - timedelta(hours=2), now - timedelta(hours=1))
    started = time.monotonic()
    with pytest.raises(CertificateExpiredError, match="memory issuer"):
        IssuerSource(issuer, CLIENT_ID, token=StaticToken("jwt-for-tests"), trust_anchors=pki.trust_anchors_pem)
    assert time.monotonic() - started < 5
    assert issuer.calls == 1


def test_first_fetch_retries_an_outage_then_gives_up_with_the_issuer_error(pki: SandboxPKI) -> None:
    issuer = MemoryIssuer(pki)
    issuer.fail = True
    with pytest.raises(IssuanceError, match="outage"):
        IssuerSource(issuer, CLIENT_ID, token=StaticToken("jwt-for-tests"), trust_anchors=pki.trust_anchors_pem,
                     timeout=1.0)
    assert issuer.calls >= 2  # retryable: tried again within the timeout


@pytest.mark.slow
def test_renews_at_70_percent_and_resumes_right_after_an_outage(pki: SandboxPKI,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    """Linkerd's cadence: renew at 70 % of what is left; after expiry retry every min_refresh,
    so a long outage does not grow the wait past the issuer's return."""
    issuer = MemoryIssuer(pki, ttl=2.0)
    caplog.set_level(logging.WARNING, logger="meshclient.rotation")
    with IssuerSource(issuer, CLIENT_ID, token=StaticToken("jwt-for-tests"), trust_anchors=pki.trust_anchors_pem,
                      min_refresh=0.2) as source:
        first = source.current()
        wait_until(lambda: source.rotations >= 1, timeout=5, what="the renewal at 70 %")
        assert source.current().serial != first.serial
        issuer.fail = True
        expiry = source.current().not_after
        wait_until(lambda: datetime.now(timezone.utc) > expiry, what="expiry during the outage")
        with pytest.raises(CertificateValidityError, match="memory issuer: outage"):
            source.current()
        time.sleep(3.0)  # with exponential backoff the next attempt would now be seconds away
        issuer.fail = False
        calls = issuer.calls
        resumed = time.monotonic()
        wait_until(lambda: _valid(source), timeout=5, what="the source to recover")
        assert time.monotonic() - resumed < 1.5
        assert issuer.calls == calls + 1
    assert any(r.levelno == logging.ERROR for r in caplog.records), "no loud log while the certificate ran out"


def _valid(source: IdentitySource) -> bool:
    try:
        source.current()
    except CertificateValidityError:
        return False
    return True


def test_serial_hex_matches_nginx_format() -> None:
    assert serial_hex(0x0ABC) == f"{int('0ABC', 16):x}"
