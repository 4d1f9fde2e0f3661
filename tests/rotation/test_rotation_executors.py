"""Executors rotate too: a pickled ``ClientConfig`` rebuilt in a fresh Python process keeps
working across a rotation, with its own refresh thread (files) or its own certificates (issuer)."""

from __future__ import annotations

import base64
import json
import os
import pickle
import queue
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from rotation_helpers import CLIENT_ID, SERVER_ID, rotate_files, serial_hex, write_identity

from meshclient import FileSource, MeshClient
from meshclient.credentials.issuers import IssuerSource, VaultPKIIssuer
from meshclient.tokens import ClientCredentials
from meshclient_sandbox.nginx import NginxPeer
from meshclient_sandbox.pki import SandboxPKI
from meshclient_sandbox.vault import SandboxVault

pytestmark = [pytest.mark.peers, pytest.mark.slow]

CHILD = Path(__file__).with_name("rotation_child.py")
ROOT = Path(__file__).resolve().parents[2]


class Child:
    """The child process and a reader thread turning its stdout into a queue of JSON lines."""

    def __init__(self, config: Any, url: str) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
        self.proc = subprocess.Popen([sys.executable, str(CHILD), url, SERVER_ID], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=ROOT)
        assert self.proc.stdin is not None
        self.proc.stdin.write(base64.b64encode(pickle.dumps(config)) + b"\n")
        self.proc.stdin.flush()
        self.lines: queue.Queue[dict[str, Any]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))

    def next(self, timeout: float = 15.0) -> dict[str, Any]:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            err = self.proc.stderr.read().decode() if self.proc.poll() is not None and self.proc.stderr else ""
            raise AssertionError(f"no line from the child within {timeout:g} s {err[-2000:]}") from None

    def finish(self) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        while True:
            line = self.next()
            if line.get("done"):
                self.proc.wait(timeout=15)
                return line

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=15)


def test_pickled_config_with_file_source_rotates_in_a_new_process(pki: SandboxPKI, nginx: NginxPeer,
                                                                  tmp_path: Path) -> None:
    leaves = [pki.issue(CLIENT_ID) for _ in range(2)]
    paths = write_identity(tmp_path, leaves[0])
    source = FileSource(paths["cert"], paths["key"], paths["trust_anchors"], poll_interval=0.05)
    config = MeshClient(source).config()
    source.close()  # the driver's own thread is irrelevant: the child starts its own
    child = Child(config, nginx.url + "/health")
    try:
        assert child.next()["serial"] == serial_hex(leaves[0].cert.serial_number)
        rotate_files(paths, leaves[1])
        assert child.next()["serial"] == serial_hex(leaves[1].cert.serial_number)
        done = child.finish()
    finally:
        child.kill()
    assert done["failures"] == [] and done["requests"] > 2


def test_pickled_config_with_issuer_source_gets_its_own_certificates(pki: SandboxPKI, nginx: NginxPeer,
                                                                    vault: SandboxVault,
                                                                    jwt_provider: ClientCredentials) -> None:
    vault.ttl = 3  # renewal every ~2 s in the child
    source = IssuerSource(VaultPKIIssuer(vault.url, role="ml-team"), CLIENT_ID, token=jwt_provider,
                          trust_anchors=pki.trust_anchors_pem, min_refresh=0.5)
    driver_serial = serial_hex(source.current().serial)
    config = MeshClient(source).config()
    source.close()
    child = Child(config, nginx.url + "/health")
    try:
        first = child.next()["serial"]
        second = child.next()["serial"]  # renewed in the child, by the child
        done = child.finish()
    finally:
        child.kill()
    assert driver_serial not in (first, second) and first != second
    assert done["failures"] == []
    assert vault.certificates_issued >= 3
