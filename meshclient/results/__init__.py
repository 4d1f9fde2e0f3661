"""Batch-inference results into a meshed receiver, exactly once (``docs/results-protocol.md``).

``push`` stages a batch under an idempotency key derived from its content and commits it;
``read`` gives the committed dataset back as an Arrow table. pandas and pyarrow load lazily.
"""

from __future__ import annotations

from .encoding import CONTENT_TYPES, FORMATS, to_table
from .push import Receipt, batch_id_for, commit, push, read, stage

__all__ = ["push", "read", "stage", "commit", "batch_id_for", "Receipt", "FORMATS", "CONTENT_TYPES", "to_table"]
