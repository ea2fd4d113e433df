"""Sweep plans: a sweep file (or dict) expanded into the ordered list of configs to run.

Any config field may be a list; a sweep is the cross product of the lists. A named level restricts
the attention × compile × kernels × batching dimensions to a chosen set of combinations. Nothing here
runs a benchmark: ``plan_sweep`` expands, validates, lists the configs this machine cannot run (with
their reason, via ``engine.preflight.check_runnable``), collapses duplicates by ``config_hash`` and orders the
rest so configs of one model are adjacent and, within a model, compiled configs come last, together.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import reprlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from tokbench.config import FIELD_DEFAULTS, FIELD_SPECS, BenchmarkConfig, load_config_file, unknown_fields_error
from tokbench.errors import ConfigError, UnavailableFeatureError

# The dimensions a level chooses combinations of. A dimension whose field BenchmarkConfig does not
# have (in this version) is left out, and a level entry that needs it is dropped with a note.
LEVEL_DIMENSIONS = ("attn_implementation", "compile_mode", "kernels", "continuous_batching")
# What a level entry that leaves a dimension out means: the field's default, as declared in config.py (a
# dimension this version has no field for falls back to "off").
_LEVEL_DEFAULTS = {dimension: FIELD_DEFAULTS.get(dimension) for dimension in LEVEL_DIMENSIONS}


def _dimension_values(dimension: str) -> tuple[Any, ...]:
    """Every value of a level dimension, from its field's declaration: its choices (plus off, when it may be
    unset) or, for a flag, false and true."""
    spec = FIELD_SPECS[dimension]
    if spec.kind == "bool":
        return (False, True)
    return (None, *spec.choices) if spec.optional else spec.choices


_SMALL: tuple[dict[str, Any], ...] = (
    {"attn_implementation": "sdpa"},
    {"attn_implementation": "sdpa", "compile_mode": "default"},
    {"attn_implementation": "sdpa", "continuous_batching": True},
)
_THOROUGH: tuple[dict[str, Any], ...] = (
    *_SMALL,
    {"attn_implementation": "eager"},
    {"attn_implementation": "eager", "compile_mode": "default"},
    {"attn_implementation": "flash_attention_2"},
    {"attn_implementation": "flex_attention", "compile_mode": "default"},
    {"attn_implementation": "sdpa", "kernels": True},
    {"attn_implementation": "flash_attention_2", "kernels": True},
    {"attn_implementation": "flash_attention_2", "continuous_batching": True},
)
_EVERYTHING: tuple[dict[str, Any], ...] = tuple(
    dict(zip(LEVEL_DIMENSIONS, values, strict=True))
    for values in itertools.product(*(_dimension_values(dimension) for dimension in LEVEL_DIMENSIONS))
)
# Data, not code: each level is a list of combinations; a dimension a combination leaves out is the default.
LEVELS: dict[str, tuple[dict[str, Any], ...]] = {"small": _SMALL, "thorough": _THOROUGH, "everything": _EVERYTHING}

COMPILE_CACHE_MODES = ("fresh", "shared")
LAUNCHER_NAMES = ("process", "inline")
START_METHODS = ("forkserver", "spawn")  # of the process launcher; None: forkserver on Linux, else spawn
# Keys of a sweep file that are not config fields.
_SWEEP_KEYS = ("level", "timeout_s", "repeat", "compile_cache", "launcher", "start_method", "configs")
# Where configs run (``tokbench.sweep.executors``); also sweep-file keys.
EXECUTOR_NAMES = ("local", "ray")
_EXECUTOR_KEYS = (
    "executor", "parallel", "gpus_per_config", "cpus_per_config", "ray_address", "share_load", "threads",
)  # fmt: skip
_SWEEP_KEYS = (*_SWEEP_KEYS, *_EXECUTOR_KEYS)
DEFAULT_TIMEOUT_S = 1800.0
# Bounds of the sweep options, declared once: the sweep file's values and the command line's flags use them.
MAX_REPEAT = 1_000
MAX_PARALLEL = 1_024
MAX_GPUS_PER_CONFIG = 1_024
MAX_THREADS = 4_096  # torch threads per config process
MAX_CPUS_PER_CONFIG = 4_096.0
# A plan's size is known before it is built (the product of the value lists): beyond the limit it is refused
# with its count (a YAML alias bomb, a typo'd range), beyond the warning it is run but said to be large.
MAX_PLAN_COMBINATIONS = 100_000
LARGE_PLAN_COMBINATIONS = 1_000


@dataclass(frozen=True)
class SweepSpec:
    """What a sweep file says: common fields, optional groups that overlay them, and sweep options.

    ``base`` and each of ``groups`` map config fields to a value or a list of values; a group may
    also carry its own ``timeout_s``. Without groups the base alone is expanded.
    """

    base: Mapping[str, Any]
    groups: tuple[Mapping[str, Any], ...] = ()
    level: str | None = None
    timeout_s: float | None = DEFAULT_TIMEOUT_S
    repeat: int = 1
    compile_cache: str = "fresh"
    launcher: str = "process"
    start_method: str | None = None
    executor: str = "local"
    parallel: int | None = None  # local: configs at once (default: 1, or one per GPU slot with gpus_per_config)
    gpus_per_config: int | None = None  # GPUs each config's child sees (local) or reserves (ray)
    cpus_per_config: float | None = None  # ray: CPUs each task reserves (default 1)
    ray_address: str | None = None  # ray: "auto", an address, or None (a local cluster for this sweep)
    share_load: bool = True  # configs that need no reload share one model load (sweep.grouping)
    threads: int | None = None  # torch threads per config process (default: sweep.threads' policy)

    def __post_init__(self) -> None:
        self._check_executor_options()
        if self.level is not None and self.level not in LEVELS:
            raise ConfigError("level", f"unknown level {self.level!r}", f"use one of: {', '.join(LEVELS)}")
        _check_timeout(self.timeout_s, "timeout_s")
        _check_count(self.repeat, "repeat", MAX_REPEAT)
        if self.compile_cache not in COMPILE_CACHE_MODES:
            raise ConfigError(
                "compile_cache", f"unknown mode {self.compile_cache!r}", f"use one of: {', '.join(COMPILE_CACHE_MODES)}"
            )
        if self.start_method is not None and self.start_method not in START_METHODS:
            raise ConfigError(
                "start_method", f"unknown start method {self.start_method!r}", f"use one of: {', '.join(START_METHODS)}"
            )
        if self.launcher not in LAUNCHER_NAMES:
            raise ConfigError(
                "launcher", f"unknown launcher {self.launcher!r}", f"use one of: {', '.join(LAUNCHER_NAMES)}"
            )

    def _check_executor_options(self) -> None:
        if self.executor not in EXECUTOR_NAMES:
            raise ConfigError(
                "executor", f"unknown executor {self.executor!r}", f"use one of: {', '.join(EXECUTOR_NAMES)}"
            )
        bounded = (("parallel", MAX_PARALLEL), ("gpus_per_config", MAX_GPUS_PER_CONFIG), ("threads", MAX_THREADS))
        for name, maximum in bounded:
            if getattr(self, name) is not None:
                _check_count(getattr(self, name), name, maximum)
        cpus = self.cpus_per_config
        if cpus is not None and (
            isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not 0 <= cpus <= MAX_CPUS_PER_CONFIG
        ):  # nan fails every comparison: refused here, not by Ray after the cluster started
            raise ConfigError(
                "cpus_per_config",
                f"expected a number from 0 to {MAX_CPUS_PER_CONFIG:,.0f}, got {cpus!r}",
                "use --cpus-per-config 1",
            )
        if not isinstance(self.share_load, bool):
            raise ConfigError("share_load", f"expected true or false, got {self.share_load!r}", "use true or false")
        if self.executor == "local" and self.ray_address is not None:
            raise ConfigError("ray_address", "a Ray address needs the ray executor", "add --executor ray")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepSpec:
        options = {key: data[key] for key in _SWEEP_KEYS if key in data and key != "configs"}
        base = {key: value for key, value in data.items() if key not in _SWEEP_KEYS}
        groups = data.get("configs", [])
        if not isinstance(groups, (list, tuple)) or not all(isinstance(group, dict) for group in groups):
            raise ConfigError(
                "configs", "expected a list of mappings of config fields", "write `configs: [{...}, ...]`"
            )
        return cls(base=base, groups=tuple(groups), **options)

    def with_options(self, **options: Any) -> SweepSpec:
        """A copy with the options that are not None replaced (command-line flags override the file)."""
        import dataclasses

        return dataclasses.replace(self, **{key: value for key, value in options.items() if value is not None})


def load_sweep_file(path: str | Path) -> SweepSpec:
    return SweepSpec.from_dict(load_config_file(path))


@dataclass(frozen=True)
class PlannedConfig:
    config: BenchmarkConfig
    timeout_s: float | None


@dataclass(frozen=True)
class SkippedConfig:
    """A valid config this machine cannot run, found before anything runs."""

    config: BenchmarkConfig
    reason: str


@dataclass(frozen=True)
class InvalidCombination:
    """A combination of field values that is not a valid config anywhere (no result can carry it)."""

    fields: dict[str, Any]
    reason: str


@dataclass(frozen=True)
class SweepPlan:
    sweep_id: str
    runnable: tuple[PlannedConfig, ...]
    skipped: tuple[SkippedConfig, ...]
    invalid: tuple[InvalidCombination, ...] = ()
    duplicates: int = 0  # combinations that collapsed into an earlier one with the same config_hash
    notes: tuple[str, ...] = ()

    @property
    def configs(self) -> tuple[BenchmarkConfig, ...]:
        return tuple(planned.config for planned in self.runnable)


def level_combinations(
    level: str, config_fields: Sequence[str] | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """The level's combinations, each with every present dimension set, and notes on what was left out."""
    present = set(config_fields if config_fields is not None else _config_field_names())
    defaults = {**_LEVEL_DEFAULTS, **{f.name: f.default for f in fields(BenchmarkConfig)}}
    dimensions = [dimension for dimension in LEVEL_DIMENSIONS if dimension in present]
    combinations: list[dict[str, Any]] = []
    dropped = 0
    for entry in LEVELS[level]:
        missing = [key for key in entry if key not in present and entry[key] not in (False, None)]
        if missing:
            dropped += 1
            continue
        combinations.append({dimension: entry.get(dimension, defaults[dimension]) for dimension in dimensions})
    notes = []
    absent = [dimension for dimension in LEVEL_DIMENSIONS if dimension not in present]
    if absent:
        notes.append(
            f"level {level}: this tokbench has no {', '.join(absent)} field; "
            f"{dropped} combination(s) that need it were left out"
        )
    return combinations, notes


