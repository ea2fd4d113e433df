"""BenchmarkConfig: what one measurement is, validated once, hashed stably.

Two kinds of checks, kept apart on purpose:
- ``BenchmarkConfig.__post_init__`` rejects values that are wrong on any machine (``ConfigError``);
- ``engine.preflight.check_runnable`` rejects valid values this machine cannot run (``UnavailableFeatureError``),
  which the runner records as a ``skipped`` result instead of silently rewriting the config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from types import MappingProxyType
from typing import Any

from tokbench.errors import ConfigError
from tokbench.fields import (
    AUTO,
    INT_LIMIT,
    FieldSpec,
    Kind,
    check_value,
    defaults_of,
    hash_payload,
    spec_field,
    specs_of,
)
from tokbench.presets import PRESET_NAMES

DTYPES = ("bfloat16", "float16", "float32")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flex_attention")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# "int4" is tokbench's own; the others load through transformers' quantization_config (tokbench.quant.thirdparty).
QUANTIZATIONS = (
    "int4", "torchao-int4", "torchao-int8", "torchao-int8-dynamic", "quanto-int8", "quanto-int4", "bnb-nf4", "bnb-int8",
)  # fmt: skip
# Methods whose group size is a setting (the others quantize per channel or per block of their own).
GROUPED_QUANTIZATIONS = ("int4", "torchao-int4")
# Mirrors tokbench.quant (kept here so validating a config never imports torch).
QUANT_GROUP_SIZES = (32, 64, 128, 256)
QUANT_KERNELS = ("auto", "reference", "splitk", "native", "triton")
# inference_mode: no autograd bookkeeping at all (what serving paths use); no_grad: generate's own default,
# what every result stored before grad_mode existed was measured under.
GRAD_MODES = ("inference_mode", "no_grad")

# Upper bounds: beyond them a value is a typo that would crash late (MemoryError building a billion prompt
# lengths, an overflow in the RNG) or run for days; each names its field at config time instead.
MAX_INT = INT_LIMIT  # the bound of every integer field that declares none
MAX_BATCH_SIZE = 65_536
MAX_TOKENS = 1_048_576  # prompt or generated tokens per request
MAX_SEED = 2**63 - 1  # torch.manual_seed's range
MAX_CONFIG_FILE_BYTES = 16 * 2**20  # a config or sweep file is typed by hand
MAX_BUDGET_S = 7 * 24 * 3600.0  # a week: a longer warmup or measurement budget is a typo (1e308 overflows later)


_HASH_VERSION = "tokbench-config-v1"
_WORKLOAD_VERSION = "tokbench-workload-v1"
_SECONDS_FIX = "give a time budget in seconds, e.g. 30"


def _cb_spec(what: str, minimum: int = 1, fix: str = "", default_text: str = "derived") -> FieldSpec:
    """A continuous-batching sizing override: unset derives it from the workload (continuous.cache_sizing)."""
    return FieldSpec(
        f"continuous batching: {what}",
        "int",
        None,
        minimum=minimum,
        optional=True,
        metavar="N",
        fix=fix or "use a positive integer, or leave it unset",
        default_text=default_text,
    )


def _policy_spec(help_text: str, introduced: float, kind: Kind = "int", **extra: Any) -> FieldSpec:
    """A bound of the auto warmup / measurement: how a run measures, so never part of the workload key."""
    if kind == "number":
        extra.setdefault("minimum", 0)
    return FieldSpec(help_text, kind, introduced, workload=False, **extra)


@dataclass(frozen=True)
class BenchmarkConfig:
    """One benchmark scenario. Frozen; build a changed copy with ``dataclasses.replace``.

    Each field is declared once with its ``FieldSpec`` (help, choices, bounds, fix, the default it was
    introduced with); ``FIELD_SPECS`` below collects them for the CLI, the docs and the plans.
    """

    model: str = spec_field(
        "tiny-llama",
        FieldSpec(
            f"preset ({', '.join(PRESET_NAMES)}), local folder, or Hub id",
            "custom",
            "tiny-llama",
            in_v1=True,
            fix="give a preset name, a local folder or a Hub id",
        ),
    )
    batch_size: int = spec_field(
        1,
        FieldSpec(
            "requests (rows) per call",
            "int",
            1,
            in_v1=True,
            minimum=1,
            maximum=MAX_BATCH_SIZE,
            fix="use a batch size of at least 1 and at most 65,536",
        ),
    )
    # Prompt tokens per request: an int (every row), a list of per-request lengths, or a seeded
    # distribution such as {"distribution": "uniform", "min": 4, "max": 24, "seed": 0}.
    sequence_length: int | tuple[int, ...] | dict[str, Any] = spec_field(
        128,
        FieldSpec(
            "prompt tokens per request, exactly: N, or N1,N2,... (one per request), or uniform:MIN:MAX[:SEED] "
            "(sampled per request); shorter prompts are left-padded on the plain path",
            "custom",
            128,
            in_v1=True,
            fix="use at least 1 prompt token, at most 1,048,576",
        ),
    )
    new_tokens: int = spec_field(
        128,
        FieldSpec(
            "tokens generated per request, exactly; EOS is disabled",
            "int",
            128,
            in_v1=True,
            minimum=2,
            maximum=MAX_TOKENS,
            fix="generate at least 2 tokens (TPOT and ITL need a second token), at most 1,048,576",
        ),
    )
    dtype: str = spec_field(
        "bfloat16", FieldSpec("weight and activation dtype", "choice", "bfloat16", in_v1=True, choices=DTYPES)
    )
    attn_implementation: str = spec_field(
        "sdpa",
        FieldSpec(
            "attention implementation", "choice", "sdpa", in_v1=True, choices=ATTN_IMPLEMENTATIONS, flag="--attn"
        ),
    )
    compile_mode: str | None = spec_field(
        None,
        FieldSpec(
            "torch.compile mode; turns on the static cache",
            "choice",
            None,
            in_v1=True,
            choices=COMPILE_MODES,
            optional=True,
            flag="--compile",
            default_text="off",
        ),
    )
    # torch.compile needs a static KV cache to avoid recompiling every step, so compile forces it on.
    static_cache: bool = spec_field(False, FieldSpec("use a static KV cache", "bool", False, in_v1=True))
    kernels: bool = spec_field(
        False, FieldSpec("transformers use_kernels (needs the kernels library)", "bool", False, in_v1=True)
    )
    device: str = spec_field(
        "auto",
        FieldSpec(
            "auto, cpu, cuda, cuda:N (mps is skipped: its stamps would be late)",
            "custom",
            "auto",
            in_v1=True,
        ),
    )
    # An int is a fixed count; "auto" warms up until steady state and measures until the median E2E
    # is known to target_relative_precision, each within its min/max count and time budget.
    warmup_iterations: int | str = spec_field(
        AUTO,
        FieldSpec(
            "untimed generations after the validation call: a count, or auto = until steady state",
            "count",
            5,
            in_v1=True,
            minimum=0,
            workload=False,
            fix="use 'auto' or 0 or more",
        ),
    )
    measurement_iterations: int | str = spec_field(
        AUTO,
        FieldSpec(
            "timed generations: a count, or auto = until the median E2E is within --target-precision",
            "count",
            20,
            in_v1=True,
            minimum=1,
            workload=False,
            fix="use 'auto' or 1 or more",
        ),
    )
    monitor: bool = spec_field(
        True,
        FieldSpec(
            "hardware sampling, per-iteration memory peaks and efficiency figures while measuring",
            "bool",
            True,
            in_v1=True,
            workload=False,
            flag="--no-monitor",
            negative_flag=True,
        ),
    )
    monitor_interval_ms: int = spec_field(
        50,
        FieldSpec(
            "hardware sampling period while measuring, ms",
            "int",
            50,
            minimum=1,
            workload=False,
            fix="sample every 1 ms or more (default 50)",
        ),
    )
    profile_tokens: int = spec_field(
        0,
        FieldSpec(
            "after measuring, profile one generation of K tokens with torch.profiler; the gzipped "
            "Chrome/Perfetto trace goes next to the result JSON (NAME.trace.json.gz)",
            "int",
            0,
            in_v1=True,
            minimum=0,
            hashed=False,
            workload=False,
            metavar="K",
            fix="use 0 (off) or a token count",
            default_text="0 (off)",
        ),
    )
    seed: int = spec_field(
        0,
        FieldSpec(
            "seed of the preset's random weights (inputs are fixed text)",
            "int",
            0,
            in_v1=True,
            minimum=0,
            maximum=MAX_SEED,
            workload=False,
            fix="use a non-negative integer seed below 2**63",
        ),
    )
    trust_remote_code: bool = spec_field(
        False, FieldSpec("allow a Hub model's own Python code", "bool", False, in_v1=True, workload=False)
    )
    name: str = spec_field(
        "",
        FieldSpec(
            "a name for this run",
            "text",
            "",
            in_v1=True,
            hashed=False,
            workload=False,
            fix="quote the name",
            default_text="derived from the config",
        ),
    )
    # Weight-only quantization of every linear layer but the LM head, applied and timed at load.
    quantization: str | None = spec_field(
        None,
        FieldSpec(
            "weight-only quantization of every linear but the LM head",
            "choice",
            None,
            choices=QUANTIZATIONS,
            optional=True,
            default_text="off",
        ),
    )
    group_size: int = spec_field(
        128,
        FieldSpec(
            "int4 quantization group size",
            "int",
            128,
            choices=QUANT_GROUP_SIZES,
            fix=f"use one of {QUANT_GROUP_SIZES}",
        ),
    )
    # "auto": each layer picks a kernel per input row count; a kernel name pins every layer to it.
    quant_kernel: str = spec_field(
        "auto",
        FieldSpec(
            "int4 kernel for every layer (auto: chosen per input row count)", "choice", "auto", choices=QUANT_KERNELS
        ),
    )
    # Time the kernel candidates per layer shape and M (or reuse cached winners) while loading.
    tune: bool = spec_field(False, FieldSpec("tune the int4 kernels per layer shape (cached)", "bool", False))
    tune_budget_s: float = spec_field(
        2.0,
        FieldSpec(
            "tuning time budget per layer shape, seconds (how hard to search, not what is measured)",
            "number",
            2.0,
            minimum=0,
            maximum=600,
            hashed=False,
            workload=False,
            fix="use e.g. 2",
        ),
    )
    # Run the requests through transformers' continuous-batching manager instead of one generate call.
    continuous_batching: bool = spec_field(
        False,
        FieldSpec(
            "submit the batch_size requests to transformers' continuous-batching manager (built once, untimed)",
            "bool",
            False,
        ),
    )
    # Continuous-batching cache sizing; None derives each from the workload (see continuous.cache_sizing).
    cb_page_size: int | None = spec_field(
        None, _cb_spec("tokens per KV page", minimum=4, fix="use a page of 4+ tokens")
    )
    cb_num_blocks: int | None = spec_field(None, _cb_spec("KV cache blocks"))
    cb_max_batch_tokens: int | None = spec_field(None, _cb_spec("tokens per step"))
    cb_max_requests_per_batch: int | None = spec_field(None, _cb_spec("requests per step", default_text="all"))
    # "auto" bounds. The warmup minimum of 5 is the seeds' fixed count: auto never warms up less.
    warmup_min_iterations: int = spec_field(
        5, _policy_spec("auto warmup: at least this many", 5, minimum=2, fix="use 2 or more (the tests need them)")
    )
    warmup_max_iterations: int = spec_field(
        50, _policy_spec("auto warmup: at most this many (>= the minimum)", 50, minimum=2)
    )
    warmup_budget_s: float = spec_field(
        30.0,
        _policy_spec(
            "auto warmup: stop after this many seconds", 30.0, kind="number", maximum=MAX_BUDGET_S, fix=_SECONDS_FIX
        ),
    )
    measurement_min_iterations: int = spec_field(
        10,
        _policy_spec("auto measurement: at least this many", 10, minimum=2, fix="use 2 or more (the tests need them)"),
    )
    measurement_max_iterations: int = spec_field(
        500, _policy_spec("auto measurement: at most this many (>= the minimum)", 500, minimum=2)
    )
    measurement_budget_s: float = spec_field(
        15.0,
        _policy_spec(
            "auto measurement: stop after this many seconds", 15.0, kind="number", maximum=MAX_BUDGET_S,
            fix=_SECONDS_FIX,
        ),
    )  # fmt: skip
    # half-width of the 95% CI of the median E2E, relative
    target_relative_precision: float = spec_field(
        0.01,
        _policy_spec(
            "auto measurement: 95% CI half-width of the median E2E, relative (0.01 = ±1%)",
            0.01,
            kind="number",
            maximum=1,
            maximum_exclusive=True,
            flag="--target-precision",
            fix="use a fraction such as 0.01 for ±1%",
        ),
    )
    # Autograd state every measured generate call runs under (the CB manager's thread inherits it).
    grad_mode: str = spec_field(
        "inference_mode",
        FieldSpec(
            "autograd state of the measured calls: inference_mode (no autograd bookkeeping, as in serving) "
            "or no_grad (generate's own; results stored before this field existed were measured under it)",
            "choice",
            "no_grad",
            choices=GRAD_MODES,
        ),
    )

    def __post_init__(self) -> None:
        for name, spec in FIELD_SPECS.items():  # kinds, choices and bounds, as declared
            check_value(name, spec, getattr(self, name))
        object.__setattr__(self, "sequence_length", _check_sequence_length(self.sequence_length, self.batch_size))
        self._check_auto_bounds()
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model", "empty model name", FIELD_SPECS["model"].fix)
        if self.compile_mode is not None:
            object.__setattr__(self, "static_cache", True)
        self._check_quantization()
        parse_device(self.device)
        self._check_continuous_batching()
        if not self.name:
            object.__setattr__(self, "name", self.derived_name())

    def _check_quantization(self) -> None:
        if self.quantization is None:
            for name in ("group_size", "quant_kernel", "tune", "tune_budget_s"):
                if getattr(self, name) != FIELD_DEFAULTS[name]:
                    raise ConfigError(name, "applies only to a quantized model", "add quantization: int4, or drop it")
        if self.quantization is not None and self.quantization != "int4":
            int4_only = ("quant_kernel", "tune", "tune_budget_s")
            grouped = () if self.quantization in GROUPED_QUANTIZATIONS else ("group_size",)
            for name in int4_only + grouped:
                if getattr(self, name) != FIELD_DEFAULTS[name]:
                    raise ConfigError(
                        name, f"does not apply to {self.quantization}", "drop it, or use quantization: int4"
                    )
        if self.tune is True and self.quant_kernel != "auto":
            raise ConfigError(
                "tune", f"tuning picks the kernel, but quant_kernel pins it to {self.quant_kernel!r}", "drop one"
            )

    def _check_continuous_batching(self) -> None:
        sizing = ("cb_page_size", "cb_num_blocks", "cb_max_batch_tokens", "cb_max_requests_per_batch")
        for name in sizing:
            if getattr(self, name) is not None and not self.continuous_batching:
                raise ConfigError(name, "applies only to continuous batching", "set continuous_batching: true")
        if self.continuous_batching and (self.compile_mode is not None or self.static_cache):
            field_name = "compile_mode" if self.compile_mode is not None else "static_cache"
            raise ConfigError(
                field_name,
                "continuous batching uses its own paged KV cache; tokbench does not compile it or use a static cache",
                f"drop {field_name}, or set continuous_batching: false",
            )

    @property
    def prefill_rows(self) -> int:
        """Rows of a prefill matmul: the padded batch, or continuous batching's packed prompts."""
        lengths = self.prompt_lengths
        return sum(lengths) if self.continuous_batching else len(lengths) * max(lengths)

    @property
    def prompt_lengths(self) -> tuple[int, ...]:
        """The prompt length of each of the ``batch_size`` requests (a distribution is sampled with its seed)."""
        return prompt_lengths(self.sequence_length, self.batch_size)

    def _check_auto_bounds(self) -> None:
        # Cross-field: each maximum is at least its minimum (the minimums' own bounds are declared).
        for prefix in ("warmup", "measurement"):
            low, high = f"{prefix}_min_iterations", f"{prefix}_max_iterations"
            _check_int(getattr(self, high), high, minimum=getattr(self, low), fix=f"use at least {low}")

    def derived_name(self) -> str:
        """A readable name from the fields a person scans for first."""
        lengths = self.prompt_lengths
        length_text = (
            str(self.sequence_length) if isinstance(self.sequence_length, int) else (f"{min(lengths)}-{max(lengths)}")
        )
        parts = [
            self.model.rstrip("/").split("/")[-1],
            self.attn_implementation,
            self.dtype,
            f"b{self.batch_size}",
            f"s{length_text}",
            f"n{self.new_tokens}",
        ]
        if self.continuous_batching:
            parts.append("cb")
        if self.compile_mode:
            parts.append(f"compile-{self.compile_mode}")
        elif self.static_cache:
            parts.append("static")
        if self.kernels:
            parts.append("kernels")
        if self.quantization in GROUPED_QUANTIZATIONS:
            parts.append(f"{self.quantization}-g{self.group_size}")
        elif self.quantization:
            parts.append(self.quantization)
        if self.quant_kernel != "auto":
            parts.append(self.quant_kernel)
        if self.tune:
            parts.append("tuned")
        if self.grad_mode != FIELD_DEFAULTS["grad_mode"]:
            parts.append(self.grad_mode.replace("_", "-"))
        return "-".join(parts)

    @property
    def config_hash(self) -> str:
        """Stable id of the measurement: same fields, same hash, across runs and library versions.

        Compared against each field's *introduced* default (``FieldSpec.introduced``), never the current
        one, so a later release changing a default leaves every stored hash as it was.
        """
        payload = hash_payload(self.to_dict(), FIELD_SPECS)
        canonical = json.dumps([_HASH_VERSION, payload], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def workload_key(self, device_type: str | None = None) -> str:
        """Id of *what* is measured, without *how* (iteration counts, budgets, monitoring, names).

        Comparisons and history match runs on it. ``device_type`` is the device kind the run really used
        ("cpu", "cuda", ...): an ``auto`` device means different things on different machines, so a run's
        key always names the resolved kind (without an index: cuda:0 and cuda:1 run the same workload).
        """
        payload = hash_payload(self.to_dict(), FIELD_SPECS, workload=True)
        payload["device"] = (device_type or str(self.device)).split(":")[0]
        canonical = json.dumps([_WORKLOAD_VERSION, payload], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in fields(self)}
        if isinstance(self.sequence_length, tuple):
            data["sequence_length"] = list(self.sequence_length)
        elif isinstance(self.sequence_length, dict):
            data["sequence_length"] = dict(self.sequence_length)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchmarkConfig:
        """A config from user input (a config file, flags): a field left out takes its current default."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known, key=str)
        if unknown:
            raise unknown_fields_error(unknown, known, "config field(s)")
        return cls(**data)

    @classmethod
    def from_stored_dict(cls, data: dict[str, Any]) -> BenchmarkConfig:
        """A config read back from a stored result: a field it lacks did not exist when it was written,
        so it takes the default it was introduced with (e.g. ``grad_mode: no_grad``), not today's."""
        introduced = {name: spec.introduced for name, spec in FIELD_SPECS.items() if not spec.in_v1}
        return cls.from_dict({**{k: v for k, v in introduced.items() if k not in data}, **data})

    def replace(self, **changes: Any) -> BenchmarkConfig:
        """A copy with ``changes`` applied; the name is derived again unless given."""
        if "name" not in changes and self.name == self.derived_name():
            changes["name"] = ""
        return dataclasses.replace(self, **changes)


FIELD_SPECS: Mapping[str, FieldSpec] = MappingProxyType(specs_of(BenchmarkConfig))
FIELD_DEFAULTS: Mapping[str, Any] = MappingProxyType(defaults_of(BenchmarkConfig))


def field_default(name: str) -> Any:
    """The current default of config field ``name`` (plans and levels read defaults from here)."""
    return FIELD_DEFAULTS[name]


PROMPT_LENGTH_DISTRIBUTIONS = ("uniform",)
_DISTRIBUTION_KEYS = frozenset({"distribution", "min", "max", "seed"})
_SEQUENCE_LENGTH_FIX = (
    'give an integer, a list of batch_size lengths, or {"distribution": "uniform", "min": A, "max": B, "seed": S}'
)


def _check_sequence_length(value: object, batch_size: int) -> int | tuple[int, ...] | dict[str, Any]:
    """Validate ``sequence_length`` and return its canonical form (a list becomes a tuple)."""
    if isinstance(value, (list, tuple)):
        lengths = tuple(value)
        for length in lengths:
            fix = "use at least 1 prompt token per request, at most 1,048,576"
            _check_int(length, "sequence_length", minimum=1, fix=fix, maximum=MAX_TOKENS)
        if len(lengths) != batch_size:
            raise ConfigError(
                "sequence_length",
                f"lists {len(lengths)} prompt lengths for a batch of {batch_size} requests",
                f"give exactly batch_size lengths, or set batch_size to {len(lengths)}",
            )
        return lengths
    if isinstance(value, dict):
        unknown = sorted(set(value) - _DISTRIBUTION_KEYS)
        if unknown:
            problem = f"unknown distribution key(s): {', '.join(unknown)}"
            raise ConfigError("sequence_length", problem, _SEQUENCE_LENGTH_FIX)
        _check_choice(value.get("distribution"), "sequence_length", PROMPT_LENGTH_DISTRIBUTIONS)
        for key in ("min", "max"):
            fix = f"give '{key}': a prompt length >= 1 (at most 1,048,576)"
            _check_int(value.get(key), "sequence_length", minimum=1, fix=fix, maximum=MAX_TOKENS)
        if value["min"] > value["max"]:
            raise ConfigError("sequence_length", f"min {value['min']} > max {value['max']}", "swap min and max")
        spec = {"distribution": value["distribution"], "min": value["min"], "max": value["max"]}
        spec["seed"] = value.get("seed", 0)
        _check_int(spec["seed"], "sequence_length", minimum=0, fix="use a non-negative integer seed")
        return spec
    _check_int(
        value, "sequence_length", minimum=1, fix="use at least 1 prompt token, at most 1,048,576", maximum=MAX_TOKENS
    )
    return value  # type: ignore[return-value]


def prompt_lengths(sequence_length: int | tuple[int, ...] | dict[str, Any], batch_size: int) -> tuple[int, ...]:
    """Per-request prompt lengths: repeated int, the list itself, or a seeded sample (same seed, same lengths)."""
    if isinstance(sequence_length, int):
        return (sequence_length,) * batch_size
    if isinstance(sequence_length, tuple):
        return sequence_length
    generator = random.Random(sequence_length["seed"])
    return tuple(generator.randint(sequence_length["min"], sequence_length["max"]) for _ in range(batch_size))


_KNOWN_DEVICE_TYPES = ("cpu", "cuda", "mps", "xpu")


def parse_device(spec: str) -> str:
    """Check a device string's form (``auto``, ``cpu``, ``cuda``, ``cuda:1``...) without touching hardware."""
    if not isinstance(spec, str):
        raise ConfigError("device", f"expected a string such as 'cpu' or 'cuda:0', got {spec!r}", "quote the value")
    if spec == "auto":
        return spec
    device_type, _, index = spec.partition(":")
    if device_type not in _KNOWN_DEVICE_TYPES or (index and not index.isdigit()):
        raise ConfigError(
            "device",
            f"unknown device {spec!r}",
            f"use 'auto' or one of {', '.join(_KNOWN_DEVICE_TYPES)} (optionally with ':N')",
        )
    return spec


def _check_int(value: object, field_name: str, minimum: int, fix: str, maximum: int = MAX_INT) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field_name, f"expected an integer, got {value!r}", fix)
    if value < minimum:
        raise ConfigError(field_name, f"must be >= {minimum}, got {value}", fix)
    if value > maximum:
        shown = str(value) if len(str(value)) <= 24 else f"a {len(str(value))}-digit number"
        raise ConfigError(field_name, f"must be <= {maximum:,}, got {shown}", fix)


