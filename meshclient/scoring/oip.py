"""The Open Inference Protocol (KServe V2, Triton, MLServer) codec: tables to tensors and back.

``POST /v2/models/<model>[/versions/<v>]/infer`` with a JSON body, or (default) the binary
tensor data extension: the JSON header, then each input's raw bytes, with
``Inference-Header-Content-Length`` naming the header's length. The request header is built
exactly as ``tritonclient`` builds it (same keys, order, compact separators), so the bodies are
byte-identical. Model metadata (``GET /v2/models/<model>``) names and types the inputs.
Every request carries an ``id``: KServe 0.21 rejects one without.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from ..errors import ScoringError
from .tensors import datatype_of, decode_binary, encode_binary, from_json_data, json_data, numpy_dtype

__all__ = ["TensorSpec", "ModelMetadata", "Tensor", "model_path", "parse_metadata", "tensors_for",
           "encode_request", "decode_response", "HEADER_LENGTH"]

HEADER_LENGTH = "Inference-Header-Content-Length"


@dataclass(frozen=True)
class TensorSpec:
    """A tensor the model declares: name, OIP datatype and shape (``-1`` for any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class ModelMetadata:
    """What ``GET /v2/models/<model>`` says about the model's inputs and outputs."""

    name: str
    inputs: tuple[TensorSpec, ...] = ()
    outputs: tuple[TensorSpec, ...] = ()
    versions: tuple[str, ...] = ()


@dataclass(frozen=True)
class Tensor:
    """One input tensor ready to send: the array and how to name and type it."""

    name: str
    datatype: str
    array: Any  # a numpy array whose first dimension is the batch

    @property
    def shape(self) -> list[int]:
        return [int(s) for s in self.array.shape]


def model_path(model: str, version: str | None = None) -> str:
    """``/v2/models/<model>[/versions/<v>]`` with both parts escaped."""
    if not isinstance(model, str) or not model:
        raise ScoringError("protocol='v2' needs the model's name.",
                           hint="Pass model='<name>' as the server lists it under /v2/models.")
    path = f"/v2/models/{quote(model, safe='')}"
    return path + (f"/versions/{quote(str(version), safe='')}" if version else "")


def _specs(items: Any) -> tuple[TensorSpec, ...]:
    out = []
    for item in items or ():
        try:
            out.append(TensorSpec(str(item["name"]), str(item["datatype"]).upper(),
                                  tuple(int(s) for s in item.get("shape") or ())))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise ScoringError("The model metadata lists a tensor without a name, datatype or integer shape.",
                               hint="Check GET /v2/models/<model> on the server, or pass use_metadata=False.") from None
    return tuple(out)


def parse_metadata(doc: Any) -> ModelMetadata:
    """A :class:`ModelMetadata` from the metadata JSON document."""
    if not isinstance(doc, Mapping):
        raise ScoringError("The model metadata is not a JSON object.",
                           hint="Check GET /v2/models/<model> on the server, or pass use_metadata=False.")
    return ModelMetadata(str(doc.get("name", "")), _specs(doc.get("inputs")), _specs(doc.get("outputs")),
                         tuple(str(v) for v in doc.get("versions") or ()))


def _column_array(pdf: Any, column: Any, datatype: str) -> Any:
    import numpy as np

    series = pdf[column]
    if datatype == "BYTES":
        return series.to_numpy(dtype=object)
    if series.isna().any() and numpy_dtype(datatype).kind in ("i", "u", "b"):
        raise ScoringError(f"Column {column!r} has missing values, which {datatype} tensors cannot carry.",
                           hint="Fill or drop them first, or score the column as floating point.")
    try:
        return np.asarray(series.to_numpy(), dtype=numpy_dtype(datatype))
    except (TypeError, ValueError):
        raise ScoringError(f"Column {column!r} ({series.dtype}) does not convert to {datatype}.",
                           hint="Cast the column, or check the model's declared input datatype.") from None


def _fit(array: Any, spec_shape: Sequence[int]) -> Any:
    """Reshape a column's ``[n]`` array to the declared rank (``[-1, 1]`` -> ``[n, 1]``)."""
    if len(spec_shape) >= 2 and array.ndim == 1 and all(s in (1, -1) for s in spec_shape[1:]):
        return array.reshape([array.shape[0]] + [1] * (len(spec_shape) - 1))
    return array


def tensors_for(pdf: Any, metadata: ModelMetadata | None, datatypes: Mapping[str, str] | None = None) -> list[Tensor]:
    """The input tensors for a batch of rows.

    With metadata: one tensor per declared input named like a column; or, for a model with
    a single input, the whole table as one ``[rows, columns]`` tensor of its datatype.
    Without: one ``[rows]`` tensor per column, typed from the column (``datatypes`` overrides).
    """
    import numpy as np

    datatypes = dict(datatypes or {})
    columns = [str(c) for c in pdf.columns]
    if metadata is not None and metadata.inputs:
        specs = metadata.inputs
        if all(s.name in columns for s in specs):
            return [Tensor(s.name, datatypes.get(s.name, s.datatype),
                           _fit(_column_array(pdf, s.name, datatypes.get(s.name, s.datatype)), s.shape))
                    for s in specs]
        if len(specs) == 1:
            spec = specs[0]
            dt = datatypes.get(spec.name, spec.datatype)
            arrays = [_column_array(pdf, c, dt) for c in pdf.columns]
            if len(arrays) == 1 and len(spec.shape) <= 1:
                return [Tensor(spec.name, dt, arrays[0])]
            matrix = np.stack(arrays, axis=1) if arrays else np.empty((len(pdf), 0), dtype=numpy_dtype(dt))
            return [Tensor(spec.name, dt, matrix)]
        raise ScoringError(
            f"The model takes inputs {[s.name for s in specs]}; the table's columns are {columns[:20]}.",
            hint="Rename the columns to the model's input names, or select them.")
    out = []
    for column in pdf.columns:
        dt = datatypes.get(str(column)) or datatype_of(pdf[column].dtype)
        out.append(Tensor(str(column), dt, _column_array(pdf, column, dt)))
    return out


def encode_request(tensors: Sequence[Tensor], request_id: str, *, binary: bool = True, binary_output: bool = True,
                   outputs: Sequence[str] | None = None, parameters: Mapping[str, Any] | None = None,
                   ) -> tuple[bytes, dict[str, str]]:
    """The request body and its content headers (JSON or the binary tensor extension)."""
    request: dict[str, Any] = {"id": request_id}
    params: dict[str, Any] = {}
    raw: list[bytes] = []
    inputs = []
    for t in tensors:
        entry: dict[str, Any] = {"name": t.name, "shape": t.shape, "datatype": t.datatype}
        if binary:
            data = encode_binary(t.array, t.datatype)
            entry["parameters"] = {"binary_data_size": len(data)}
            raw.append(data)
        else:
            entry["data"] = json_data(t.array, t.datatype)
        inputs.append(entry)
    request["inputs"] = inputs
    if outputs:
        request["outputs"] = [{"name": n, "parameters": {"binary_data": binary_output}} for n in outputs]
    elif binary_output:
        params["binary_data_output"] = True
    params.update(parameters or {})
    if params:
        request["parameters"] = params
    header = json.dumps(request, separators=(",", ":")).encode()  # compact, as tritonclient (rapidjson)
    if not raw:
        return header, {"Content-Type": "application/json"}
    return header + b"".join(raw), {"Content-Type": "application/octet-stream", HEADER_LENGTH: str(len(header))}


def decode_response(body: bytes, headers: Mapping[str, str], rows: int) -> dict[str, Any]:
    """``{output name: numpy array}`` in the server's order; each array's first dimension is ``rows``."""
    length = headers.get(HEADER_LENGTH)
    try:
        size = int(length) if length is not None else len(body)
        doc = json.loads(body[:size])
    except ValueError:
        raise ScoringError("The model server's answer is not an inference response (no JSON header).",
                           hint="Check that the endpoint speaks the Open Inference Protocol (v2).") from None
    outputs = doc.get("outputs") if isinstance(doc, dict) else None
    if not isinstance(outputs, list) or not outputs:
        raise ScoringError("The model server's answer has no outputs.",
                           hint="Check the model on the server (GET /v2/models/<model>).")
    result: dict[str, Any] = {}
    offset = size
    for out in outputs:
        try:
            name, datatype, shape = str(out["name"]), str(out["datatype"]).upper(), [int(s) for s in out["shape"]]
        except (KeyError, TypeError, ValueError):
            raise ScoringError("An output in the model server's answer lacks a name, datatype or shape.",
                               hint="The server does not follow the Open Inference Protocol.") from None
        binary_size = (out.get("parameters") or {}).get("binary_data_size")
        if binary_size is not None:
            chunk = body[offset:offset + int(binary_size)]
            if len(chunk) != int(binary_size):
                raise ScoringError(f"Output {name!r} is cut short in the binary answer.",
                                   hint="The answer was truncated; retry, or check the server's logs.")
            offset += int(binary_size)
            array = decode_binary(chunk, datatype, shape)
        else:
            array = from_json_data(out.get("data"), datatype, shape)
        if array.ndim == 0 or array.shape[0] != rows:
            raise ScoringError(f"Output {name!r} has shape {shape}, not one prediction per row ({rows} rows).",
                               hint="The model must return a batch dimension first.")
        result[name] = array
    return result


def values_per_row(array: Any) -> list[Any]:
    """One Python value per row: scalars for ``[rows]``, nested lists for higher ranks; BYTES as text."""
    values: list[Any] = array.tolist()
    if array.dtype == object:
        values = [_text(v) for v in values]
    return values


def _text(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return value
    if isinstance(value, list):
        return [_text(v) for v in value]
    return value
