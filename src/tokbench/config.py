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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tokbench.errors import ConfigError, UnavailableFeatureError

DTYPES = ("bfloat16", "float16", "float32")
ATTN_IMPLEMENTATIONS = ("eager", "sdpa", "flash_attention_2", "flex_attention")
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")

# Fields that do not change what is measured, so they stay out of config_hash.
_UNHASHED_FIELDS = frozenset({"name", "profile_tokens"})
_HASH_VERSION = "tokbench-config-v1"
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
    sequence_length: int = 128
    new_tokens: int = 128
    dtype: str = "bfloat16"
    attn_implementation: str = "sdpa"
    compile_mode: str | None = None
    # torch.compile needs a static KV cache to avoid recompiling every step, so compile forces it on.
    static_cache: bool = False
    kernels: bool = False
    device: str = "auto"
    warmup_iterations: int = 5
    measurement_iterations: int = 20
    monitor: bool = True
    monitor_interval_ms: int = 50  # hardware sampling period while measuring
    profile_tokens: int = 0
    seed: int = 0
    trust_remote_code: bool = False
    name: str = field(default="")

    def __post_init__(self) -> None:
        _check_int(self.batch_size, "batch_size", minimum=1, fix="use a batch size of at least 1")
        _check_int(self.sequence_length, "sequence_length", minimum=1, fix="use at least 1 prompt token")
        _check_int(
            self.new_tokens,
            "new_tokens",
            minimum=2,
            fix="generate at least 2 tokens (TPOT and ITL need a second token)",
        )
        _check_int(self.warmup_iterations, "warmup_iterations", minimum=0, fix="use 0 or more")
        _check_int(self.measurement_iterations, "measurement_iterations", minimum=1, fix="use 1 or more")
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
        for flag in ("static_cache", "kernels", "monitor", "trust_remote_code"):
            if not isinstance(getattr(self, flag), bool):
                raise ConfigError(flag, f"expected true or false, got {getattr(self, flag)!r}", "use a boolean")
        parse_device(self.device)
        if not isinstance(self.name, str):
            raise ConfigError("name", f"expected a string, got {self.name!r}", "quote the name")
        if not self.name:
            object.__setattr__(self, "name", self.derived_name())

    def derived_name(self) -> str:
        """A readable name from the fields a person scans for first."""
        parts = [
            self.model.rstrip("/").split("/")[-1],
            self.attn_implementation,
            self.dtype,
            f"b{self.batch_size}",
            f"s{self.sequence_length}",
            f"n{self.new_tokens}",
        ]
        if self.compile_mode:
            parts.append(f"compile-{self.compile_mode}")
        elif self.static_cache:
            parts.append("static")
        if self.kernels:
            parts.append("kernels")
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

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

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


def _check_choice(value: object, field_name: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(field_name, f"unknown value {value!r}", f"use one of: {', '.join(choices)}")


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
    from tokbench.devices import resolve_device

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
