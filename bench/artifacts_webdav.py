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
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    print(json.dumps({"seconds": seconds, "bytes": nbytes, "rss_before_kib": before, "rss_peak_kib": peak}))


def run_curl(file: Path, url: str, port: int, cert: Path, key: Path, anchors: Path) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        ["curl", "-sS", "--fail", "-o", "/dev/null", "--cert", str(cert), "--key", str(key), "--cacert", str(anchors),
         "--tlsv1.3", "--resolve", f"{IDENTITY}:{port}:127.0.0.1", "-T", str(file), url],
        capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"curl failed: {done.stderr.strip()}")
    return seconds


def run_mesh(file: Path, to: str, cert: Path, key: Path, anchors: Path, raw: bool = False) -> dict[str, float]:
    done = subprocess.run([sys.executable, __file__, "--child", "--file", str(file), "--to", to, "--cert", str(cert),
                           "--key", str(key), "--anchors", str(anchors), *(["--raw"] if raw else [])],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"meshclient push failed: {done.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


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
            curl_s, mesh_s, raw_s, growth = [], [], [], []
            for i in range(args.runs):
                order = ("curl", "mesh", "raw") if i % 2 == 0 else ("raw", "mesh", "curl")
                for side in order:
                    if side == "raw":
                        raw_s.append(run_mesh(big, f"{peer.dav_url}/raw/{i}", cert, key, anchors, raw=True)["seconds"])
                    elif side == "curl":
                        curl_s.append(run_curl(big, f"https://{IDENTITY}:{peer.port}/dav/curl/{i}/big.bin", peer.port,
                                               cert, key, anchors))
                    else:
                        r = run_mesh(big, f"{peer.dav_url}/mesh/{i}", cert, key, anchors)
                        mesh_s.append(r["seconds"])
                        growth.append((r["rss_peak_kib"] - r["rss_before_kib"]) / 1024)
                shutil.rmtree(peer.store_root, ignore_errors=True)  # keep tmpfs use at one copy
                peer.store_root.mkdir(parents=True, exist_ok=True)
        mib = size / 2**20
        curl_tp, mesh_tp = mib / min(curl_s), mib / min(mesh_s)
        print(f"file: {mib:.0f} MiB on {base}, nginx WebDAV on tmpfs, {args.runs} run(s) per side")
        print(f"curl:       best {min(curl_s):.3f} s  ({curl_tp:.0f} MiB/s)  runs {[round(s, 3) for s in curl_s]}")
        print(f"meshclient: best {min(mesh_s):.3f} s  ({mesh_tp:.0f} MiB/s)  runs {[round(s, 3) for s in mesh_s]}"
              "  (sha-256 + PUT + HEAD + manifest)")
        raw_tp = mib / min(raw_s)
        print(f"transport only (client.put, no sha-256, no verification): best {min(raw_s):.3f} s ({raw_tp:.0f} MiB/s)")
        print(f"ratio meshclient/curl (throughput): {mesh_tp / curl_tp:.3f}  (target >= 0.9)")
        print(f"ratio transport-only/curl (throughput): {raw_tp / curl_tp:.3f}  (what the sha-256 costs: "
              f"{(1 / mesh_tp - 1 / raw_tp) * mib:.2f} s of {min(mesh_s):.2f} s)")
        print(f"meshclient RSS growth during the push: max {max(growth):.1f} MiB  (target < 64 MiB)")
    finally:
        if args.workdir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
