"""Benchmark: a 200-file model directory to a real MLflow server, meshclient vs MLflow's own client.

The same ``mlflow server`` (SQLite backend, ``--serve-artifacts``, artifacts on tmpfs) takes
the same tree (200 files of mixed sizes, 300 MiB by default) twice per round:

* baseline: MLflow's own ``MlflowClient.log_artifacts`` over **plain HTTP** straight to the
  server (its ``HttpArtifactRepository``: one streamed PUT per file, one after the other);
* meshclient: the same call, ``MlflowClient.log_artifacts``, with the tracking URI
  ``mesh+https://...`` — mutual TLS through an inbound proxy (``--front``: nginx configured like
  a Linkerd proxy when installed, else the sandbox's Python proxy), identity verified, files in
  parallel (8 workers), each one digest-checked.

Rounds alternate the order; the figure per side is its best time. Target: meshclient >= 2x faster.
It also prints the CPU seconds of each side (this process, and the server with its proxy) and
the sha-256 of the tree alone, and from them the best ratio a client that hashes every byte could
reach on this machine's cores: parallel uploads can at most spread the same work over all cores.

Usage: ``python bench/artifacts_mlflow.py [--files 200] [--total-mib 300] [--rounds 3]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import tempfile
import time
from pathlib import Path

from cpu_meter import cores, self_cpu, tree_cpu


def make_tree(root: Path, files: int, total: int) -> int:
    """``files`` files whose sizes follow a model directory's shape: a few big weight shards, many small files."""
    rng = random.Random(42)
    weights = [rng.paretovariate(1.2) for _ in range(files)]
    scale = total / sum(weights)
    block = os.urandom(1024 * 1024)
    written = 0
    for i, w in enumerate(weights):
        size = max(0, int(w * scale)) if i % 40 else 0  # a few empty files too
        path = root / f"shard-{i % 5}" / f"part-{i:03d}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as fh:
            left = size
            while left:
                n = min(left, len(block))
                fh.write(block[:n])
                left -= n
        written += size
    return written