def _check_choice(value: object, field_name: str, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ConfigError(field_name, f"unknown value {value!r}", f"use one of: {', '.join(str(c) for c in choices)}")


def unknown_fields_error(unknown: list[Any], known: Any, what: str, fix: str = "") -> ConfigError:
    """A ConfigError for misspelt field names: each gets its closest known name ("did you mean ...?")."""
    import difflib

    guesses = []
    for name in unknown:
        close = difflib.get_close_matches(str(name), sorted(map(str, known)), n=1, cutoff=0.6)
        if close:
            guesses.append(f"{close[0]} (not {name})")
    hint = f"did you mean {', '.join(guesses)}?" if guesses else ""
    shown = ", ".join(repr(name) if not isinstance(name, str) else name for name in unknown[:10])
    more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
    return ConfigError(
        str(unknown[0])[:80],
        f"unknown {what}: {shown}{more}",
        hint or fix or f"use only these fields: {', '.join(sorted(map(str, known)))}",
    )


def require_config(value: object, where: str) -> BenchmarkConfig:
    """``value`` if it is a ``BenchmarkConfig``; else a TypeError that says what to pass instead."""
    if isinstance(value, BenchmarkConfig):
        # Checked again: a config changed past its checks (object.__setattr__) must not run as if valid.
        dataclasses.replace(value)
        return value
    shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
    raise TypeError(
        f"{where} takes a BenchmarkConfig, got {type(value).__name__} {shown}; "
        f"for example {where}(tokbench.BenchmarkConfig(model='tiny-llama'))"
    )


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a plain dict (``yaml.safe_load`` only: no object tags).

    Only a regular file is read (a folder, FIFO or device is named as such, never waited on), and its nesting
    and the size its YAML aliases expand to are bounded (``fileio.parse_yaml_text``).
    """
    import yaml

    from tokbench.fileio import UnsafeFileError, file_kind, parse_json_text, parse_yaml_text, read_regular_text

    config_path = Path(path)
    kind = file_kind(config_path)
    if kind == "missing":
        raise ConfigError("--config", f"no such file: {config_path}", "pass the path of a .yaml or .json file")
    try:
        text = read_regular_text(config_path, max_bytes=MAX_CONFIG_FILE_BYTES)
        if config_path.suffix.lower() == ".json":
            data = parse_json_text(text, str(config_path))
        else:
            data = parse_yaml_text(text, str(config_path))
    except UnicodeDecodeError as error:
        raise ConfigError(
            "--config", f"{config_path} is not UTF-8 text (byte {error.start})", "save the file as UTF-8"
        ) from error
    except UnsafeFileError as error:
        fix = "fix the file" if kind == "a file" else "pass the path of a .yaml or .json file"
        raise ConfigError("--config", str(error), fix) from error
    except OSError as error:
        reason = f"cannot read {config_path} ({kind}): {error.strerror or error}"
        raise ConfigError("--config", reason, "check the path") from error
    except json.JSONDecodeError as error:
        raise ConfigError("--config", f"{config_path} is not valid JSON: {error}", "fix the file") from error
    except yaml.YAMLError as error:
        raise ConfigError("--config", f"{config_path} is not valid YAML: {error}", "fix the file") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{config_path} must hold a mapping of field: value", "fix the file")
    return data
