"""What a FileSource says and does when its files go wrong (issue 10 item 16): deleted files
are logged (once, not every poll), garbage is logged once per interval, and a rotation to a
certificate of *another identity* is refused — the current one kept, an error logged, the
refusal visible in ``status()`` — unless ``allow_identity_change=True``."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest
from rotation_helpers import CLIENT_ID, wait_until, write_atomic, write_identity

from meshclient import FileSource, SourceStatus
from meshclient_sandbox.pki import SandboxPKI

POLL = 0.02
OTHER_ID = "intruder.other-team.serviceaccount.identity.linkerd.cluster.local"


def _renewal_lines(caplog: pytest.LogCaptureFixture, level: int = logging.INFO) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "meshclient.rotation" and r.levelno >= level and "renewal failed" in r.getMessage()]


def test_deleted_files_are_logged_once_and_the_old_identity_kept(pki: SandboxPKI, tmp_path: Path,
                                                                 caplog: pytest.LogCaptureFixture) -> None:
    paths = write_identity(tmp_path, pki.issue(CLIENT_ID))
    caplog.set_level(logging.DEBUG, logger="meshclient.rotation")
    with FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=POLL) as source:
        serial = source.current().serial
        paths["cert"].unlink()
        paths["key"].unlink()
        wait_until(lambda: source.status().failures >= 20, what="many polls of the missing files")
        assert source.current().serial == serial
        warnings = _renewal_lines(caplog, logging.WARNING)
        assert len(warnings) == 1, warnings  # not once per poll
        assert "tls.crt" in warnings[0] and "no longer exist" in warnings[0]
        status = source.status()
        assert not status.healthy and "no longer exist" in (status.last_error or "")


def test_garbage_is_logged_once_per_interval_not_every_poll(pki: SandboxPKI, tmp_path: Path,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    paths = write_identity(tmp_path, pki.issue(CLIENT_ID))
    caplog.set_level(logging.DEBUG, logger="meshclient.rotation")
    with FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=POLL) as source:
        for i in range(30):  # a broken writer keeps rewriting garbage
            write_atomic(paths["cert"], f"not a certificate {i}\n".encode())
            time.sleep(2 * POLL)
        wait_until(lambda: source.status().failures >= 10, what="the failed reads")
        assert len(_renewal_lines(caplog, logging.WARNING)) <= 1
        assert len(_renewal_lines(caplog, logging.DEBUG)) >= 10  # still there for whoever looks


def test_a_rotation_to_another_identity_is_refused(pki: SandboxPKI, tmp_path: Path,
                                                   caplog: pytest.LogCaptureFixture) -> None:
    paths = write_identity(tmp_path, pki.issue(CLIENT_ID))
    caplog.set_level(logging.INFO, logger="meshclient.rotation")
    with FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=POLL) as source:
        write_identity(tmp_path, pki.issue(OTHER_ID))
        wait_until(lambda: source.status().refused_identity is not None, what="the refusal")
        assert str(source.current().identity) == CLIENT_ID
        assert source.rotations == 0
        status = source.status()
        assert isinstance(status, SourceStatus)
        assert status.refused_identity == OTHER_ID and status.identity == CLIENT_ID and not status.healthy
        errors = [r for r in caplog.records if r.levelno == logging.ERROR and OTHER_ID in r.getMessage()]
        assert errors and "allow_identity_change" in errors[0].getMessage()
        write_identity(tmp_path, pki.issue(CLIENT_ID))  # the right identity again: adopted, healthy
        wait_until(lambda: source.rotations == 1, what="the rotation back")
        assert source.status().healthy


def test_an_identity_change_is_adopted_when_allowed(pki: SandboxPKI, tmp_path: Path) -> None:
    paths = write_identity(tmp_path, pki.issue(CLIENT_ID))
    with FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=POLL,
                    allow_identity_change=True) as source:
        write_identity(tmp_path, pki.issue(OTHER_ID))
        wait_until(lambda: source.rotations == 1, what="the rotation")
        assert str(source.current().identity) == OTHER_ID
        assert source.status().healthy
