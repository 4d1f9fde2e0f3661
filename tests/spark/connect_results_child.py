"""Run by test_spark_results_connect.py in a fresh process: a local Spark Connect server, then
``meshclient.spark.write_results`` over a pure Spark Connect session to the sandbox's results
receiver, once through the ``meshclient-results`` data source and once through ``mapInArrow``
with a driver-side commit. Every request the Connect client sends is recorded (a gRPC
interceptor on the channel) so the parent can look for key material in it.

argv: sandbox.json, output directory, rows.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def recording_builder(url: str, sink: list[bytes]) -> Any:
    """A Connect channel builder whose channel records the serialized bytes of every request."""
    import grpc
    from pyspark.sql.connect.client import DefaultChannelBuilder

    def keep(request: Any) -> None:
        sink.append(request.SerializeToString() if hasattr(request, "SerializeToString") else bytes(request))

    class Recorder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor,
                   grpc.StreamUnaryClientInterceptor):
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            keep(request)
            return continuation(details, request)

        def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            keep(request)
            return continuation(details, request)

        def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
            def each() -> Any:
                for r in requests:
                    keep(r)
                    yield r
            return continuation(details, each())

    builder = DefaultChannelBuilder(url)
    builder.add_interceptor(Recorder())
    return builder


def main() -> int:
    info = json.loads(Path(sys.argv[1]).read_text())
    out, rows = Path(sys.argv[2]), int(sys.argv[3])
    from connect_server import start_connect_server

    import meshclient.spark as mspark
    from meshclient import Credentials, MeshClient
    from meshclient.spark.results import has_data_source

    server, url = start_connect_server()
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    sent: list[bytes] = []
    spark = ConnectSession.builder.channelBuilder(recording_builder(url, sent)).getOrCreate()
    reports = {}
    try:
        c, svc = info["client"], info["services"]["results"]
        client = MeshClient(Credentials.from_files(c["cert"], c["key"], info["trust_anchors"]))
        df = spark.range(0, rows, 1, 4).selectExpr("id", "id * 2 AS doubled", "concat('row-', id) AS label")
        vias = {"ds": True, "mia": False} if has_data_source() else {"mia": False}
        for via, use_ds in vias.items():
            report = mspark.write_results(df, url=svc["url"], server_identity=svc["identity"],
                                          dataset=f"connect-{via}", client=client, batch_rows=700,
                                          use_data_source=use_ds)
            reports[via] = {"via": report.via, "batches": report.batches, "job": report.job}
        client.close()
    finally:
        spark.stop()
        server.stop()
    (out / "sent.bin").write_bytes(b"\x00".join(sent))
    (out / "reports.json").write_text(json.dumps(reports))
    return 0


if __name__ == "__main__":
    sys.exit(main())
