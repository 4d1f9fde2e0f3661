"""Tensors for the Open Inference Protocol: datatypes, and the binary tensor data extension.

A tensor on the wire is little-endian, row-major, without padding; BOOL is one byte per
element; each BYTES element is a 4-byte little-endian length followed by its bytes (research
§4.2, Triton's ``extension_binary_data.md``). The bytes are the same as ``tritonclient``'s for
the same array (the tests use it as the oracle). numpy is imported lazily (it comes with pandas).
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Any

from ..errors import ScoringError

__all__ = ["NUMPY_DATATYPES", "datatype_of", "numpy_dtype", "encode_binary", "decode_binary", "json_data",
           "from_json_data", "element_size"]

#: OIP datatype -> numpy dtype string (little-endian); BYTES is an object array.
NUMPY_DATATYPES: dict[str, str] = {
    "BOOL": "|b1", "INT8": "|i1", "INT16": "<i2", "INT32": "<i4", "INT64": "<i8",
    "UINT8": "|u1", "UINT16": "<u2", "UINT32": "<u4", "UINT64": "<u8",
    "FP16": "<f2", "FP32": "<f4", "FP64": "<f8",
}
_KIND_SIZE = {"b": "BOOL", "i": "INT", "u": "UINT", "f": "FP"}
_LEN = struct.Struct("<I")


def element_size(datatype: str) -> int | None:
    """Bytes per element (``None`` for BYTES, whose elements vary)."""
    if datatype == "BYTES":
        return None
    return int(NUMPY_DATATYPES[datatype][2:])


def datatype_of(dtype: Any) -> str:
    """The OIP datatype for a numpy, pandas or pyarrow dtype (strings and binaries are BYTES)."""
    arrow = _arrow_datatype(dtype)
    if arrow is not None:
        return arrow
    import numpy as np

    name = str(dtype)
    if name in ("string", "str", "object", "bytes") or name.startswith("string["):
        return "BYTES"
    masked = getattr(dtype, "numpy_dtype", None)  # pandas nullable Int64 / Float32 / boolean
    try:
        np_dtype = np.dtype(masked if masked is not None else dtype)
    except TypeError:
        raise ScoringError(f"The column type {name!r} has no Open Inference Protocol datatype.",
                           hint="Cast it to a number, bool or string column, or pass datatypes={column: 'FP32'}.") from None
    if np_dtype.kind in ("O", "U", "S"):
        return "BYTES"
    prefix = _KIND_SIZE.get(np_dtype.kind)
    if prefix is None:
        raise ScoringError(f"The column type {name!r} has no Open Inference Protocol datatype.",
                           hint="Cast it to a number, bool or string column (timestamps: to int64 or strings).")
    return "BOOL" if prefix == "BOOL" else f"{prefix}{np_dtype.itemsize * 8}"


def _arrow_datatype(dtype: Any) -> str | None:
    module = type(dtype).__module__
    if not module.startswith("pyarrow"):
        return None
    import pyarrow as pa

    if pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_binary(dtype) \
            or pa.types.is_large_binary(dtype):
        return "BYTES"
    if pa.types.is_boolean(dtype):
        return "BOOL"
    if pa.types.is_integer(dtype) or pa.types.is_floating(dtype):
        return datatype_of(dtype.to_pandas_dtype())
    raise ScoringError(f"The Arrow type {dtype} has no Open Inference Protocol datatype.",
                       hint="Cast it to a number, bool or string column.")


def numpy_dtype(datatype: str) -> Any:
    import numpy as np

    if datatype == "BYTES":
        return np.dtype(object)
    try:
        return np.dtype(NUMPY_DATATYPES[datatype])
    except KeyError:
        raise ScoringError(f"The Open Inference Protocol datatype {datatype!r} is not supported here.",
                           hint=f"Supported: {', '.join([*NUMPY_DATATYPES, 'BYTES'])}.") from None


def _as_bytes(value: Any) -> bytes:
    return value if type(value) is bytes else str(value).encode("utf-8")


def encode_binary(array: Any, datatype: str) -> bytes:
    """The raw bytes of ``array`` as ``datatype`` in the binary tensor extension."""
    import numpy as np

    if datatype == "BYTES":
        flat = np.asarray(array, dtype=object).ravel(order="C")
        parts: list[bytes] = []
        for value in flat.tolist():
            data = _as_bytes(value)
            parts.append(_LEN.pack(len(data)))
            parts.append(data)
        return b"".join(parts)
    return np.ascontiguousarray(array, dtype=numpy_dtype(datatype)).tobytes(order="C")


def decode_binary(data: bytes | memoryview, datatype: str, shape: Sequence[int]) -> Any:
    """A numpy array of ``shape`` from a binary tensor (``data`` is exactly the tensor's bytes)."""
    import numpy as np

    if datatype == "BYTES":
        values: list[bytes] = []
        view, pos, end = memoryview(data), 0, len(data)
        while pos < end:
            if pos + 4 > end:
                raise ScoringError("A BYTES output tensor is truncated (a length prefix runs past its end).",
                                   hint="The server's binary output does not follow the binary tensor extension.")
            (n,) = _LEN.unpack_from(view, pos)
            pos += 4
            if pos + n > end:
                raise ScoringError("A BYTES output tensor is truncated (an element runs past its end).",
                                   hint="The server's binary output does not follow the binary tensor extension.")
            values.append(bytes(view[pos:pos + n]))
            pos += n
        out = np.empty(len(values), dtype=object)
        out[:] = values
        return _reshape(out, shape)
    return _reshape(np.frombuffer(data, dtype=numpy_dtype(datatype)), shape)


def _reshape(flat: Any, shape: Sequence[int]) -> Any:
    try:
        return flat.reshape([int(s) for s in shape])
    except ValueError:
        raise ScoringError(f"An output tensor has {flat.size} elements, which does not fit its shape {list(shape)}.",
                           hint="The server's answer is inconsistent; check the model server's logs.") from None


def json_data(array: Any, datatype: str) -> list[Any]:
    """The flat, row-major JSON ``data`` list for ``array`` (BYTES as UTF-8 strings)."""
    import numpy as np

    if datatype == "BYTES":
        flat = np.asarray(array, dtype=object).ravel(order="C").tolist()
        return [v.decode("utf-8") if type(v) is bytes else str(v) for v in flat]
    values: list[Any] = np.ascontiguousarray(array, dtype=numpy_dtype(datatype)).ravel(order="C").tolist()
    return values


def from_json_data(data: Any, datatype: str, shape: Sequence[int]) -> Any:
    """A numpy array from a JSON ``data`` value (flat or nested, row-major)."""
    import numpy as np

    if datatype == "BYTES":
        items = list(_flatten(data))
        flat = np.empty(len(items), dtype=object)
        flat[:] = items
        return _reshape(flat, shape)
    return _reshape(np.asarray(list(_flatten(data)), dtype=numpy_dtype(datatype)), shape)


def _flatten(data: Any) -> Any:
    if isinstance(data, list):
        for item in data:
            yield from _flatten(item)
    else:
        yield data
