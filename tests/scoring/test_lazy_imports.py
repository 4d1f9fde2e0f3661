"""Scoring never imports pandas, numpy, pyarrow or pyspark until it is called."""

from __future__ import annotations

import subprocess
import sys


def test_importing_scoring_and_spark_scoring_pulls_no_heavy_dependency() -> None:
    code = ("import sys, meshclient, meshclient.scoring, meshclient.spark, meshclient.spark.scoring, "
            "meshclient.spark.slots\n"
            "heavy = [m for m in ('pandas', 'numpy', 'pyarrow', 'pyspark', 'tritonclient') if m in sys.modules]\n"
            "assert not heavy, heavy\n"
            "assert callable(meshclient.spark.score) and meshclient.spark.ScoringJob\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
