"""Benchmark: MeshClient against hand-written ``requests`` mTLS, interleaved in one run.

Both sides send small GETs over keep-alive mutual TLS 1.3 to the same local nginx (configured
like a Linkerd inbound proxy) with the same certificates. The baseline is what people write
today: a ``requests.Session`` whose ``HTTPAdapter`` subclass passes ``ssl_context``,
``server_hostname`` and ``assert_hostname`` in ``init_poolmanager``. Batches alternate
(A B, B A, ...) after a warm-up so that drift in the machine's speed hits both sides alike.
The figure that matters is the time ratio MeshClient / hand-written; the target is <= 1.10.

Usage: ``python bench/run.py [--requests N] [--rounds R]`` (``make bench`` runs the default).
"""

from __future__ import annotations

import argparse
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from meshclient import Credentials, MeshClient
from meshclient_sandbox.nginx import NginxPeer, find_nginx
from meshclient_sandbox.pki import SandboxPKI

CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
TARGET = 1.10


class PinnedContextAdapter(HTTPAdapter):
    """The hand-written baseline: a custom SSL context and the identity as the TLS hostname."""

    def __init__(self, ctx: ssl.SSLContext, server_hostname: str) -> None:
        self._ctx = ctx
        self._server_hostname = server_hostname
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(ssl_context=self._ctx, server_hostname=self._server_hostname,
                      assert_hostname=self._server_hostname)
        super().init_poolmanager(*args, **kwargs)


def hand_written_session(cert: Path, key: Path, anchors: Path, server_identity: str) -> requests.Session:
    ctx = ssl.create_default_context(cafile=str(anchors))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(cert), str(key))
    session = requests.Session()
    # trust_env off like MeshClient, so the baseline skips the per-request environment lookups
    # (proxies, .netrc) a default Session does: the comparison is transport against transport.
    session.trust_env = False
    session.verify = str(anchors)
    session.mount("https://", PinnedContextAdapter(ctx, server_identity))
    return session


def timed_batch(send: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        send()
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="GETs per side (default 2000)")
    parser.add_argument("--rounds", type=int, default=20, help="alternating batches per side (default 20)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up GETs per side (default: one batch)")
    args = parser.parse_args(argv)
    if find_nginx() is None:
        print("bench: nginx is not installed (apt-get install nginx-light)", file=sys.stderr)
        return 2
    rounds = max(1, min(args.rounds, args.requests))
    batch = max(1, args.requests // rounds)
    total = batch * rounds
    warmup = batch if args.warmup is None else args.warmup

    pki = SandboxPKI.create()
    client_leaf, server_leaf = pki.issue(CLIENT_ID), pki.issue(SERVER_ID)
    creds = Credentials.from_pem(client_leaf.chain_pem, client_leaf.key_pem, client_leaf.trust_anchors_pem)
    with tempfile.TemporaryDirectory(prefix="meshclient-bench-") as tmp, \
            NginxPeer.for_leaf(server_leaf, workdir=Path(tmp) / "nginx") as peer:
        paths = client_leaf.write(Path(tmp) / "client")  # the baseline loads its key from files
        url = f"{peer.url}/health"
        mesh = MeshClient(creds)
        hand = hand_written_session(paths["cert"], paths["key"], paths["trust_anchors"], SERVER_ID)

        def mesh_get() -> None:
            response = mesh.get(url, server_identity=SERVER_ID)
            if response.status_code != 200 or response.content != b"ok\n":
                raise RuntimeError(f"meshclient: unexpected answer {response.status_code}")

        def hand_get() -> None:
            response = hand.get(url)
            if response.status_code != 200 or response.content != b"ok\n":
                raise RuntimeError(f"hand-written: unexpected answer {response.status_code}")

        timed_batch(mesh_get, warmup)
        timed_batch(hand_get, warmup)
        mesh_times: list[float] = []
        hand_times: list[float] = []
        for i in range(rounds):
            if i % 2 == 0:
                mesh_times.append(timed_batch(mesh_get, batch))
                hand_times.append(timed_batch(hand_get, batch))
            else:
                hand_times.append(timed_batch(hand_get, batch))
                mesh_times.append(timed_batch(mesh_get, batch))
        mesh.close()
        hand.close()
        log = peer.wait_for_access_log(2 * (warmup + total))

    verified = sum(1 for e in log if e.client_verify == "SUCCESS" and e.status == 200)
    connections = len({e.connection for e in log})
    mesh_s, hand_s = sum(mesh_times), sum(hand_times)
    ratio = mesh_s / hand_s
    per_round = statistics.median(m / h for m, h in zip(mesh_times, hand_times, strict=True))
    print(f"benchmark: small GET over keep-alive mTLS (TLS 1.3, P-256) to nginx {url}")
    print(f"  {rounds} interleaved rounds x {batch} requests per side, after {warmup} warm-up requests per side")
    print(f"  nginx: {len(log)} requests logged, {verified} verified-client 200s, {connections} connection(s)")
    print(f"  hand-written requests: {total / hand_s:9.1f} req/s  ({hand_s * 1e6 / total:7.1f} us/request)")
    print(f"  meshclient           : {total / mesh_s:9.1f} req/s  ({mesh_s * 1e6 / total:7.1f} us/request)")
    print(f"  ratio meshclient/hand-written (time): {ratio:.3f}  (median of per-round ratios {per_round:.3f})")
    verdict = "MEETS" if ratio <= TARGET else "MISSES"
    print(f"  target 'within 10 %' (ratio <= {TARGET:.2f}): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
