"""Spark integration. Everything that touches pyspark lives here and imports it lazily:
``pyspark`` is never a dependency of meshclient (installing it on a cluster breaks the runtime).
"""

from __future__ import annotations

from typing import Any

from .share import SharedClient, is_spark_connect, share

__all__ = ["SharedClient", "share", "is_spark_connect", "score", "ScoringJob"]


def __getattr__(name: str) -> Any:
    # score / ScoringJob load on first use (they pull in the scoring codecs, not pyspark).
    if name in ("score", "ScoringJob"):
        from . import scoring

        return getattr(scoring, name)
    raise AttributeError(f"module 'meshclient.spark' has no attribute {name!r}")
