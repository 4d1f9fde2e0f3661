"""Entry points for Databricks ``python_wheel_task`` jobs: score a table, push artifacts, push results.

A wheel task calls a console script of the wheel with its ``parameters`` as ``sys.argv`` (or its
``named_parameters`` as ``--name=value``), and shows the run's stdout/stderr on the job run page.
Each entry point takes both forms, prints one line per step on stdout, reports a failure as
``meshclient: error: ...`` with the fix on the next line (never a secret), and exits 0 (done),
1 (failed; nothing half-visible) or 2 (bad parameters, naming the one at fault).

Console scripts (``pyproject.toml``): ``meshclient-score-table``, ``meshclient-push-artifacts``,
``meshclient-push-results``.
"""

from __future__ import annotations

__all__ = ["push_artifacts", "push_results", "score_table"]


def push_artifacts() -> int:
    from .transfers import push_artifacts_main

    return push_artifacts_main()


def push_results() -> int:
    from .transfers import push_results_main

    return push_results_main()


def score_table() -> int:
    from .score_table import main

    return main()
