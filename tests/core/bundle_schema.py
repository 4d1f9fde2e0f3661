"""JSON Schemas to check ``bundle/databricks.yml`` with ``jsonschema``.

The bundle configuration schema is what ``databricks bundle schema`` prints (the Databricks CLI, a Go
binary from the databricks/cli GitHub releases; ``make bundle-schema`` writes it to
``bundle/.databricks/schema.json`` where the CLI is installed). This machine reaches no GitHub, so
the tests also check the job resources against a schema derived here from ``databricks-bundles``
(PyPI), whose job models Databricks generates from that same schema: every dataclass becomes an
object with its fields, the fields without a default required, no other property allowed; enums
and literals keep their values; a ``${...}`` reference is accepted wherever the models take a
``Variable``.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
import types
import typing
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
#: where ``make bundle-schema`` writes ``databricks bundle schema``'s output (or $MESHCLIENT_BUNDLE_SCHEMA)
CLI_SCHEMA = ROOT / "bundle" / ".databricks" / "schema.json"
#: a reference to a bundle value, e.g. ${var.secret_scope}, ${bundle.target}
REFERENCE = {"type": "string", "pattern": r"^\$\{[A-Za-z_][A-Za-z0-9_.\[\]-]*\}$"}


def cli_schema() -> dict[str, Any] | None:
    """``databricks bundle schema``'s output when it was saved, else ``None``."""
    path = Path(os.environ.get("MESHCLIENT_BUNDLE_SCHEMA") or CLI_SCHEMA)
    return dict(json.loads(path.read_text())) if path.is_file() else None


def schema_of(model: type) -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) for the ``databricks-bundles`` dataclass ``model`` and all it holds."""
    defs: dict[str, Any] = {}
    root = _type_schema(model, defs)
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **root, "$defs": defs}


def _type_schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if tp in _SCALARS:
        return {"type": _SCALARS[tp]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"enum": [m.value for m in tp]}
    if origin is typing.Literal:
        return {"enum": list(args)}
    if origin in (typing.Union, types.UnionType):
        return {"anyOf": [_type_schema(a, defs) for a in args]}
    if origin is list:
        return {"type": "array", "items": _type_schema(args[0], defs)}
    if origin is dict:
        return {"type": "object", "additionalProperties": _type_schema(args[1], defs)}
    if getattr(origin, "__name__", "") == "Variable" or getattr(tp, "__name__", "") == "Variable":
        return dict(REFERENCE)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if tp.__name__ not in defs:
            defs[tp.__name__] = {}  # placeholder: recursive models (for_each_task) refer to themselves
            hints = typing.get_type_hints(tp)
            fields = [f for f in dataclasses.fields(tp) if f.init]
            required = [f.name for f in fields
                        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
            defs[tp.__name__] = {"type": "object", "additionalProperties": False, "required": required,
                                 "properties": {f.name: _type_schema(hints[f.name], defs) for f in fields}}
        return {"$ref": f"#/$defs/{tp.__name__}"}
    raise TypeError(f"no JSON Schema for {tp!r}: teach bundle_schema.py this type")


_SCALARS = {str: "string", bool: "boolean", int: "integer", float: "number"}
