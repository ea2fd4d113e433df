"""The JSON Schema (draft 2020-12) of the result format, generated from the record dataclasses.

Generated, never written by hand, so it cannot drift from what :mod:`tokbench.schema.serde` writes:
the checked-in ``docs/result.schema.json`` is compared with :func:`result_json_schema` by a test, and
``python scripts/export_result_schema.py`` rewrites it. Each record is a ``$defs`` entry; its
required keys are its fields without a default (what every result of this schema version has) plus
the derived keys it always writes. Unknown keys are allowed: a reader built on this schema keeps
working when a later version adds a field.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from collections.abc import Mapping
from typing import Any, Union

from tokbench.schema.results import SCHEMA_VERSION, BenchmarkResult

DRAFT = "https://json-schema.org/draft/2020-12/schema"


def result_json_schema() -> dict[str, Any]:
    """The schema of a result JSON file as ``save_result`` writes it."""
    definitions: dict[str, Any] = {}
    root = _record_schema(BenchmarkResult, definitions)
    root["properties"]["schema_version"] = {"type": "integer", "const": SCHEMA_VERSION}
    return {
        "$schema": DRAFT,
        "$id": "https://tokbench.invalid/result.schema.json",
        "title": "tokbench benchmark result",
        "description": f"One config's run as written by tokbench (schema_version {SCHEMA_VERSION}).",
        **root,
        "$defs": dict(sorted(definitions.items())),
    }


def result_json_schema_text() -> str:
    """The schema as the text of ``docs/result.schema.json`` (stable key order, trailing newline)."""
    return json.dumps(result_json_schema(), indent=1) + "\n"


def _record_schema(cls: type, definitions: dict[str, Any]) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    omit_none = getattr(cls, "OMIT_NONE", False)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for spec in dataclasses.fields(cls):
        properties[spec.name] = _type_schema(hints[spec.name], definitions)
        no_default = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        if no_default and not omit_none:
            required.append(spec.name)
    for name in getattr(cls, "SERIALIZED_PROPERTIES", ()):
        getter = getattr(cls, name).fget
        properties[name] = _type_schema(typing.get_type_hints(getter)["return"], definitions)
        required.append(name)
    schema: dict[str, Any] = {"type": "object", "properties": properties}
    if required:
        schema["required"] = required
    if cls.__doc__ and not cls.__doc__.startswith(f"{cls.__name__}("):  # dataclass's generated doc says nothing
        schema["description"] = " ".join(cls.__doc__.split())
    return schema


def _type_schema(hint: Any, definitions: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(hint)
    if hint is Any:
        return {}
    if origin is Union or isinstance(hint, types.UnionType):
        return {"anyOf": [_type_schema(member, definitions) for member in typing.get_args(hint)]}
    scalar = {type(None): "null", bool: "boolean", int: "integer", float: "number", str: "string"}
    if hint in scalar:
        return {"type": scalar[hint]}
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return {"enum": [member.value for member in hint]}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        name = hint.__name__
        if name not in definitions:
            definitions[name] = {}  # placeholder: records that refer to each other terminate
            definitions[name] = _record_schema(hint, definitions)
        return {"$ref": f"#/$defs/{name}"}
    if origin in (tuple, list):
        args = typing.get_args(hint)
        if origin is list or not args or (len(args) == 2 and args[1] is Ellipsis):
            return {"type": "array", "items": _type_schema(args[0] if args else Any, definitions)}
        return {
            "type": "array",
            "prefixItems": [_type_schema(arg, definitions) for arg in args],
            "minItems": len(args),
            "maxItems": len(args),
        }
    if origin in (dict, Mapping) or hint is dict:
        args = typing.get_args(hint)
        value = args[1] if args else Any
        return {"type": "object", "additionalProperties": _type_schema(value, definitions)}
    raise TypeError(f"no JSON Schema for type hint {hint!r}")
