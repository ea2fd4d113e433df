"""BenchmarkConfig: what one measurement is, validated once, hashed stably.

Two kinds of checks, kept apart on purpose:
- ``BenchmarkConfig.__post_init__`` rejects values that are wrong on any machine (``ConfigError``);
- ``check_runnable`` rejects valid values this machine cannot run (``UnavailableFeatureError``),
  which the runner records as a ``skipped`` result instead of silently rewriting the config.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import random
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tokbench.errors import ConfigError, UnavailableFeatureError

DTYPES = ("bfloat16", "float16", "float32")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flex_attention")
AUTO = "auto"
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

# Fields that do not change what is measured, so they stay out of config_hash.
_UNHASHED_FIELDS = frozenset({"name", "profile_tokens", "tune_budget_s"})
_HASH_VERSION = "tokbench-config-v1"
_WORKLOAD_VERSION = "tokbench-workload-v1"
# How a run measures (policy, budgets, monitoring, naming), not what: left out of the workload key.
_POLICY_FIELDS = _UNHASHED_FIELDS | frozenset(
    {
        "warmup_iterations", "measurement_iterations", "monitor", "monitor_interval_ms", "seed",
        "trust_remote_code", "warmup_min_iterations", "warmup_max_iterations", "warmup_budget_s",
        "measurement_min_iterations", "measurement_max_iterations", "measurement_budget_s",
        "target_relative_precision",
    }
)  # fmt: skip
# The fields of the first schema. A field added later enters the hash only when it differs from its
# default, so every config that could be written before keeps its hash (stored runs, --resume).
_V1_FIELDS = frozenset(
    {
        "model", "batch_size", "sequence_length", "new_tokens", "dtype", "attn_implementation",
        "compile_mode", "static_cache", "kernels", "device", "warmup_iterations",
        "measurement_iterations", "monitor", "profile_tokens", "seed", "trust_remote_code", "name",
    }
)  # fmt: skip


@dataclass(frozen=True)
class BenchmarkConfig:
    """One benchmark scenario. Frozen; build a changed copy with ``dataclasses.replace``."""

    model: str = "tiny-llama"
    batch_size: int = 1
    # Prompt tokens per request: an int (every row), a list of per-request lengths, or a seeded
    # distribution such as {"distribution": "uniform", "min": 4, "max": 24, "seed": 0}.
    sequence_length: int | tuple[int, ...] | dict[str, Any] = 128
    new_tokens: int = 128
    dtype: str = "bfloat16"
    attn_implementation: str = "sdpa"
    compile_mode: str | None = None
    # torch.compile needs a static KV cache to avoid recompiling every step, so compile forces it on.
    static_cache: bool = False
    kernels: bool = False
    device: str = "auto"
    # An int is a fixed count; "auto" warms up until steady state and measures until the median E2E
    # is known to target_relative_precision, each within its min/max count and time budget.
    warmup_iterations: int | str = AUTO
    measurement_iterations: int | str = AUTO
    monitor: bool = True
    monitor_interval_ms: int = 50  # hardware sampling period while measuring
    profile_tokens: int = 0
    seed: int = 0
    trust_remote_code: bool = False
    name: str = field(default="")
    # Weight-only quantization of every linear layer but the LM head, applied and timed at load.
    quantization: str | None = None
    group_size: int = 128
    # "auto": each layer picks a kernel per input row count; a kernel name pins every layer to it.
    quant_kernel: str = "auto"
    # Time the kernel candidates per layer shape and M (or reuse cached winners) while loading.
    tune: bool = False
    tune_budget_s: float = 2.0  # timing budget per layer shape; how hard to search, not what is measured
    # Run the requests through transformers' continuous-batching manager instead of one generate call.
    continuous_batching: bool = False
    # Continuous-batching cache sizing; None derives each from the workload (see continuous.cache_sizing).
    cb_page_size: int | None = None
    cb_num_blocks: int | None = None
    cb_max_batch_tokens: int | None = None
    cb_max_requests_per_batch: int | None = None
    # "auto" bounds. The warmup minimum of 5 is the seeds' fixed count: auto never warms up less.
    warmup_min_iterations: int = 5
    warmup_max_iterations: int = 50
    warmup_budget_s: float = 30.0
    measurement_min_iterations: int = 10
    measurement_max_iterations: int = 500
    measurement_budget_s: float = 15.0
    target_relative_precision: float = 0.01  # half-width of the 95% CI of the median E2E, relative

    def __post_init__(self) -> None:
        _check_int(self.batch_size, "batch_size", minimum=1, fix="use a batch size of at least 1")
        object.__setattr__(self, "sequence_length", _check_sequence_length(self.sequence_length, self.batch_size))
        _check_int(
            self.new_tokens,
            "new_tokens",
            minimum=2,
            fix="generate at least 2 tokens (TPOT and ITL need a second token)",
        )
        if self.warmup_iterations != AUTO:
            _check_int(self.warmup_iterations, "warmup_iterations", minimum=0, fix="use 'auto' or 0 or more")
        if self.measurement_iterations != AUTO:
            _check_int(self.measurement_iterations, "measurement_iterations", minimum=1, fix="use 'auto' or 1 or more")
        self._check_auto_bounds()
        _check_int(
            self.monitor_interval_ms, "monitor_interval_ms", minimum=1, fix="sample every 1 ms or more (default 50)"
        )
        _check_int(self.profile_tokens, "profile_tokens", minimum=0, fix="use 0 (off) or a token count")
        _check_int(self.seed, "seed", minimum=0, fix="use a non-negative integer seed")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ConfigError("model", "empty model name", "give a preset name, a local folder or a Hub id")
        _check_choice(self.dtype, "dtype", DTYPES)
        _check_choice(self.attn_implementation, "attn_implementation", ATTN_IMPLEMENTATIONS)
        if self.compile_mode is not None:
            _check_choice(self.compile_mode, "compile_mode", COMPILE_MODES)
            object.__setattr__(self, "static_cache", True)
        for flag in ("static_cache", "kernels", "monitor", "trust_remote_code", "tune", "continuous_batching"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(flag, f"expected true or false, got {getattr(self, flag)!r}", "use a boolean")
        self._check_quantization()
        parse_device(self.device)
        self._check_continuous_batching()
        if not isinstance(self.name, str):
            raise ConfigError("name", f"expected a string, got {self.name!r}", "quote the name")
        if not self.name:
            object.__setattr__(self, "name", self.derived_name())

    def _check_quantization(self) -> None:
        if self.quantization is not None:
            _check_choice(self.quantization, "quantization", QUANTIZATIONS)
        _check_int(self.group_size, "group_size", minimum=1, fix=f"use one of {QUANT_GROUP_SIZES}")
        _check_choice(self.group_size, "group_size", QUANT_GROUP_SIZES)
        _check_choice(self.quant_kernel, "quant_kernel", QUANT_KERNELS)
        if self.quantization is None:
            defaults = {f.name: f.default for f in fields(self)}
            for name in ("group_size", "quant_kernel", "tune", "tune_budget_s"):
                if getattr(self, name) != defaults[name]:
                    raise ConfigError(name, "applies only to a quantized model", "add quantization: int4, or drop it")
        if isinstance(self.tune_budget_s, bool) or not isinstance(self.tune_budget_s, (int, float)):
            raise ConfigError("tune_budget_s", f"expected seconds, got {self.tune_budget_s!r}", "use a number")
        if not 0 < self.tune_budget_s <= 600:
            raise ConfigError("tune_budget_s", f"must be in (0, 600] s, got {self.tune_budget_s}", "use e.g. 2")
        if self.quantization is not None and self.quantization != "int4":
            defaults = {f.name: f.default for f in fields(self)}
            int4_only = ("quant_kernel", "tune", "tune_budget_s")
            grouped = () if self.quantization in GROUPED_QUANTIZATIONS else ("group_size",)
            for name in int4_only + grouped:
                if getattr(self, name) != defaults[name]:
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
            if getattr(self, name) is not None:
                _check_int(getattr(self, name), name, minimum=1, fix="use a positive integer, or leave it unset")
                if not self.continuous_batching:
                    raise ConfigError(name, "applies only to continuous batching", "set continuous_batching: true")
        if self.cb_page_size is not None and self.cb_page_size < 4:
            raise ConfigError("cb_page_size", f"must be >= 4, got {self.cb_page_size}", "use a page of 4+ tokens")
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
        for prefix, minimum in (("warmup", 2), ("measurement", 2)):
            low, high = f"{prefix}_min_iterations", f"{prefix}_max_iterations"
            _check_int(getattr(self, low), low, minimum=minimum, fix=f"use {minimum} or more (the tests need them)")
            _check_int(getattr(self, high), high, minimum=getattr(self, low), fix=f"use at least {low}")
            budget = f"{prefix}_budget_s"
            _check_positive(getattr(self, budget), budget, fix="give a time budget in seconds, e.g. 30")
        precision = self.target_relative_precision
        _check_positive(precision, "target_relative_precision", fix="use a fraction such as 0.01 for ±1%")
        if precision >= 1:
            raise ConfigError(
                "target_relative_precision", f"must be below 1, got {precision}", "use a fraction such as 0.01 for ±1%"
            )

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
        return "-".join(parts)

    @property
    def config_hash(self) -> str:
        """Stable id of the measurement: same fields, same hash, across runs and library versions."""
        defaults = {f.name: f.default for f in fields(self)}
        payload = {
            key: value
            for key, value in self.to_dict().items()
            if key not in _UNHASHED_FIELDS and (key in _V1_FIELDS or value != defaults[key])
        }
        canonical = json.dumps([_HASH_VERSION, payload], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def workload_key(self, device_type: str | None = None) -> str:
        """Id of *what* is measured, without *how* (iteration counts, budgets, monitoring, names).

        Comparisons and history match runs on it. ``device_type`` is the device kind the run really used
        ("cpu", "cuda", ...): an ``auto`` device means different things on different machines.
        """
        defaults = {f.name: f.default for f in fields(self)}
        payload = {
            key: value
            for key, value in self.to_dict().items()
            if key not in _POLICY_FIELDS and (key in _V1_FIELDS or value != defaults[key])
        }
        payload["device"] = device_type or str(self.device).split(":")[0]
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
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(
                unknown[0],
                f"unknown config field(s): {', '.join(unknown)}",
                f"use only these fields: {', '.join(sorted(known))}",
            )
        return cls(**data)

    def replace(self, **changes: Any) -> BenchmarkConfig:
        """A copy with ``changes`` applied; the name is derived again unless given."""
        if "name" not in changes and self.name == self.derived_name():
            changes["name"] = ""
        return dataclasses.replace(self, **changes)


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
            _check_int(length, "sequence_length", minimum=1, fix="use at least 1 prompt token per request")
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
            _check_int(value.get(key), "sequence_length", minimum=1, fix=f"give '{key}': a prompt length >= 1")
        if value["min"] > value["max"]:
            raise ConfigError("sequence_length", f"min {value['min']} > max {value['max']}", "swap min and max")
        spec = {"distribution": value["distribution"], "min": value["min"], "max": value["max"]}
        spec["seed"] = value.get("seed", 0)
        _check_int(spec["seed"], "sequence_length", minimum=0, fix="use a non-negative integer seed")
        return spec
    _check_int(value, "sequence_length", minimum=1, fix="use at least 1 prompt token")
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


def _check_int(value: object, field_name: str, minimum: int, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(field_name, f"expected an integer, got {value!r}", fix)
    if value < minimum:
        raise ConfigError(field_name, f"must be >= {minimum}, got {value}", fix)


def _check_positive(value: object, field_name: str, fix: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field_name, f"expected a number, got {value!r}", fix)
    if not value > 0 or value == float("inf"):
        raise ConfigError(field_name, f"must be a positive finite number, got {value}", fix)


def _check_choice(value: object, field_name: str, choices: tuple[object, ...]) -> None:
    if value not in choices:
        raise ConfigError(field_name, f"unknown value {value!r}", f"use one of: {', '.join(str(c) for c in choices)}")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML or JSON config file into a plain dict (``yaml.safe_load`` only: no object tags)."""
    config_path = Path(path)
    if not config_path.is_file():
        raise ConfigError("--config", f"no such file: {config_path}", "pass the path of a .yaml or .json file")
    text = config_path.read_text(encoding="utf-8")
    if config_path.suffix.lower() == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError("--config", f"{config_path} is not valid JSON: {error}", "fix the file") from error
    else:
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError("--config", f"{config_path} is not valid YAML: {error}", "fix the file") from error
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("--config", f"{config_path} must hold a mapping of field: value", "fix the file")
    return data


