"""A local Spark Connect server for the Connect child processes (``connect_*_child.py``): a
classic local[2] session with the Connect plugin on a free loopback port (``remote("local")``
would always take 15002), so the code under test talks to it only through Spark Connect."""

from __future__ import annotations

import socket
from typing import Any

__all__ = ["start_connect_server"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_connect_server() -> tuple[Any, str]:
    """(the server's classic session, to ``stop()`` last; the ``sc://`` URL to connect to)."""
    from pyspark.sql import SparkSession

    port = _free_port()
    server = (SparkSession.builder.master("local[2]")
              .config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
              .config("spark.connect.grpc.binding.port", str(port))
              .config("spark.connect.grpc.binding.address", "127.0.0.1")
              .config("spark.ui.enabled", "false")
              .config("spark.sql.shuffle.partitions", "2")
              .getOrCreate())
    return server, f"sc://127.0.0.1:{port}"
