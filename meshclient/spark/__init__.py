"""Spark integration. Everything that touches pyspark lives here and imports it lazily:
``pyspark`` is never a dependency of meshclient (installing it on a cluster breaks the runtime).
"""

from __future__ import annotations

from typing import Any

from .share import SharedClient, is_spark_connect, share

__all__ = ["SharedClient", "share", "is_spark_connect", "score", "ScoringJob", "register", "write_results",
           "write_results_stream", "WriteReport"]


def register(spark: Any, client: Any = None) -> Any:
    """Register the ``meshclient-results`` data source (Spark >= 4.0) on ``spark``; see
    :func:`meshclient.spark.results_source.register`."""
    from .results_source import register as _register

    return _register(spark, client)


def __getattr__(name: str) -> Any:
    # score / ScoringJob / write_results load on first use (they pull in codecs, not pyspark).
    if name in ("score", "ScoringJob"):
        from . import scoring

        return getattr(scoring, name)
    if name in ("write_results", "write_results_stream", "WriteReport"):
        from . import results

        return getattr(results, name)
    raise AttributeError(f"module 'meshclient.spark' has no attribute {name!r}")
