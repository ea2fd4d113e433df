"""One generic serializer for every stored record: dataclass fields and their type hints say it all.

Adding a field to a record is one line (a typed field with a default): :func:`to_data` writes it and
:func:`from_data` reads it back, an older file without it gets the default. Why stdlib and not
msgspec / pydantic: the records are frozen stdlib dataclasses with properties and methods that the
whole pipeline builds positionally; a library would mean a second class hierarchy or a rewrite of
every record for a few hundred lines of decoding, and results are small (reading them is never the
bottleneck). Rules:

- dataclass → object of its fields (in field order), then the properties named in the class's
  ``SERIALIZED_PROPERTIES`` (derived values written for readers of the JSON and ignored on load),
  the keys named in ``LEADING_KEYS`` moved first;
  a record class with ``OMIT_NONE = True`` leaves out fields that are ``None`` (records whose keys are
  each optional, e.g. the launch record, keep the shape they always had); the fields it names in
  ``SPARSE_FIELDS`` are left out when ``None`` or empty (keys that appear only when something happened);
- tuple / list → array; dict → object; Enum → its value; ints stay ints; a non-finite float → ``null``
  (JSON has no NaN);
- decoding checks every value against its hint (``int`` is never a bool, ``float`` takes an int) and
  raises :class:`~tokbench.errors.ResultFormatError` naming the path of the bad value; keys that are not
  fields are ignored (derived values, or fields of a newer minor version); a missing field without a
  default is an error.
"""

from __future__ import annotations

import dataclasses
import enum
import math
import types
import typing
from collections.abc import Mapping
from functools import cache
from typing import Any, ClassVar, TypeVar, Union

from tokbench.errors import ResultFormatError

R = TypeVar("R", bound="Record")


class Record:
    """Mixin of every serialized record: ``to_dict`` / ``from_dict`` through the generic serializer."""

    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ()
    OMIT_NONE: ClassVar[bool] = False
    LEADING_KEYS: ClassVar[tuple[str, ...]] = ()  # written first, in this order (for a human reading the JSON)
    SPARSE_FIELDS: ClassVar[tuple[str, ...]] = ()  # written only when set (not None, not empty)

    def to_dict(self) -> dict[str, Any]:
        return to_data(self)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls: type[R], data: Mapping[str, Any]) -> R:
        return from_data(cls, data)  # type: ignore[no-any-return]


# --- encoding ----------------------------------------------------------------------------------------


def to_data(value: Any) -> Any:
    """``value`` as JSON-ready data (dicts, lists, str, int, float, bool, None)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, enum.Enum):
        return to_data(value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        if not isinstance(value, Record) and hasattr(value, "to_dict"):
            return value.to_dict()  # a record below this layer with its own format (BenchmarkConfig)
        omit_none = getattr(value, "OMIT_NONE", False)
        sparse = getattr(value, "SPARSE_FIELDS", ())
        data: dict[str, Any] = {}
        for spec in dataclasses.fields(value):
            item = getattr(value, spec.name)
            if item is None and omit_none:
                continue
            if spec.name in sparse and (item is None or item == () or item == {}):
                continue
            data[spec.name] = to_data(item)
        for name in getattr(value, "SERIALIZED_PROPERTIES", ()):
            data[name] = to_data(getattr(value, name))
        leading = [name for name in getattr(value, "LEADING_KEYS", ()) if name in data]
        return {**{name: data[name] for name in leading}, **data} if leading else data
    if isinstance(value, Mapping):
        return {str(key): to_data(item) for key, item in value.items()}
    if isinstance(value, (tuple, list)):
        if all(type(item) is int for item in value):  # fast path: token stamps are most of a result
            return list(value)
        return [to_data(item) for item in value]
    raise TypeError(f"cannot serialize {type(value).__name__}")


# --- decoding ----------------------------------------------------------------------------------------


@cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)  # each class's own module resolves its string annotations


def from_data(hint: Any, data: Any, path: str = "") -> Any:
    """``data`` (parsed JSON) decoded as ``hint``: a record class or any supported type hint."""
    here = path or getattr(hint, "__name__", "value")
    origin = typing.get_origin(hint)
    if hint is Any:
        return data
    if origin is Union or isinstance(hint, types.UnionType):
        return _from_union(typing.get_args(hint), data, here)
    if hint is type(None):
        if data is not None:
            raise _mismatch(here, "null", data)
        return None
    if hint is bool:
        if not isinstance(data, bool):
            raise _mismatch(here, "a boolean", data)
        return data
    if hint is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise _mismatch(here, "an integer", data)
        return data
    if hint is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise _mismatch(here, "a number", data)
        return float(data)
    if hint is str:
        if not isinstance(data, str):
            raise _mismatch(here, "a string", data)
        return data
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        try:
            return hint(data)
        except ValueError:
            raise _mismatch(here, f"one of {[m.value for m in hint]}", data) from None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return _from_record(hint, data, here)
    if origin in (tuple, list):
        if not isinstance(data, (list, tuple)):
            raise _mismatch(here, "an array", data)
        args = typing.get_args(hint)
        if origin is list or (len(args) == 2 and args[1] is Ellipsis) or not args:
            item = args[0] if args else Any
            if item is int and all(type(value) is int for value in data):  # fast path: token stamps
                items = list(data)
            else:
                items = [from_data(item, value, f"{here}[{i}]") for i, value in enumerate(data)]
        else:
            if len(data) != len(args):
                raise _mismatch(here, f"an array of {len(args)} items", data)
            pairs = enumerate(zip(args, data, strict=True))
            items = [from_data(item, value, f"{here}[{i}]") for i, (item, value) in pairs]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping) or hint is dict:
        if not isinstance(data, dict):
            raise _mismatch(here, "an object", data)
        key_hint, value_hint = typing.get_args(hint) or (str, Any)
        return {
            from_data(key_hint, key, here): from_data(value_hint, value, f"{here}.{key}") for key, value in data.items()
        }
    raise TypeError(f"{here}: no decoder for type hint {hint!r}")


def _from_union(members: tuple[Any, ...], data: Any, path: str) -> Any:
    if data is None and type(None) in members:
        return None
    errors = []
    # exact scalar types first, so a JSON int in an ``int | float`` column stays an int
    ordered = sorted(members, key=lambda member: member is float)
    for member in ordered:
        if member is type(None):
            continue
        try:
            return from_data(member, data, path)
        except ResultFormatError as error:
            errors.append(str(error))
    raise ResultFormatError(errors[0] if len(errors) == 1 else f"{path}: matches none of: {'; '.join(errors)}")


def _from_record(cls: type, data: Any, path: str) -> Any:
    if not issubclass(cls, Record) and hasattr(cls, "from_dict"):
        return cls.from_dict(data)  # type: ignore[attr-defined]  # its own format (BenchmarkConfig)
    if not isinstance(data, Mapping):
        raise _mismatch(path, "an object", data)
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for spec in dataclasses.fields(cls):
        if not spec.init:
            continue
        if spec.name not in data:
            if spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING:
                raise ResultFormatError(f"{path}: the field {spec.name!r} is missing")
            continue
        values[spec.name] = from_data(hints[spec.name], data[spec.name], f"{path}.{spec.name}")
    try:
        return cls(**values)
    except (TypeError, ValueError) as error:
        raise ResultFormatError(f"{path}: {error}") from error


def _mismatch(path: str, expected: str, data: Any) -> ResultFormatError:
    shown = repr(data)
    shown = shown if len(shown) <= 40 else shown[:37] + "..."
    return ResultFormatError(f"{path}: expected {expected}, got {shown}")
