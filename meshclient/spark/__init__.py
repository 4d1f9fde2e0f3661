"""Spark integration. Everything that touches pyspark lives here and imports it lazily:
``pyspark`` is never a dependency of meshclient (installing it on a cluster breaks the runtime).
"""

from __future__ import annotations

from .share import SharedClient, is_spark_connect, share

__all__ = ["SharedClient", "share", "is_spark_connect"]