@dataclass(frozen=True)
class _GroupPlan:
    """One group of the sweep file, checked and ready to expand: its value lists and level variants."""

    names: tuple[str, ...]
    values: tuple[list[Any], ...]
    variants: tuple[dict[str, Any], ...]
    timeout_s: float | None

    @property
    def size(self) -> int:
        return math.prod(len(choices) for choices in self.values) * len(self.variants)


def _group_plans(spec: SweepSpec) -> tuple[list[_GroupPlan], list[str]]:
    """Every group checked (known fields, plain values, timeout) and its size known, nothing expanded yet."""
    known = set(_config_field_names())
    combinations: list[dict[str, Any]] | None = None
    notes: list[str] = []
    if spec.level is not None:
        combinations, notes = level_combinations(spec.level)
    groups = []
    for group in spec.groups or ({},):
        merged = {**spec.base, **group}
        timeout_s = merged.pop("timeout_s", spec.timeout_s)
        _check_timeout(timeout_s, "timeout_s")
        unknown = sorted(set(merged) - known, key=str)
        if unknown:
            raise unknown_fields_error(
                unknown,
                known | set(_SWEEP_KEYS),
                "config field(s) in the sweep",
                f"use config fields ({', '.join(sorted(known))}) or sweep keys ({', '.join(_SWEEP_KEYS)})",
            )
        values = {name: _as_values(name, value) for name, value in merged.items()}
        variants: list[dict[str, Any]] = [{}]
        if combinations is not None:
            variants, kept_notes = _level_variants(spec.level or "", combinations, values)
            notes.extend(note for note in kept_notes if note not in notes)
            values = {name: choices for name, choices in values.items() if name not in LEVEL_DIMENSIONS}
        groups.append(_GroupPlan(tuple(values), tuple(values.values()), tuple(variants), timeout_s))
    return groups, notes


