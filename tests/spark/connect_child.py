"""Run by test_spark_connect.py in a fresh process: a local Spark Connect server
(``SparkSession.builder.remote("local[2]")``), a MeshClient from the sandbox's files and OIDC
client, ``meshclient.spark.share`` on it, one ``mapInPandas`` job calling the sandbox echo
service from the executors, and the plan bytes the client sent, written for the parent to scan.

argv: sandbox.json, output directory, then ``ok`` (executors have the driver's seal key) or
``wrong-key`` (the driver seals with another key: the job must fail with a clear error).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path


def main() -> int:
    info = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    scenario = sys.argv[3]
    from connect_server import start_connect_server

    import meshclient.spark
    from meshclient import Credentials, MeshClient
    from meshclient.tokens import ClientCredentials

    # A local Spark Connect server on a free loopback port (remote("local") would always take
    # 15002), then a pure Connect session to it: the code under test sees only Spark Connect.
    server, url = start_connect_server()
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    spark = ConnectSession.builder.remote(url).getOrCreate()
    try:
        c, o, echo = info["client"], info["oidc"], info["services"]["echo"]
        token = ClientCredentials(token_url=o["token_url"], client_id=o["client_id"],
                                  client_secret=o["client_secret"], audience=o["audience"])
        client = MeshClient(Credentials.from_files(c["cert"], c["key"], info["trust_anchors"]), token=token)
        seal_key = None if scenario == "ok" else "another-seal-key-" + "x" * 32
        handle = meshclient.spark.share(client, spark, seal_key=seal_key)
        url, identity = echo["url"], echo["identity"]

        def call(batches):  # runs on the executors
            import pandas as pd

            mesh = handle.client()
            for pdf in batches:
                rows = []
                for row in pdf["row"]:
                    body = mesh.request("GET", f"{url}/connect/{row}", server_identity=identity).json()
                    rows.append((int(row), body["client_id"], body["subject"], os.getpid()))
                yield pd.DataFrame(rows, columns=["row", "client_id", "subject", "pid"])

        df = spark.range(0, 16, 1, 4).withColumnRenamed("id", "row").mapInPandas(
            call, "row long, client_id string, subject string, pid long")
        plan = df._plan.to_proto(spark.client).SerializeToString()
        (out / "plan.bin").write_bytes(plan)
        (out / "sealed.bin").write_bytes(handle._sealed or b"")
        result: dict[str, object] = {"mode": handle.mode}
        try:
            rows = [r.asDict() for r in df.collect()]
            result["rows"] = rows
        except Exception as exc:  # the wrong-key scenario: the executor's error, as the driver sees it
            result["error"] = f"{type(exc).__name__}: {exc}"[:4000]
        (out / "result.json").write_text(json.dumps(result))
        client.close()
    finally:
        spark.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
