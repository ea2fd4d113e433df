"""The on-disk tuning cache: one JSON file per key, keyed by everything that changes the answer."""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from tokbench.fileio import CACHE_ENV_VAR as CACHE_ENV_VAR  # re-exported: the tuning cache honours it
from tokbench.fileio import atomic_write_text, cache_root
from tokbench.hardware.devices import device_name
from tokbench.quant import kernels as quant_kernels
from tokbench.schema.quant import CandidateTiming, KernelChoice

CACHE_SCHEMA_VERSION = 2  # 2: baseline and rejected candidates, kernel revision in the key
# The rule that decides which picks are cached. 2: only picks separated from noise (analysis.picks), each with its
# confidence. In the key, so picks cached under an earlier rule (noise included) are never read again.
SELECTION_REVISION = 2


class TuningCacheWarning(UserWarning):
    """A tuning cache entry was unreadable or did not match, and was ignored."""


def default_cache_dir() -> Path:
    """``$TOKBENCH_CACHE_DIR/tuning`` when set, else ``~/.cache/tokbench/tuning``."""
    return cache_root() / "tuning"


class TuningCache:
    """Winners on disk, one JSON file per key; unreadable or mismatching files are ignored with a warning."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory).expanduser() if directory is not None else default_cache_dir()

    @staticmethod
    def _digest(key: dict[str, Any]) -> str:
        return hashlib.sha256(json.dumps(key, sort_keys=True).encode("utf-8")).hexdigest()[:40]

    def path_for(self, key: dict[str, Any]) -> Path:
        return self.directory / f"{self._digest(key)}.json"

    def load(self, key: dict[str, Any]) -> dict[str, Any] | None:
        path = self.path_for(key)
        if not path.is_file():
            return None
        try:
            entry = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant, parse_float=_finite)
            if not isinstance(entry, dict) or entry.get("schema") != CACHE_SCHEMA_VERSION:
                raise ValueError("unknown schema")
            if entry.get("key") != key:
                warnings.warn(
                    f"tuning cache entry {path} was written for a different key; ignoring it and re-tuning",
                    TuningCacheWarning,
                    stacklevel=2,
                )
                return None
            KernelChoice.from_dict(entry["winner"])
            for item in entry["candidates"]:
                CandidateTiming.from_dict(item)
        except (OSError, ValueError, KeyError, TypeError) as error:
            warnings.warn(
                f"tuning cache entry {path} is unreadable ({error}); ignoring it and re-tuning",
                TuningCacheWarning,
                stacklevel=2,
            )
            return None
        return entry

    def store(self, key: dict[str, Any], payload: dict[str, Any]) -> Path | None:
        """Write atomically (temp file in the same directory, then ``os.replace``); None if it failed."""
        path = self.path_for(key)
        entry = {"schema": CACHE_SCHEMA_VERSION, "key": key, **payload}
        try:
            atomic_write_text(path, json.dumps(entry, indent=1, sort_keys=True))
        except OSError as error:
            warnings.warn(
                f"could not write the tuning cache in {self.directory} ({error}); winners are not kept",
                TuningCacheWarning,
                stacklevel=2,
            )
            return None
        return path


def triton_version() -> str | None:
    try:
        import triton
    except ImportError:
        return None
    return str(getattr(triton, "__version__", "unknown"))


def cache_key(
    *,
    device: torch.device,
    dtype: torch.dtype,
    group_size: int,
    in_features: int,
    out_features: int,
    m: int,
    candidates: Sequence[KernelChoice],
    baseline: KernelChoice | None = None,
) -> dict[str, Any]:
    """Everything that changes which kernel wins (``baseline``: the default, timed but not a candidate)."""
    uses_triton = any(c.kernel == "triton" for c in candidates)
    return {
        # Read at call time (not imported by value) so a bump, or a test's monkeypatch, takes effect.
        "kernel_revision": quant_kernels.KERNEL_REVISION,
        "selection": SELECTION_REVISION,
        "device_type": device.type,
        "device_name": device_name(device),
        # CPU kernels scale with the thread count, so a winner at 2 threads says nothing about 16.
        "threads": torch.get_num_threads() if device.type == "cpu" else None,
        "torch": torch.__version__,
        "triton": triton_version() if uses_triton else None,
        "dtype": str(dtype).removeprefix("torch."),
        "group_size": group_size,
        "in_features": in_features,
        "out_features": out_features,
        "m": m,
        "candidates": [c.label for c in candidates],
        "baseline": baseline.label if baseline is not None else None,
    }


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a timing")  # NaN / Infinity in a cache file: hand-edited or damaged


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is not a finite timing")
    return value
