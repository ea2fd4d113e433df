"""The config flags of ``tokbench run`` and ``tokbench tune``, generated from the field declarations.

Each ``BenchmarkConfig`` field with a flag (``FieldSpec.flag_name``) becomes one argparse option whose
type, choices, help and default text come from its ``FieldSpec``; ``config_overrides`` turns the parsed
flags back into config fields. A flag left out is ``None`` and never overrides a config file.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from tokbench.config import AUTO, FIELD_DEFAULTS, FIELD_SPECS
from tokbench.fields import FieldSpec, default_text


def parse_sequence_length(text: str) -> int | list[int] | dict[str, object]:
    """``128`` (every request), ``4,8,16`` (one per request) or ``uniform:MIN:MAX[:SEED]`` (sampled, seeded)."""
    try:
        if text.startswith("uniform:"):
            parts = [int(part) for part in text.split(":")[1:]]
            if len(parts) not in (2, 3):
                raise ValueError(text)
            spec: dict[str, object] = {"distribution": "uniform", "min": parts[0], "max": parts[1]}
            if len(parts) == 3:
                spec["seed"] = parts[2]
            return spec
        if "," in text:
            return [int(part) for part in text.split(",")]
        return int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a prompt length: use N, N1,N2,... (one per request) or uniform:MIN:MAX[:SEED]"
        ) from error


def count_or_auto(text: str) -> int | str:
    """argparse type of --warmup-iterations / --measurement-iterations: 'auto' or an integer."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer, got {text!r}") from None


# Fields whose command-line text needs its own parser (the rest follow their kind).
_CUSTOM_PARSERS: dict[str, Callable[[str], Any]] = {"sequence_length": parse_sequence_length}
_KIND_PARSERS: dict[str, Callable[[str], Any]] = {"int": int, "number": float, "count": count_or_auto}


def flag_fields() -> tuple[str, ...]:
    """Config fields settable by a flag, in declaration order."""
    return tuple(name for name, spec in FIELD_SPECS.items() if spec.flag_name(name))


def add_config_flags(
    parser: argparse.ArgumentParser | Any,
    names: Iterable[str] | None = None,
    help_overrides: Mapping[str, str] | None = None,
) -> None:
    """Add one option per config field in ``names`` (default: every field with a flag) to ``parser``."""
    overrides = dict(help_overrides or {})
    for name in names if names is not None else flag_fields():
        spec = FIELD_SPECS[name]
        parser.add_argument(spec.flag_name(name), dest=name, **_argument_options(name, spec, overrides.get(name)))


def _argument_options(name: str, spec: FieldSpec, help_override: str | None) -> dict[str, Any]:
    text = help_override or spec.help
    options: dict[str, Any] = {}
    if spec.kind == "bool":
        # Store the value only when the flag is given, so a config file's value stands otherwise.
        options.update(action="store_false" if spec.negative_flag else "store_true", default=None)
        options["help"] = _escape(text)
        return options
    options["type"] = _CUSTOM_PARSERS.get(name) or _KIND_PARSERS.get(spec.kind, str)
    if spec.choices:
        options["choices"] = spec.choices
        if spec.kind == "int":
            options["type"] = int
    if spec.metavar:
        options["metavar"] = spec.metavar
    options["help"] = _escape(f"{text} (default: {default_text(FIELD_DEFAULTS[name], spec)})")
    return options


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %


def config_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The config fields the parsed flags set (a flag not given is None and sets nothing)."""
    overrides = {}
    for name in FIELD_SPECS:
        value = getattr(args, name, None)
        if value is not None:
            overrides[name] = value
    return overrides