def check_runnable(config: BenchmarkConfig) -> None:
    """Raise ``UnavailableFeatureError`` if this machine cannot run ``config`` as asked.

    Nothing is rewritten: a feature that is missing makes the whole config skipped, with the reason.
    """
    from tokbench import compat
    from tokbench.hardware.devices import resolve_device

    device = resolve_device(config.device)
    if device.type == "mps":
        raise UnavailableFeatureError(
            "device",
            "on MPS transformers streams each token one decoding step late (it defers its stop check), "
            "so per-token stamps would be wrong",
            "use --device cpu, or a CUDA GPU",
        )
    incompatibility = compat.known_incompatibility(config.attn_implementation, config.static_cache)
    if incompatibility:
        raise UnavailableFeatureError(
            "attn_implementation", incompatibility, "use sdpa or eager with a static cache or compile"
        )
    if config.attn_implementation == "flash_attention_2":
        if importlib.util.find_spec("flash_attn") is None:
            raise UnavailableFeatureError(
                "attn_implementation",
                "flash_attention_2 needs the flash-attn package, which is not installed",
                "pip install flash-attn on a CUDA machine, or use sdpa",
            )
        if device.type != "cuda":
            raise UnavailableFeatureError(
                "attn_implementation",
                f"flash_attention_2 runs only on CUDA GPUs, not on {device.type}",
                "use sdpa or eager on this device",
            )
    if config.quant_kernel == "triton" and (device.type != "cuda" or importlib.util.find_spec("triton") is None):
        raise UnavailableFeatureError(
            "quant_kernel", "the triton int4 kernel needs a CUDA GPU and the triton package", "use quant_kernel auto"
        )
    if config.kernels and importlib.util.find_spec("kernels") is None:
        raise UnavailableFeatureError(
            "kernels",
            "use_kernels needs the 'kernels' library, which is not installed",
            "pip install kernels, or drop --kernels",
        )
    if config.dtype == "bfloat16" and device.type == "cuda":
        import torch

        if not torch.cuda.is_bf16_supported():
            raise UnavailableFeatureError(
                "dtype", "this GPU does not support bfloat16", "use --dtype float16 or float32"
            )