def serve(workdir: Path, front: str) -> None:
    """Child process: the sandbox with the MLflow server behind an inbound proxy, until stdin closes.

    ``front`` ``nginx``: nginx configured like a Linkerd inbound proxy (native code, streaming, as the
    real proxy is); ``sandbox``: the sandbox's own proxy, in Python (in its own process it does not
    share the benchmark client's GIL, but it costs a core of its own on a small machine)."""
    import contextlib
    import json
    import sys

    from meshclient.identity import Identity
    from meshclient_sandbox.nginx import find_nginx
    from meshclient_sandbox.nginx_proxy import ProxyingNginx
    from meshclient_sandbox.runner import SERVICE_NAMESPACE, Sandbox, SandboxSettings

    with Sandbox(SandboxSettings(workdir, services=("mlflow",))) as sandbox, contextlib.ExitStack() as stack:
        app = sandbox.apps["mlflow"]
        info = {**sandbox.info, "mlflow_app": app.url,  # type: ignore[attr-defined]
                "mlflow_artifacts": str(app.artifacts_dir), "front": "sandbox proxy (Python)"}  # type: ignore[attr-defined]
        if front == "nginx" or (front == "auto" and find_nginx() is not None):
            assert sandbox.pki is not None
            leaf = sandbox.pki.issue(Identity.linkerd("mlflow", SERVICE_NAMESPACE))
            nginx = stack.enter_context(ProxyingNginx(app.port, cert_chain_pem=leaf.chain_pem, key_pem=leaf.key_pem,
                                                      client_trust_pem=leaf.trust_anchors_pem,
                                                      workdir=workdir / "nginx-front", worker_processes=1))
            info["services"]["mlflow"] = {**info["services"]["mlflow"], "url": nginx.url}
            info["front"] = "nginx (like a Linkerd inbound proxy)"
        print(json.dumps(info), flush=True)
        sys.stdin.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--files", type=int, default=200)
    parser.add_argument("--total-mib", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--front", choices=("auto", "nginx", "sandbox"), default="auto",
                        help="the inbound proxy in front of the server (auto: nginx when installed)")
    parser.add_argument("--serve", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.front)
        return

    from mlflow.tracking import MlflowClient

    import meshclient.mlflow as mesh_mlflow
    from meshclient import Credentials, MeshClient
    from meshclient.artifacts.digest import sha256_file

    base = Path("/dev/shm") if Path("/dev/shm").is_dir() else Path(tempfile.gettempdir())
    work = Path(tempfile.mkdtemp(prefix="meshclient-bench-mlflow-", dir=base))
    try:
        tree = work / "tree"
        total = make_tree(tree, args.files, args.total_mib * 1024 * 1024)
        import json
        import subprocess
        import sys

        server = subprocess.Popen([sys.executable, __file__, "--serve", str(work / "sandbox"), "--front", args.front],
                                  stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True)
        try:
            assert server.stdout is not None and server.stdin is not None
            info = json.loads(server.stdout.readline())
            svc = info["services"]["mlflow"]
            artifacts_dir = Path(info["mlflow_artifacts"])
            plain = MlflowClient(tracking_uri=info["mlflow_app"])
            mesh_uri = f"mesh+https://{svc['url'].removeprefix('https://')}?server_identity={svc['identity']}"
            creds = Credentials.from_files(info["client"]["cert"], info["client"]["key"], info["trust_anchors"])
            client = MeshClient(creds, timeout=(5.0, 120.0))
            mesh_mlflow.use(client)
            mesh = MlflowClient(tracking_uri=mesh_uri)
            exp = plain.create_experiment("bench")
            times: dict[str, list[float]] = {"mlflow": [], "meshclient": []}
            cpu: dict[str, list[tuple[float, float]]] = {"mlflow": [], "meshclient": []}
            for r in range(args.rounds):
                order = ("mlflow", "meshclient") if r % 2 == 0 else ("meshclient", "mlflow")
                for side in order:
                    c = plain if side == "mlflow" else mesh
                    run = c.create_run(exp)
                    server0, client0 = tree_cpu(server.pid), self_cpu()
                    t0 = time.perf_counter()
                    c.log_artifacts(run.info.run_id, str(tree), artifact_path="model")
                    times[side].append(time.perf_counter() - t0)
                    cpu[side].append((self_cpu() - client0, tree_cpu(server.pid) - server0))
                shutil.rmtree(artifacts_dir, ignore_errors=True)
            client.close()
        finally:
            if server.stdin is not None:
                server.stdin.close()
            server.wait(timeout=60)
        hash_cpu0 = self_cpu()
        for f in tree.rglob("*"):
            if f.is_file():
                sha256_file(f)
        hash_cpu = self_cpu() - hash_cpu0
        mib = total / 2**20
        best = {k: min(v) for k, v in times.items()}
        at = {k: cpu[k][v.index(min(v))] for k, v in times.items()}
        print(f"tree: {args.files} files, {mib:.0f} MiB; mlflow server (SQLite, --serve-artifacts) artifacts on {base}; "
              f"meshclient through {info['front']}")
        for side, label in (("mlflow", "MLflow log_artifacts, plain HTTP"), ("meshclient", "meshclient, mTLS via proxy")):
            print(f"{label:<34} best {best[side]:.2f} s ({mib / best[side]:.0f} MiB/s)  CPU client {at[side][0]:.2f} s"
                  f" + server and proxy {at[side][1]:.2f} s  runs {[round(t, 2) for t in times[side]]}")
        print(f"ratio MLflow time / meshclient time: {best['mlflow'] / best['meshclient']:.2f}x  (target >= 2)")
        server_work, mesh_server = at["mlflow"][1], at["meshclient"][1]
        bare = max((server_work + hash_cpu) / cores(), 0.01)  # one clock tick: toy sizes can measure 0
        meshed = max((mesh_server + hash_cpu) / cores(), 0.01)
        print(f"sha-256 of the tree alone: {hash_cpu:.2f} s CPU")
        print(f"CPU budget on {cores()} core(s): MLflow's server used {server_work:.2f} s for MLflow's upload; with the "
              f"sha-256 any client needs >= {bare:.2f} s here (best reachable ratio {best['mlflow'] / bare:.2f}x "
              f"with TLS and the proxy free); counting the server and proxy as measured behind the mesh "
              f"({mesh_server:.2f} s), >= {meshed:.2f} s (best reachable ratio {best['mlflow'] / meshed:.2f}x)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
