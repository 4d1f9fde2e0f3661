"""Spark result types for scoring: from v2 model metadata, from a sample prediction, or a user's type.

pyspark is imported inside the functions (this module is imported only by ``meshclient.spark.scoring``).
"""

from __future__ import annotations

from typing import Any

from ..errors import ScoringError
from ..scoring.oip import ModelMetadata, TensorSpec

__all__ = ["type_from_metadata", "type_from_sample", "parse_return_type", "arrow_type"]

_OIP_SPARK = {"BOOL": "BooleanType", "INT8": "ByteType", "INT16": "ShortType", "INT32": "IntegerType",
              "INT64": "LongType", "UINT8": "ShortType", "UINT16": "IntegerType", "UINT32": "LongType",
              "UINT64": "LongType", "FP16": "FloatType", "FP32": "FloatType", "FP64": "DoubleType",
              "BYTES": "StringType"}


def _tensor_type(spec: TensorSpec) -> Any:
    from pyspark.sql import types as T

    name = _OIP_SPARK.get(spec.datatype)
    if name is None:
        raise ScoringError(f"Output {spec.name!r} has datatype {spec.datatype}, which has no Spark type here.",
                           hint="Pass return_type= to meshclient.spark.score.")
    t: Any = getattr(T, name)()
    for _ in spec.shape[1:]:
        t = T.ArrayType(t, True)
    return t


def type_from_metadata(metadata: ModelMetadata) -> Any:
    """One output: its type; several: a struct with one field per output, in the server's order."""
    from pyspark.sql import types as T

    if not metadata.outputs:
        raise ScoringError(f"Model {metadata.name!r} declares no outputs in its metadata.",
                           hint="Pass return_type= to meshclient.spark.score.")
    if len(metadata.outputs) == 1:
        return _tensor_type(metadata.outputs[0])
    return T.StructType([T.StructField(s.name, _tensor_type(s), True) for s in metadata.outputs])


def _value_type(values: list[Any]) -> Any:
    from pyspark.sql import types as T

    sample = next((v for v in values if v is not None), None)
    if isinstance(sample, bool):
        return T.BooleanType()
    if isinstance(sample, int):
        return T.LongType()
    if isinstance(sample, str):
        return T.StringType()
    if isinstance(sample, list):
        return T.ArrayType(_value_type(sample), True)
    if isinstance(sample, dict):
        return T.MapType(T.StringType(), _value_type(list(sample.values())), True)
    return T.DoubleType()  # floats, and no sample at all


def type_from_sample(predictions: Any) -> Any:
    """The type of a sample's predictions (a list per row, or a dict of columns: a struct)."""
    from pyspark.sql import types as T

    if isinstance(predictions, dict):
        return T.StructType([T.StructField(name, _value_type(v), True) for name, v in predictions.items()])
    return _value_type(predictions)


_DDL = {"double": "DoubleType", "float": "FloatType", "long": "LongType", "bigint": "LongType", "int": "IntegerType",
        "integer": "IntegerType", "string": "StringType", "boolean": "BooleanType", "short": "ShortType"}


def parse_return_type(value: Any) -> Any:
    """A Spark ``DataType`` from a ``DataType`` or a DDL string (``"double"``, ``"array<double>"``...)."""
    from pyspark.sql import types as T

    if isinstance(value, T.DataType):
        return value
    if isinstance(value, str):
        simple = _DDL.get(value.strip().lower())
        if simple:
            return getattr(T, simple)()
        text = value.strip().lower()
        if text.startswith("array<") and text.endswith(">"):
            return T.ArrayType(parse_return_type(value.strip()[6:-1]), True)
        try:
            return T._parse_datatype_string(value)
        except Exception:
            pass
    raise ScoringError(f"return_type {value!r} is not a Spark type.",
                       hint="Pass a pyspark.sql.types.DataType or a DDL string such as 'double' or 'array<double>'.")


def arrow_type(spark_type: Any) -> Any:
    """The Arrow type Spark expects for ``spark_type`` in ``mapInArrow``."""
    from pyspark.sql.pandas.types import to_arrow_type

    return to_arrow_type(spark_type)
