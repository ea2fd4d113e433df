"""One declaration per config field: its help, choices, bounds, fix text and hashing history.

``BenchmarkConfig`` declares each field with ``spec_field(default, FieldSpec(...))``; everything else
is derived from that one declaration: the value checks of ``__post_init__`` (``check_value``), the CLI
flags of ``tokbench run`` / ``tune`` (``tokbench.cli.flags``), the policy plans' defaults, the sweep levels'
choices and the README's config table (``config_table_markdown``, written by ``scripts/config_table.py``).

Hash stability: ``introduced`` is the field's default *when it was added*, frozen forever. A field
enters ``config_hash`` only when its value differs from that (fields of the first schema, ``in_v1``,
always enter, as they always did), so changing a current default never changes a stored hash.

Torch-free and dependency-free: config validation runs in processes that never import torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal

from tokbench.errors import ConfigError

# How a value is checked and parsed on the command line:
# int / number: bounded numbers; count: "auto" or a bounded int; bool: true/false; choice: one of
# ``choices``; text: any string; custom: checked by BenchmarkConfig itself (sequence_length, device).
Kind = Literal["int", "count", "number", "bool", "choice", "text", "custom"]
AUTO = "auto"
SPEC_KEY = "tokbench"
# The bound of an integer field that declares no maximum: beyond it a value is a typo that would crash late.
INT_LIMIT = 2**31 - 1


@dataclass(frozen=True)
class FieldSpec:
    """Everything about one config field besides its name, type and current default."""

    help: str
    kind: Kind
    introduced: Any  # the default when the field was added: frozen, config_hash compares against it
    in_v1: bool = False  # a field of the first schema: always part of config_hash
    fix: str = ""  # what to do when the value is wrong
    choices: tuple[Any, ...] = ()
    minimum: float | None = None  # int / count: inclusive; number: exclusive (> minimum)
    maximum: float | None = None  # inclusive, unless maximum_exclusive
    maximum_exclusive: bool = False
    optional: bool = False  # None is a valid value ("unset")
    hashed: bool = True  # False: labels and search effort that never change a measurement
    workload: bool = True  # False: how a run measures (policy, budgets, monitoring), not what
    flag: str | None = None  # CLI flag; None: --field-name; "": no flag
    negative_flag: bool = False  # a boolean defaulting to true: the flag turns it off (--no-monitor)
    metavar: str | None = None
    default_text: str | None = None  # how the default reads in help and docs, when not the value itself

    def flag_name(self, name: str) -> str:
        return self.flag if self.flag is not None else "--" + name.replace("_", "-")


def spec_field(default: Any, spec: FieldSpec) -> Any:
    """A dataclass field whose metadata carries its ``FieldSpec``."""
    return field(default=default, metadata={SPEC_KEY: spec})


def specs_of(cls: type) -> dict[str, FieldSpec]:
    """The ``FieldSpec`` of every field of dataclass ``cls``, in declaration order (all must have one)."""
    specs: dict[str, FieldSpec] = {}
    for item in fields(cls):
        spec = item.metadata.get(SPEC_KEY)
        if not isinstance(spec, FieldSpec):
            raise TypeError(f"{cls.__name__}.{item.name} is declared without a FieldSpec")
        specs[item.name] = spec
    return specs


def defaults_of(cls: type) -> dict[str, Any]:
    """The current default of every field of dataclass ``cls``."""
    return {item.name: item.default for item in fields(cls)}


def default_text(value: Any, spec: FieldSpec) -> str:
    if spec.default_text is not None:
        return spec.default_text
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "on" if value else "off"
    return f"{value:g}" if isinstance(value, float) else str(value)


def bounds_text(spec: FieldSpec) -> str:
    """Choices or bounds in words, for help and docs."""
    if spec.choices:
        return ", ".join(str(choice) for choice in spec.choices)
    parts = []
    if spec.kind == "count":
        parts.append(AUTO)
    if spec.minimum is not None:
        symbol = ">" if spec.kind == "number" else ">="
        parts.append(f"{symbol} {spec.minimum:g}")
    if spec.maximum is not None:
        shown = f"{int(spec.maximum):,}" if spec.kind in ("int", "count") else f"{spec.maximum:g}"
        parts.append(f"{'<' if spec.maximum_exclusive else '<='} {shown}")
    if spec.kind == "count":
        return f"{parts[0]} or an integer {' '.join(parts[1:])}".strip()
    return ", ".join(parts)


def check_value(name: str, spec: FieldSpec, value: Any) -> None:
    """Raise ``ConfigError`` when ``value`` breaks ``spec``'s kind, choices or bounds (custom kinds pass)."""
    if value is None and spec.optional:
        return
    fix = spec.fix or _default_fix(spec)
    if spec.kind == "count":
        if value == AUTO:
            return
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, f"expected '{AUTO}' or an integer, got {value!r}", fix)
        _check_int_bounds(name, spec, value, fix)
    elif spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(name, f"expected an integer, got {value!r}", fix)
        _check_int_bounds(name, spec, value, fix)
    elif spec.kind == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(name, f"expected a finite number, got {value!r}", fix)
        if spec.minimum is not None and not value > spec.minimum:
            raise ConfigError(name, f"must be > {spec.minimum:g}, got {value}", fix)
        _check_maximum(name, spec, value, fix)
    elif spec.kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(name, f"expected true or false, got {value!r}", fix)
    elif spec.kind == "text" and not isinstance(value, str):
        raise ConfigError(name, f"expected a string, got {value!r}", fix)
    if spec.choices and value not in spec.choices:
        raise ConfigError(name, f"unknown value {value!r}", f"use one of: {bounds_text(spec)}")