def plan_size(spec: SweepSpec) -> int:
    """How many combinations the spec expands to (duplicates included), computed without expanding it."""
    return sum(group.size for group in _group_plans(spec)[0])


def expand(spec: SweepSpec) -> tuple[list[PlannedConfig], list[InvalidCombination], list[str]]:
    """Every combination the spec describes, in file order (duplicates included).

    The size is known first: a plan beyond ``MAX_PLAN_COMBINATIONS`` is refused with its count before one
    config is built, and one beyond ``LARGE_PLAN_COMBINATIONS`` gets a note. With a level, a combination the level
    itself made invalid (a compile mode with continuous batching, say) is left out with a note, never listed as the
    user's invalid input; a value the file lists for a level dimension that no combination of the level has is
    kept, with a note, never dropped in silence.
    """
    groups, notes = _group_plans(spec)
    total = sum(group.size for group in groups)
    if total > MAX_PLAN_COMBINATIONS:
        raise ConfigError(
            "sweep",
            f"the sweep expands to {total:,} combinations, more than the {MAX_PLAN_COMBINATIONS:,} one sweep may "
            "hold (lists of values multiply; YAML aliases repeat lists)",
            "list fewer values, or split it into several sweeps",
        )
    if total > LARGE_PLAN_COMBINATIONS:
        notes.append(
            f"a large plan: {total:,} combinations (at one minute each, {total / 1440:,.1f} days); "
            "--dry-run shows it, and fewer values make it smaller"
        )
    planned: list[PlannedConfig] = []
    invalid: list[InvalidCombination] = []
    level_made: dict[str, int] = {}  # reason -> how many level combinations it made invalid
    for group in groups:
        for product in itertools.product(*group.values):
            own = dict(zip(group.names, product, strict=True))
            for variant in group.variants:
                config_fields = {**own, **variant}
                try:
                    planned.append(PlannedConfig(BenchmarkConfig.from_dict(config_fields), group.timeout_s))
                except ConfigError as error:
                    if variant and _valid(own):  # the level's combination made it invalid, not the file
                        level_made[str(error)] = level_made.get(str(error), 0) + 1
                    else:
                        invalid.append(InvalidCombination(config_fields, str(error)))
    if level_made:
        count = sum(level_made.values())
        first = next(iter(level_made))
        notes.append(f"level {spec.level}: {count} of its combinations are not valid configs and were left out "
                     f"(e.g. {first})")  # fmt: skip
    return planned, invalid, notes


