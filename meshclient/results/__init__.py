"""Batch-inference results into a meshed receiver, exactly once (``docs/results-protocol.md``).

``push`` stages a batch under an idempotency key derived from its content and commits it;
``read`` gives the committed dataset back as an Arrow table. Writers that split a job (Spark)
``stage`` under a job id, then ``commit`` (or ``abort``) the job once. pandas and pyarrow load lazily.
"""

from __future__ import annotations

from .encoding import CONTENT_TYPES, FORMATS, to_table
from .push import JOB_HEADER, Receipt, abort, batch_id_for, commit, discard, push, read, stage

__all__ = ["push", "read", "stage", "commit", "abort", "discard", "batch_id_for", "Receipt", "FORMATS",
           "CONTENT_TYPES", "JOB_HEADER", "to_table"]
