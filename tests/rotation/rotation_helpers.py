"""Helpers for the rotation tests and ``bench/rotation.py``: load threads, atomic writes, waits.

The load generator is the heart of the "zero failed requests" claims: N threads send
requests through one ``MeshClient`` for as long as a rotation runs, and every exception or
non-200 answer is kept (with the thread and time) so a failure is reported, never averaged.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from meshclient import Identity, MeshClient
from meshclient.credentials.issuers import CertificateIssuer, IssuanceError, SignedCertificate
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI
from meshclient_sandbox.vault import sign_linkerd_leaf

CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
ML_TEAM = "*.ml-team.serviceaccount.identity.linkerd.cluster.local"
OIDC_CLIENT = "ml-pipeline"
OIDC_SECRET = "sandbox-client-secret-d41d8cd98f00b204"  # hunted for in logs and errors
VAULT_AUDIENCE = "vault"


def write_atomic(path: Path, data: bytes, *, mode: int = 0o644) -> None:
    """Replace ``path`` the way rotators do (write a temp file, then rename over)."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.replace(tmp, path)


def write_identity(directory: Path, leaf: IssuedLeaf, *, anchors_pem: bytes | None = None) -> dict[str, Path]:
    """tls.crt / tls.key / ca.crt for ``leaf`` (anchors: the leaf's unless given)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"cert": directory / "tls.crt", "key": directory / "tls.key", "trust_anchors": directory / "ca.crt"}
    write_atomic(paths["cert"], leaf.chain_pem)
    write_atomic(paths["key"], leaf.key_pem, mode=0o600)
    write_atomic(paths["trust_anchors"], anchors_pem if anchors_pem is not None else leaf.trust_anchors_pem)
    return paths


def rotate_files(paths: dict[str, Path], leaf: IssuedLeaf, *, order: str = "cert_first", gap: float = 0.3) -> None:
    """Replace the certificate and the key one at a time, ``gap`` seconds apart.

    The gap is longer than the sources' poll interval, so the source really sees the
    inconsistent pair (new certificate, old key, or the reverse) before the second file lands.
    """
    first, second = (("cert", leaf.chain_pem), ("key", leaf.key_pem))
    if order == "key_first":
        first, second = second, first
    write_atomic(paths[first[0]], first[1], mode=0o600 if first[0] == "key" else 0o644)
    time.sleep(gap)
    write_atomic(paths[second[0]], second[1], mode=0o600 if second[0] == "key" else 0o644)


def wait_until(predicate: Callable[[], bool], *, timeout: float = 10.0, interval: float = 0.02,
               what: str = "condition") -> None:
    """Poll ``predicate`` until true; fail with ``what`` after ``timeout`` seconds (a loose upper bound)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def exceeds(get: Callable[[], int], floor: int) -> Callable[[], bool]:
    """A predicate for :func:`wait_until`: ``get()`` grew past ``floor`` (binds ``floor`` now)."""
    return lambda: get() > floor


def differs(get: Callable[[], object], old: object) -> Callable[[], bool]:
    """A predicate for :func:`wait_until`: ``get()`` no longer returns ``old``."""
    return lambda: get() != old


@dataclass
class Failure:
    thread: int
    at: float
    what: str


