"""``meshclient.scoring.score``: a pandas DataFrame in, one prediction per row out, in row order."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..errors import ScoringError
from .scorer import DEFAULT_BATCH_SIZE, DEFAULT_MAX_BATCH_BYTES, Scorer
from .stats import ScoringStats

if TYPE_CHECKING:
    from ..client import MeshClient

__all__ = ["score", "to_pandas"]


def to_pandas(predictions: Any, index: Any, name: str) -> Any:
    """A Series (one value per row) or a DataFrame (several outputs), on ``index``."""
    import pandas as pd

    if isinstance(predictions, dict):
        return pd.DataFrame({k: pd.Series(v, index=index, dtype=_dtype(v)) for k, v in predictions.items()},
                            index=index)
    return pd.Series(predictions, index=index, name=name, dtype=_dtype(predictions))


def _dtype(values: list[Any]) -> Any:
    return object if any(isinstance(v, (list, dict)) for v in values[:1]) else None


def score(client: MeshClient, pdf: Any, *, endpoint: str, server_identity: str, protocol: str = "mlflow",
          model: str | None = None, version: str | None = None, params: Mapping[str, Any] | None = None,
          batch_size: int = DEFAULT_BATCH_SIZE, max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
          max_in_flight: int = 1, idempotent: bool = True, binary: bool = True, use_metadata: bool = True,
          datatypes: Mapping[str, str] | None = None, timeout: float | tuple[float, float] | None = None,
          stats: ScoringStats | None = None, output_name: str = "prediction", body_format: str = "json") -> Any:
    """Score ``pdf`` against a model server; returns predictions on ``pdf``'s index, in row order.

    A Series when the model gives one value per row (which may be a list, e.g. class
    probabilities), a DataFrame when it gives several named outputs. Rows go in batches of at
    most ``batch_size`` rows and ``max_batch_bytes`` bytes, ``max_in_flight`` requests at a
    time. Each batch's POST is idempotent and retried within the client's budget
    (``idempotent=False`` sends it once). A failed batch raises :class:`ScoringError` naming
    its rows and the server's message. Pass a :class:`ScoringStats` to get the figures.
    See :class:`~meshclient.scoring.Scorer` for the other arguments.
    """
    try:
        import pandas as pd
    except ImportError:
        raise ScoringError("Scoring needs pandas.", hint="pip install 'meshclient[pandas]'.") from None
    if not isinstance(pdf, pd.DataFrame):
        raise ScoringError(f"score() takes a pandas DataFrame, got {type(pdf).__name__}.",
                           hint="For Spark DataFrames use meshclient.spark.score; for Arrow tables call .to_pandas().")
    scorer = Scorer(client, endpoint, server_identity, protocol=protocol, model=model, version=version, params=params,
                    batch_size=batch_size, max_batch_bytes=max_batch_bytes, max_in_flight=max_in_flight,
                    idempotent=idempotent, binary=binary, use_metadata=use_metadata, datatypes=datatypes,
                    timeout=timeout, body_format=body_format)
    predictions, _ = scorer.predict(pdf, stats=stats)
    return to_pandas(predictions, pdf.index, output_name)
