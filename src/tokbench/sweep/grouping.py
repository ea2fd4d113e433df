"""Which configs of a sweep can share one model load (pure: no torch, nothing runs here).

Loading a model (weights from disk, to the device) is the same work for configs that differ only in
what is measured with it: batch size, prompt lengths, new tokens, plain vs continuous batching, the
measurement policy, monitoring, profiling. Such configs form one load group: one isolated worker loads
the model once and measures each config in turn (``engine.shared_load``).

What needs a load of its own is everything else, and a field this module does not know (a field added
later) counts as needing one: only fields listed in ``NO_RELOAD_FIELDS`` may differ inside a group.
Some configs never share at all, whatever their neighbours (``share_refusal``): a compiled model
carries its compiled graphs (each config must measure its own cold compile), a static cache is sized
per workload, int4 quantization rewrites the model and tuning depends on the batch's row counts.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

from tokbench.config import BenchmarkConfig

# Fields that may differ between configs measured on one loaded model. Anything else is part of the load.
NO_RELOAD_FIELDS = frozenset(
    {
        "batch_size", "sequence_length", "new_tokens", "continuous_batching",
        "cb_page_size", "cb_num_blocks", "cb_max_batch_tokens", "cb_max_requests_per_batch",
        "warmup_iterations", "measurement_iterations", "warmup_min_iterations", "warmup_max_iterations",
        "warmup_budget_s", "measurement_min_iterations", "measurement_max_iterations", "measurement_budget_s",
        "target_relative_precision", "monitor", "monitor_interval_ms", "profile_tokens", "name",
    }
)  # fmt: skip


def share_refusal(config: BenchmarkConfig) -> str | None:
    """Why ``config`` must load its model alone, or None when it may share a load."""
    if config.compile_mode is not None:
        return "compiled: each config measures its own cold compile"
    if config.static_cache:
        return "static cache: sized for its own workload"
    if config.quantization is not None:
        return "quantized: the quantized model is built for it"
    if config.tune:
        return "tuned: kernel tuning depends on its batch"
    return None


def load_key(config: BenchmarkConfig) -> str | None:
    """Configs with the same key can share one load; None: this config loads its model alone."""
    if share_refusal(config) is not None:
        return None
    payload = {key: value for key, value in config.to_dict().items() if key not in NO_RELOAD_FIELDS}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]


@dataclass(frozen=True)
class LoadGroup:
    """Indexes (into the list given to ``load_groups``) of configs measured on one load, in order."""

    indexes: tuple[int, ...]
    key: str | None  # None: a config that loads alone

    @property
    def shared(self) -> bool:
        return len(self.indexes) > 1


def load_groups(configs: Sequence[BenchmarkConfig], *, share: bool = True) -> list[LoadGroup]:
    """Group configs by ``load_key``, groups in order of their first config, configs in order within a group.

    ``share=False`` (or a config that may not share): one group per config, as before load sharing.
    """
    groups: dict[str, list[int]] = {}
    ordered: list[tuple[str | None, list[int]]] = []
    for index, config in enumerate(configs):
        key = load_key(config) if share else None
        if key is None:
            ordered.append((None, [index]))
        elif key in groups:
            groups[key].append(index)
        else:
            groups[key] = [index]
            ordered.append((key, groups[key]))
    return [LoadGroup(tuple(indexes), key) for key, indexes in ordered]
