"""Benchmark: one large file to nginx WebDAV behind mTLS, meshclient push vs ``curl``, side by side.

Both sides upload the same file (default 1 GiB, on tmpfs) to the same nginx WebDAV store on
tmpfs (``meshclient_sandbox.nginx_dav``), over TLS 1.3 with the same client certificate,
the same SNI (the server's identity; curl via ``--resolve ID:PORT:127.0.0.1``) and the same
trust anchors. meshclient does its whole job: sha-256 of the file, ``PUT`` with
``Content-Digest`` streamed from disk, verification by ``HEAD``, then the manifest. Each side
runs in its own fresh process, alternating (curl, meshclient, meshclient, curl, ...); the
figure per side is its best throughput. meshclient's child also reports its RSS before the
push and its peak after it: the growth is what streaming costs (target: < 64 MiB whatever the
file size). Targets: throughput >= 0.9x curl.

It also prints the CPU seconds of each side (the client process and nginx) and of a sha-256 of
the file alone, and from them the best ratio any client that hashes every byte could reach on
this machine's cores: when curl and nginx already keep every core busy, the hash can only add.

Usage: ``python bench/artifacts_webdav.py [--size-mib N] [--runs R] [--workdir DIR]``
(the workdir defaults to a fresh directory under /dev/shm, removed at the end).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cpu_meter import cores, self_cpu, tree_cpu

IDENTITY = "store.ml-platform.serviceaccount.identity.linkerd.cluster.local"
CLIENT = "notebook.ml-team.serviceaccount.identity.linkerd.cluster.local"


def _rss_kib() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def child(args: argparse.Namespace) -> None:
    """One meshclient push in a fresh process: prints seconds and RSS figures as JSON.

    ``--raw``: a bare ``client.put`` of the file streamed from disk, without hashing or
    verification — the transport's own throughput, to show where the push's time goes."""
    from meshclient import Credentials, MeshClient
    from meshclient.artifacts import push
    from meshclient.artifacts.body import FileBody

    creds = Credentials.from_files(args.cert, args.key, args.anchors)
    with MeshClient(creds, timeout=(5.0, 120.0)) as client:
        before = _rss_kib()
        cpu0 = self_cpu()
        t0 = time.perf_counter()
        if args.raw:
            size = Path(args.file).stat().st_size
            response = client.put(f"{args.to}/big.bin", server_identity=IDENTITY,
                                  data=FileBody(Path(args.file), size, "big.bin"))
            assert response.status_code in (201, 204), response.status_code
            nbytes = size
        else:
            nbytes = push(client, args.file, to=args.to, server_identity=IDENTITY, workers=1, progress=False).bytes
        seconds = time.perf_counter() - t0
        cpu = self_cpu() - cpu0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": seconds, "cpu": cpu, "bytes": nbytes, "rss_before_kib": before,
                      "rss_peak_kib": peak}))


def run_curl(file: Path, url: str, port: int, cert: Path, key: Path, anchors: Path) -> dict[str, float]:
    cpu0 = self_cpu(children=True)
    t0 = time.perf_counter()
    done = subprocess.run(
        ["curl", "-sS", "--fail", "-o", "/dev/null", "--cert", str(cert), "--key", str(key), "--cacert", str(anchors),
         "--tlsv1.3", "--resolve", f"{IDENTITY}:{port}:127.0.0.1", "-T", str(file), url],
        capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"curl failed: {done.stderr.strip()}")
    return {"seconds": seconds, "cpu": self_cpu(children=True) - cpu0}


def run_mesh(file: Path, to: str, cert: Path, key: Path, anchors: Path, raw: bool = False) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", "--file", str(file), "--to", to, "--cert", str(cert),
                           "--key", str(key), "--anchors", str(anchors), *(["--raw"] if raw else [])],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"meshclient push failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def report(runs: dict[str, list[dict[str, float]]], size: int, base: Path, n: int, hash_cpu: float,
           hash_s: float) -> None:
    """Best run per side, the ratios, the RSS growth, and where the CPU went."""
    mib = size / 2**20
    best = {side: min(rs, key=lambda r: r["seconds"]) for side, rs in runs.items()}
    tp = {side: mib / r["seconds"] for side, r in best.items()}
    print(f"file: {mib:.0f} MiB on {base}, nginx WebDAV on tmpfs, {n} run(s) per side, {cores()} core(s)")
    labels = {"curl": "curl", "mesh": "meshclient", "raw": "transport only"}
    notes = {"curl": "", "mesh": "  (sha-256 + PUT + HEAD + manifest)", "raw": "  (client.put, no sha-256, no verification)"}
    for side in ("curl", "mesh", "raw"):
        r = best[side]
        print(f"{labels[side] + ':':<16}best {r['seconds']:.3f} s ({tp[side]:.0f} MiB/s)  "
              f"CPU client {r['cpu']:.2f} s + nginx {r['nginx_cpu']:.2f} s  "
              f"runs {[round(x['seconds'], 3) for x in runs[side]]}{notes[side]}")
    print(f"ratio meshclient/curl (throughput): {tp['mesh'] / tp['curl']:.3f}  (target >= 0.9)")
    print(f"ratio transport-only/curl (throughput): {tp['raw'] / tp['curl']:.3f}")
    growth = max((r["rss_peak_kib"] - r["rss_before_kib"]) / 1024 for r in runs["mesh"])
    print(f"meshclient RSS growth during the push: max {growth:.1f} MiB  (target < 64 MiB)")
    curl = best["curl"]
    work = curl["cpu"] + curl["nginx_cpu"]
    floor = max((work + hash_cpu) / cores(), 0.01)  # one clock tick: toy sizes can measure 0
    print(f"sha-256 of the file alone: {hash_s:.3f} s, {hash_cpu:.2f} s CPU")
    print(f"CPU budget: curl + nginx used {work:.2f} core-s in {curl['seconds']:.3f} s on {cores()} core(s); a client that "
          f"also hashes every byte needs >= {work + hash_cpu:.2f} core-s, i.e. >= {floor:.3f} s here: "
          f"best reachable ratio {min(1.0, curl['seconds'] / floor):.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--raw", action="store_true", help=argparse.SUPPRESS)
    for name in ("file", "to", "cert", "key", "anchors"):
        parser.add_argument(f"--{name}", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return

    from meshclient.artifacts.digest import sha256_file
    from meshclient_sandbox.nginx import find_nginx
    from meshclient_sandbox.nginx_dav import NginxDavPeer
    from meshclient_sandbox.pki import SandboxPKI

    if find_nginx() is None or shutil.which("curl") is None:
        raise SystemExit("needs nginx (nginx-light) and curl")
    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    work = args.workdir or Path(tempfile.mkdtemp(prefix="meshclient-bench-", dir=base))
    try:
        pki = SandboxPKI.create()
        server, client = pki.issue(IDENTITY), pki.issue(CLIENT)
        ident = work / "client"
        ident.mkdir(parents=True, exist_ok=True)
        cert, key, anchors = ident / "tls.crt", ident / "tls.key", ident / "ca.crt"
        cert.write_bytes(client.chain_pem)
        key.write_bytes(client.key_pem)
        key.chmod(0o600)
        anchors.write_bytes(client.trust_anchors_pem)
        big = work / "big.bin"
        with open(big, "wb") as fh:
            block = os.urandom(1024 * 1024)
            for _ in range(args.size_mib):
                fh.write(block)
        size = big.stat().st_size
        with NginxDavPeer.for_leaf(server, workdir=work / "nginx") as peer:
            runs: dict[str, list[dict[str, float]]] = {"curl": [], "mesh": [], "raw": []}
            for i in range(args.runs):
                order = ("curl", "mesh", "raw") if i % 2 == 0 else ("raw", "mesh", "curl")
                for side in order:
                    nginx0 = tree_cpu(peer.pid)
                    if side == "curl":
                        r = run_curl(big, f"https://{IDENTITY}:{peer.port}/dav/curl/{i}/big.bin", peer.port,
                                     cert, key, anchors)
                    else:
                        r = run_mesh(big, f"{peer.dav_url}/{side}/{i}", cert, key, anchors, raw=side == "raw")
                    r["nginx_cpu"] = tree_cpu(peer.pid) - nginx0
                    runs[side].append(r)
                shutil.rmtree(peer.store_root, ignore_errors=True)  # keep tmpfs use at one copy
                peer.store_root.mkdir(parents=True, exist_ok=True)
        hash_cpu0, hash_t0 = self_cpu(), time.perf_counter()
        sha256_file(big)
        hash_cpu, hash_s = self_cpu() - hash_cpu0, time.perf_counter() - hash_t0
        report(runs, size, base, args.runs, hash_cpu, hash_s)
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