@dataclass
class LoadResult:
    requests: int = 0
    failures: list[Failure] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # distinct markers (serials / client ids), in first-seen order
    last: dict[int, str] = field(default_factory=dict)  # per thread: marker of its latest response
    elapsed: float = 0.0

    @property
    def rate(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0


class Load:
    """``threads`` threads sending ``GET url`` through ``client`` until :meth:`stop`.

    ``check(response)`` returns the response's marker (nginx's ``X-Client-Serial``, the echo
    app's ``client_id``) or raises ``AssertionError`` for a wrong answer; anything raised
    counts as a failure.
    """

    def __init__(self, client: MeshClient, url: str, server_identity: str, check: Callable[[Any], str], *,
                 threads: int = 8, path: str = "/health") -> None:
        self.client = client
        self.url = url.rstrip("/") + path
        self.server_identity = server_identity
        self.check = check
        self.n = threads
        self.result = LoadResult()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._started = 0.0

    def _run(self, index: int) -> None:
        while not self._stop.is_set():
            try:
                resp = self.client.get(self.url, server_identity=self.server_identity, timeout=10.0)
                marker = self.check(resp)
            except BaseException as exc:  # noqa: B036 - every failure is a finding
                with self._lock:
                    self.result.requests += 1
                    self.result.failures.append(Failure(index, time.monotonic(), f"{type(exc).__name__}: {exc}"))
                continue
            with self._lock:
                self.result.requests += 1
                self.result.last[index] = marker
                if marker not in self.result.seen:
                    self.result.seen.append(marker)

    def start(self) -> Load:
        self._started = time.monotonic()
        for i in range(self.n):
            t = threading.Thread(target=self._run, args=(i,), name=f"rotation-load-{i}", daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def count(self) -> int:
        with self._lock:
            return self.result.requests

    def saw(self, marker: str) -> bool:
        with self._lock:
            return marker in self.result.seen

    def all_threads_on(self, marker: str) -> bool:
        """Every thread's latest response carried ``marker``."""
        with self._lock:
            return len(self.result.last) == self.n and all(m == marker for m in self.result.last.values())

    def wait_for(self, marker: str, *, timeout: float = 10.0) -> None:
        wait_until(lambda: self.all_threads_on(marker), timeout=timeout, what=f"every thread to see {marker}")

    def stop(self) -> LoadResult:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=30)
        self.result.elapsed = time.monotonic() - self._started
        return self.result

    def __enter__(self) -> Load:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def nginx_serial(resp: Any) -> str:
    """The verified client serial nginx saw (normalised hex), or AssertionError on a bad answer."""
    if resp.status_code != 200:
        raise AssertionError(f"status {resp.status_code}: {resp.text[:200]}")
    if resp.headers.get("X-Client-Verify") != "SUCCESS":
        raise AssertionError(f"nginx did not verify the client: {resp.headers.get('X-Client-Verify')}")
    return f"{int(resp.headers['X-Client-Serial'], 16):x}"


def echo_client_id(expected: str) -> Callable[[Any], str]:
    def check(resp: Any) -> str:
        if resp.status_code != 200:
            raise AssertionError(f"status {resp.status_code}: {resp.text[:200]}")
        client_id = resp.json()["client_id"]
        if client_id != expected:
            raise AssertionError(f"l5d-client-id {client_id!r}, expected {expected!r}")
        return str(client_id)
    return check


def serial_hex(serial: int) -> str:
    return f"{serial:x}"


def new_leaves(pki: SandboxPKI, n: int, identity: str = CLIENT_ID) -> list[IssuedLeaf]:
    return [pki.issue(identity) for _ in range(n)]



class MemoryIssuer(CertificateIssuer):
    """An issuer without HTTP, for source-lifecycle tests: signs with the sandbox issuer CA.

    ``fail`` makes every call raise a retryable :class:`IssuanceError` (an outage);
    ``window`` (not_before, not_after) forces the validity of the next leaves.
    """

    kind = "memory issuer"

    def __init__(self, pki: SandboxPKI, *, ttl: float = 300.0) -> None:
        super().__init__("http://127.0.0.1:9")
        self.pki = pki
        self.ttl = ttl
        self.fail = False
        self.window: tuple[datetime, datetime] | None = None
        self.calls = 0

    @property
    def description(self) -> str:
        return "memory issuer"

    def sign(self, csr: x509.CertificateSigningRequest, identity: Identity, jwt: str, *,
             cancel: threading.Event | None = None) -> SignedCertificate:
        self.calls += 1
        if self.fail:
            raise IssuanceError("memory issuer: outage", status=503, retryable=True)
        public = csr.public_key()
        assert isinstance(public, ec.EllipticCurvePublicKey)
        start, end = self.window if self.window else (None, None)
        leaf = sign_linkerd_leaf(self.pki.issuer, public, identity, ttl=self.ttl, not_before=start, not_after=end)
        return SignedCertificate(leaf, (self.pki.issuer.cert,), self.description)
