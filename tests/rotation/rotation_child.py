"""A stand-in for a Spark executor: unpickles a ``ClientConfig`` and sends requests until told to stop.

Usage: ``python rotation_child.py URL SERVER_IDENTITY`` with the pickled config, base64, as the
first line of stdin. It prints one JSON line per new client serial nginx reports
(``{"serial": ..., "requests": n}``), and when stdin closes, ``{"done": true, "requests": n,
"failures": [...]}``. A fresh interpreter (no fork) is exactly what a worker process gets.
"""

from __future__ import annotations

import base64
import json
import pickle
import sys
import threading

from meshclient.worker_cache import client_for


def main() -> int:
    url, server_identity = sys.argv[1], sys.argv[2]
    config = pickle.loads(base64.b64decode(sys.stdin.readline()))
    stop = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()  # EOF: the parent is done
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    client = client_for(config)
    requests = 0
    failures: list[str] = []
    last = None
    while not stop.is_set():
        requests += 1
        try:
            resp = client.get(url, server_identity=server_identity, timeout=10.0)
            if resp.status_code != 200:
                failures.append(f"status {resp.status_code}")
                continue
            serial = f"{int(resp.headers['X-Client-Serial'], 16):x}"
        except Exception as exc:  # every failure is reported to the parent
            failures.append(f"{type(exc).__name__}: {exc}")
            continue
        if serial != last:
            last = serial
            print(json.dumps({"serial": serial, "requests": requests}), flush=True)
    print(json.dumps({"done": True, "requests": requests, "failures": failures[:20]}), flush=True)
    client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
