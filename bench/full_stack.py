"""Benchmark: the *full* MeshClient stack against hand-written ``requests`` mTLS, interleaved.

Where ``bench/run.py`` measures a bare ``MeshClient.get``, this one turns everything on that a
production job would: an egress policy, an audit sink (a no-op callable: the event is still
built), the retry budget (every request is recorded in it) and the balancer with its breaker
and peak-EWMA bookkeeping over one endpoint (``client.service(..., endpoints=[addr])``). The
baseline is what people write by hand: a ``requests.Session`` whose ``HTTPAdapter`` subclass
passes ``ssl_context``, ``server_hostname`` and ``assert_hostname`` to urllib3, with the same
certificates, over the same kind of keep-alive TLS 1.3 connection to the same server.

The server is nginx configured like a Linkerd inbound proxy (``meshclient_sandbox.nginx``)
when the binary is installed, else an in-process TLS server (``SandboxHTTPServer``). Batches
alternate (A B, B A, ...) after a warm-up so drift in the machine's speed hits both sides
alike. The figure is the time ratio full stack / hand-written; the target is <= 1.10.

Usage: ``python bench/full_stack.py [--requests N] [--rounds R] [--server auto|nginx|inprocess]
[--profile]`` (``--profile`` adds a cProfile of the meshclient side, meshclient functions only).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import io
import pstats
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from meshclient import Credentials, MeshClient
from meshclient.audit import AuditEvent
from meshclient.policy import EgressPolicy
from meshclient.transport.budget import RetryBudget
from meshclient.transport.retry import RetryPolicy
from meshclient_sandbox.pki import IssuedLeaf, SandboxPKI
from meshclient_sandbox.tls import build_server_context

CLIENT_ID = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"
SERVER_ID = "echo.ml-platform.serviceaccount.identity.linkerd.cluster.local"
TARGET = 1.10
BODY = b"ok\n"


class PinnedContextAdapter(HTTPAdapter):
    """The hand-written baseline: a custom SSL context, SNI and hostname check = the identity."""

    def __init__(self, ctx: ssl.SSLContext, server_hostname: str) -> None:
        self._ctx = ctx
        self._server_hostname = server_hostname
        super().__init__()

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs.update(ssl_context=self._ctx, server_hostname=self._server_hostname,
                      assert_hostname=self._server_hostname)
        super().init_poolmanager(*args, **kwargs)


def hand_written_session(paths: dict[str, Path], server_identity: str) -> requests.Session:
    ctx = ssl.create_default_context(cafile=str(paths["trust_anchors"]))
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_cert_chain(str(paths["cert"]), str(paths["key"]))
    session = requests.Session()
    # trust_env off like MeshClient: the comparison is transport against transport, not the
    # per-request proxy/.netrc lookups a default Session adds
    session.trust_env = False
    session.verify = str(paths["trust_anchors"])
    session.mount("https://", PinnedContextAdapter(ctx, server_identity))
    return session


def full_stack_client(creds: Credentials, audit: Callable[[AuditEvent], None]) -> MeshClient:
    return MeshClient(
        creds,
        policy=EgressPolicy(allow=["*.ml-platform.serviceaccount.identity.linkerd.cluster.local"]),
        audit=audit,
        retries=RetryPolicy(),
        retry_budget=RetryBudget(),
    )


@contextlib.contextmanager
def peer(kind: str, server_leaf: IssuedLeaf, workdir: Path) -> Iterator[tuple[str, str, str]]:
    """(label, base URL, host:port) of a server for ``server_leaf``; stopped on exit."""
    from meshclient_sandbox.nginx import NginxPeer, find_nginx

    if kind == "nginx" or (kind == "auto" and find_nginx() is not None):
        with NginxPeer.for_leaf(server_leaf, workdir=workdir / "nginx") as nginx:
            yield "nginx", nginx.url, f"{nginx.host}:{nginx.port}"
        return
    from meshclient_sandbox.httpserver import Response, SandboxHTTPServer

    creds = Credentials.from_pem(server_leaf.chain_pem, server_leaf.key_pem, server_leaf.trust_anchors_pem)
    server = SandboxHTTPServer(ssl_context=build_server_context(creds))
    server.add_route("GET", "/health", lambda request: Response(200, BODY, content_type="text/plain"))
    with server:
        yield "in-process SandboxHTTPServer", server.url, f"{server.host}:{server.port}"


def timed_batch(send: Callable[[], None], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        send()
    return time.perf_counter() - start


def profile_meshclient(send: Callable[[], None], n: int) -> str:
    """cProfile ``n`` full-stack requests; the meshclient functions, by own time and cumulative."""
    prof = cProfile.Profile()
    prof.enable()
    for _ in range(n):
        send()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    total = stats.total_tt  # type: ignore[attr-defined]
    rows = []
    for (filename, line, func), (_cc, nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        if "/meshclient/" in filename and "/bench/" not in filename:
            rows.append((tt, ct, nc, f"{filename.split('/meshclient/', 1)[1]}:{line}({func})"))
    own = sum(r[0] for r in rows)
    lines = [f"  profile of {n} full-stack requests: {total:.3f} s under cProfile, {own:.3f} s "
             f"({100 * own / total:.1f} %) in meshclient's own code"]
    lines.append("    own time   cumulative   calls  function")
    for tt, ct, nc, name in sorted(rows, reverse=True)[:15]:
        lines.append(f"    {tt * 1e6 / n:7.1f} us  {ct * 1e6 / n:9.1f} us  {nc // n if n else nc:5d}  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="GETs per side (default 2000)")
    parser.add_argument("--rounds", type=int, default=20, help="alternating batches per side (default 20)")
    parser.add_argument("--warmup", type=int, default=None, help="warm-up GETs per side (default: one batch)")
    parser.add_argument("--server", choices=["auto", "nginx", "inprocess"], default="auto")
    parser.add_argument("--profile", action="store_true", help="also profile the meshclient side")
    args = parser.parse_args(argv)
    rounds = max(1, min(args.rounds, args.requests))
    batch = max(1, args.requests // rounds)
    total = batch * rounds
    warmup = batch if args.warmup is None else args.warmup

    pki = SandboxPKI.create()
    client_leaf, server_leaf = pki.issue(CLIENT_ID), pki.issue(SERVER_ID)
    creds = Credentials.from_pem(client_leaf.chain_pem, client_leaf.key_pem, client_leaf.trust_anchors_pem)
    events = [0]

    def audit(event: AuditEvent) -> None:  # the no-op sink (counting, to prove it was called)
        events[0] += 1

    with tempfile.TemporaryDirectory(prefix="meshclient-bench-") as tmp, \
            peer(args.server, server_leaf, Path(tmp)) as (label, base_url, address):
        paths = client_leaf.write(Path(tmp) / "client")  # the baseline loads its key from files
        mesh = full_stack_client(creds, audit)
        svc = mesh.service(base_url, SERVER_ID, endpoints=[address])
        hand = hand_written_session(paths, SERVER_ID)
        url = f"{base_url}/health"

        def mesh_get() -> None:
            response = svc.get("/health")
            if response.status_code != 200 or response.content != BODY:
                raise RuntimeError(f"meshclient: unexpected answer {response.status_code}")

        def hand_get() -> None:
            response = hand.get(url)
            if response.status_code != 200 or response.content != BODY:
                raise RuntimeError(f"hand-written: unexpected answer {response.status_code}")

        try:
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
            profile = profile_meshclient(mesh_get, min(total, 2000)) if args.profile else ""
            budget = mesh.retry_budget.snapshot()
            connections = mesh.pool_count()  # one pool: the single endpoint
        finally:
            mesh.close()
            hand.close()

    expected_events = warmup + total + (min(total, 2000) if args.profile else 0)
    if events[0] != expected_events:
        raise RuntimeError(f"audit sink saw {events[0]} events, expected {expected_events}")
    mesh_s, hand_s = sum(mesh_times), sum(hand_times)
    ratio = mesh_s / hand_s
    per_round = statistics.median(m / h for m, h in zip(mesh_times, hand_times, strict=True))
    print(f"benchmark: full stack (egress policy, audit, retry budget, balancer over 1 endpoint) "
          f"vs hand-written requests, small GET over keep-alive mTLS to {label}")
    print(f"  {rounds} interleaved rounds x {batch} requests per side, after {warmup} warm-up requests per side")
    print(f"  meshclient: {events[0]} audit events, {int(budget['requests'])} requests in the budget window, "
          f"{int(budget['retries'])} retries, {connections} pool(s)")
    print(f"  hand-written requests: {total / hand_s:9.1f} req/s  ({hand_s * 1e6 / total:7.1f} us/request)")
    print(f"  meshclient full stack: {total / mesh_s:9.1f} req/s  ({mesh_s * 1e6 / total:7.1f} us/request)")
    print(f"  ratio full-stack/hand-written (time): {ratio:.3f}  (median of per-round ratios {per_round:.3f})")
    verdict = "MEETS" if ratio <= TARGET else "MISSES"
    print(f"  target 'within 10 %' (ratio <= {TARGET:.2f}): {verdict}")
    if profile:
        print(profile)
    return 0


if __name__ == "__main__":
    sys.exit(main())
