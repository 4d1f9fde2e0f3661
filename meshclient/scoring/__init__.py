"""Batch scoring against meshed model servers: MLflow ``/invocations`` and the Open Inference Protocol.

``score(client, pdf, endpoint=..., server_identity=..., protocol="mlflow"|"v2", model=...)``
returns one prediction per row, in row order. The codecs live in :mod:`.invocations` (MLflow)
and :mod:`.oip` / :mod:`.tensors` (v2, JSON and binary); :class:`Scorer` batches and sends
through the client's public request path. pandas, pyarrow and numpy are imported when used.
"""

from __future__ import annotations

from ..errors import ScoringError
from .score import score, to_pandas
from .scorer import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_BYTES, PROTOCOLS, Scorer
from .stats import ScoringStats

__all__ = ["score", "to_pandas", "Scorer", "ScoringStats", "ScoringError", "PROTOCOLS", "DEFAULT_BATCH_SIZE",
           "DEFAULT_MAX_BATCH_BYTES"]