def _default_fix(spec: FieldSpec) -> str:
    if spec.kind == "bool":
        return "use a boolean (true or false)"
    if spec.kind == "text":
        return "quote the value"
    bounds = bounds_text(spec)
    return f"use one of: {bounds}" if spec.choices else f"use {bounds}" if bounds else "see tokbench run --help"


def _check_int_bounds(name: str, spec: FieldSpec, value: int, fix: str) -> None:
    if spec.minimum is not None and value < spec.minimum:
        raise ConfigError(name, f"must be >= {spec.minimum:g}, got {value}", fix)
    maximum = int(spec.maximum) if spec.maximum is not None else INT_LIMIT
    if value > maximum:
        shown = str(value) if len(str(value)) <= 24 else f"a {len(str(value))}-digit number"
        raise ConfigError(name, f"must be <= {maximum:,}, got {shown}", fix)


def _check_maximum(name: str, spec: FieldSpec, value: float, fix: str) -> None:
    if spec.maximum is None:
        return
    if value > spec.maximum or (spec.maximum_exclusive and value == spec.maximum):
        relation = "below" if spec.maximum_exclusive else "at most"
        raise ConfigError(name, f"must be {relation} {spec.maximum:g}, got {value}", fix)


def hash_payload(values: dict[str, Any], specs: dict[str, FieldSpec], *, workload: bool = False) -> dict[str, Any]:
    """The fields that identify a config (or, with ``workload``, its workload), from ``to_dict`` values.

    A field enters when it counts (``hashed``; for the workload also ``workload``) and either belongs
    to the first schema (config hash only) or differs from the default it was introduced with.
    """
    payload = {}
    for name, value in values.items():
        spec = specs[name]
        if not spec.hashed or (workload and not spec.workload):
            continue
        if (spec.in_v1 and not workload) or value != spec.introduced:
            payload[name] = value
    return payload


def identity_role(spec: FieldSpec) -> str:
    """What a field's value identifies: the workload (config hash and workload key), the measurement policy
    (config hash only), or nothing (a label or search effort)."""
    if not spec.hashed:
        return "label"
    return "workload" if spec.workload else "policy"


def config_table_markdown(cls: type) -> str:
    """The README's table of config fields, generated from the declarations (one row per field)."""
    defaults = defaults_of(cls)
    rows = [
        "| field | CLI flag | default | values | identifies | what it sets |",
        "|---|---|---|---|---|---|",
    ]
    for name, spec in specs_of(cls).items():
        flag = spec.flag_name(name)
        cells = (
            f"`{name}`",
            f"`{flag}`" if flag else "(file only)",
            default_text(defaults[name], spec),
            bounds_text(spec) or {"bool": "true, false", "text": "text"}.get(spec.kind, "see description"),
            identity_role(spec),
            spec.help.replace("|", "/"),
        )
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"
