"""Run by test_spark_score_connect.py in a fresh process: a local Spark Connect server, then
``meshclient.spark.score`` over a pure Spark Connect session against the sandbox's MLflow
scoring server; writes the predictions and the plan bytes the client sent for the parent.

argv: sandbox.json, output directory, rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main() -> int:
    info = json.loads(Path(sys.argv[1]).read_text())
    out, rows = Path(sys.argv[2]), int(sys.argv[3])
    from connect_server import start_connect_server

    import meshclient.spark as mspark
    from meshclient import Credentials, MeshClient
    from meshclient.tokens import ClientCredentials

    server, url = start_connect_server()
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    spark = ConnectSession.builder.remote(url).getOrCreate()
    try:
        c, svc = info["client"], info["services"]["mlflow-scoring"]
        o = info["oidc"]
        token = ClientCredentials(token_url=o["token_url"], client_id=o["client_id"], client_secret=o["client_secret"],
                                  audience=o["audience"])
        client = MeshClient(Credentials.from_files(c["cert"], c["key"], info["trust_anchors"]), token=token)
        lows, spans = [4.3, 2.0, 1.0, 0.1], [3.6, 2.4, 5.9, 2.4]
        names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        df = spark.range(0, rows, 1, 4).selectExpr(
            "id", *[f"rand({i + 1}) * {spans[i]} + {lows[i]} AS {n}" for i, n in enumerate(names)])
        job = mspark.ScoringJob()
        scored = mspark.score(df, endpoint=svc["url"], server_identity=svc["identity"], client=client,
                              input_cols=names, batch_size=500, max_in_flight=2, job=job)
        (out / "plan.bin").write_bytes(scored._plan.to_proto(spark.client).SerializeToString())
        result = {"schema": scored.schema["prediction"].dataType.simpleString(),
                  "rows": [r.asDict() for r in scored.collect()], "job_rows": job.stats.rows}
        (out / "result.json").write_text(json.dumps(result))
        client.close()
    finally:
        spark.stop()
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