def _valid(config_fields: Mapping[str, Any]) -> bool:
    try:
        BenchmarkConfig.from_dict(dict(config_fields))
    except ConfigError:
        return False
    return True


def _level_variants(
    level: str, combinations: list[dict[str, Any]], values: Mapping[str, list[Any]]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The level's combinations restricted to the values the file lists for its dimensions, plus one for each
    listed value no combination of the level has (kept as asked, the other dimensions at the file's values or
    their defaults), with a note saying so."""
    listed = {name: choices for name, choices in values.items() if name in LEVEL_DIMENSIONS}
    variants = [c for c in combinations if all(c[name] in listed[name] for name in c if name in listed)]
    notes = []
    dimensions = list(combinations[0]) if combinations else [d for d in LEVEL_DIMENSIONS if d in listed]
    for name, choices in listed.items():
        missing = [value for value in choices if not any(variant.get(name) == value for variant in variants)]
        for value in missing:
            others = [listed.get(d, [_LEVEL_DEFAULTS.get(d)]) if d != name else [value] for d in dimensions]
            variants.extend(dict(zip(dimensions, chosen, strict=True)) for chosen in itertools.product(*others))
            notes.append(f"level {level} has no combination with {name} {value!r}; kept, as the sweep file asks")
    return variants, notes


def plan_sweep(spec: SweepSpec, check: Callable[[BenchmarkConfig], None] | None = None) -> SweepPlan:
    """Expand, deduplicate, list what cannot run, and order. ``check`` defaults to ``preflight.check_runnable``."""
    if check is None:
        from tokbench.engine.preflight import check_runnable as check
    expanded, invalid, notes = expand(spec)
    if not expanded and not invalid:
        raise ConfigError("sweep", "the sweep has no configurations", "give at least one config field value")
    unique: dict[str, PlannedConfig] = {}
    for planned in expanded:
        unique.setdefault(planned.config.config_hash, planned)
    runnable: list[PlannedConfig] = []
    skipped: list[SkippedConfig] = []
    for planned in unique.values():
        try:
            check(planned.config)
        except UnavailableFeatureError as error:
            skipped.append(SkippedConfig(planned.config, str(error)))
        else:
            runnable.append(planned)
    return SweepPlan(
        sweep_id=sweep_id([*unique]),
        runnable=tuple(order_configs(runnable)),
        skipped=tuple(skipped),
        invalid=tuple(invalid),
        duplicates=len(expanded) - len(unique),
        notes=tuple(notes),
    )


def order_configs(planned: Sequence[PlannedConfig]) -> list[PlannedConfig]:
    """Same model adjacent (models in first-seen order); within a model uncompiled first, then compiled
    configs together by mode, so a shared compile cache is reused by neighbours. Otherwise stable."""
    model_rank: dict[str, int] = {}
    for item in planned:
        model_rank.setdefault(item.config.model, len(model_rank))
    mode_rank = {mode: index for index, mode in enumerate(FIELD_SPECS["compile_mode"].choices)}

    def key(item: PlannedConfig) -> tuple[int, int, int]:
        mode = item.config.compile_mode
        return (model_rank[item.config.model], mode is not None, mode_rank.get(mode, -1) if mode else -1)

    return sorted(planned, key=key)


def sweep_id(config_hashes: Sequence[str]) -> str:
    """Identity of a sweep: the set of distinct configs it covers (order, repeats and timeouts aside)."""
    canonical = json.dumps(["tokbench-sweep-v1", sorted(set(config_hashes))], separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


def _as_values(name: str, value: Any) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    if not values:
        raise ConfigError(name, "an empty list of values", "give at least one value, or leave the field out")
    for item in values:
        _check_plain(name, item)
    return values


_SCALARS = (str, int, float, bool, type(None))


def _check_plain(name: str, value: Any) -> None:
    """A value of a sweep list is a plain value (``sequence_length``: also a list of ints or a distribution):
    a list nested deeper is a mistake, refused once for the file rather than once per combination."""
    if isinstance(value, _SCALARS):
        return
    if name == "sequence_length":
        inner = value.values() if isinstance(value, dict) else value if isinstance(value, list) else None
        if inner is not None and all(isinstance(item, _SCALARS) for item in inner):
            return
    raise ConfigError(
        name,
        f"a value is a nested {type(value).__name__} ({shorten_repr(value)})",
        "give one value or a list of plain values",
    )


def shorten_repr(value: Any, limit: int = 120) -> str:
    """``repr`` with every level and list cut short: printing a huge or aliased value costs nothing."""
    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxdict, short.maxstring, short.maxother = 3, 6, 6, 60, 60
    text = short.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a week: beyond it a timeout is a typo, and inf/nan are no timeout at all


def _check_count(value: object, name: str, maximum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        flag = "--" + name.replace("_", "-")
        raise ConfigError(name, f"expected an integer from 1 to {maximum:,}, got {value!r}", f"use {flag} 1 or more")


def _check_timeout(value: object, name: str) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < MAX_TIMEOUT_S:
        # nan fails every comparison and inf never ends a hung child: both are refused, not crashed on later.
        raise ConfigError(
            name, f"expected a finite positive number of seconds, got {value!r}", "use e.g. 600, or null for none"
        )


def _config_field_names() -> list[str]:
    return [f.name for f in fields(BenchmarkConfig)]
