"""The MLflow scoring server codec: ``POST /invocations`` with ``dataframe_split`` JSON.

The request is ``{"dataframe_split": {"columns": [...], "data": [[...], ...]}, "params": {...}}``
(research §4.1). Floats are written with Python's shortest round-trip repr, so the server
reads back exactly the values the table holds (pandas' ``to_json`` rounds to 15 digits);
missing values become ``null`` and timestamps ISO 8601 text.

``encode_parquet`` sends the batch as a Parquet file instead (``application/vnd.apache.parquet``,
which the scoring server also reads; exact by construction, no ``params``).

The answer's ``predictions`` come in every shape MLflow returns: a list (one value per row,
maybe a list itself), a list of dicts (records), a dict of lists (columns), and each of them
bare (MLflow 1.x) or under ``{"predictions": ...}``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from ..errors import ScoringError

__all__ = ["PATH", "PARQUET", "encode_request", "encode_parquet", "decode_response", "json_value", "Predictions"]

PATH = "/invocations"

#: One value per row, or ``{column: one value per row}``.
Predictions = list[Any] | dict[str, list[Any]]


def _column_values(series: Any) -> list[Any]:
    kind = getattr(series.dtype, "kind", "O")
    if kind == "f":
        return [None if v != v or v in (math.inf, -math.inf) else v for v in series.tolist()]
    if kind in ("i", "u", "b"):
        values: list[Any] = series.tolist()
        return values
    if kind == "M":
        return [None if v is None or v != v else v.isoformat() for v in series.tolist()]
    return [json_value(v) for v in series.tolist()]


def json_value(value: Any) -> Any:
    """A JSON-able value: NA and NaN to ``None``, numpy scalars to Python, timestamps to text."""
    if value is None:
        return None
    if isinstance(value, float):
        return None if value != value or value in (math.inf, -math.inf) else value
    if isinstance(value, (str, int, bool)):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    item = getattr(value, "item", None)
    if callable(item) and not isinstance(value, (list, dict)):
        try:
            return json_value(item())
        except (TypeError, ValueError):
            pass
    iso = getattr(value, "isoformat", None)
    if callable(iso):
        return iso()
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        return json_value(tolist())
    return str(value)


PARQUET = "application/vnd.apache.parquet"


def encode_parquet(pdf: Any, params: Mapping[str, Any] | None = None) -> tuple[bytes, dict[str, str]]:
    """The batch as a Parquet file (the server reads it with ``pd.read_parquet``; no ``params`` then)."""
    import io

    if params:
        raise ScoringError("MLflow takes params only with JSON bodies.",
                           hint="Use body_format='json' (the default) to send params.")
    buffer = io.BytesIO()
    pdf.reset_index(drop=True).to_parquet(buffer, index=False)
    return buffer.getvalue(), {"Content-Type": PARQUET}


def encode_request(pdf: Any, params: Mapping[str, Any] | None = None) -> tuple[bytes, dict[str, str]]:
    """The JSON body for a batch of rows, and its content type."""
    columns = [str(c) for c in pdf.columns]
    values = [_column_values(pdf[c]) for c in pdf.columns]
    doc: dict[str, Any] = {"dataframe_split": {"columns": columns, "data": [list(r) for r in zip(*values, strict=True)]
                                               if values else [[] for _ in range(len(pdf))]}}
    if params:
        doc["params"] = dict(params)
    try:
        body = json.dumps(doc, allow_nan=False, separators=(",", ":")).encode()
    except (TypeError, ValueError) as exc:
        raise ScoringError(f"The rows cannot be written as MLflow JSON: {type(exc).__name__}.",
                           hint="Cast columns to numbers, strings, bools or timestamps; params must be JSON.") from None
    return body, {"Content-Type": "application/json"}


def decode_response(body: bytes, rows: int) -> Predictions:
    """One prediction per row (a list), or columns of them (a dict of lists)."""
    try:
        doc = json.loads(body)
    except ValueError:
        raise ScoringError("The MLflow scoring server's answer is not JSON.",
                           hint="Check that the endpoint is an MLflow scoring server (POST /invocations).") from None
    if isinstance(doc, dict) and "predictions" in doc:
        doc = doc["predictions"]
    if isinstance(doc, list):
        if doc and all(isinstance(r, dict) for r in doc):
            names: dict[str, None] = {}
            for r in doc:
                names.update(dict.fromkeys(r))
            result: Predictions = {str(n): [r.get(n) for r in doc] for n in names}
        else:
            result = doc
    elif isinstance(doc, dict) and doc and all(isinstance(v, list) for v in doc.values()):
        result = {str(k): v for k, v in doc.items()}
    else:
        raise ScoringError(f"The MLflow scoring server answered a {type(doc).__name__}, not predictions.",
                           hint="Expected a list, a list of records or a dict of lists (under 'predictions').")
    count = len(result) if isinstance(result, list) else min((len(v) for v in result.values()), default=0)
    if isinstance(result, dict) and any(len(v) != count for v in result.values()):
        raise ScoringError("The MLflow scoring server's prediction columns differ in length.",
                           hint="Check the model's predict output.")
    if count != rows:
        raise ScoringError(f"The MLflow scoring server returned {count} predictions for {rows} rows.",
                           hint="The model must return one prediction per input row.")
    return result
