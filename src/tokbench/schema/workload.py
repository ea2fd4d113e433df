"""The device kind a stored result ran on, and so its workload key, from its own records (no torch).

A run resolves ``device: auto`` when it loads the model (``effective_settings["device"]``); a result that
failed or was skipped before loading still names a kind: an explicit device's, or what ``auto`` picks
on the machine its environment describes (a CUDA device when torch saw one, as ``resolve_device`` does).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from tokbench.config import BenchmarkConfig
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.serving import ServingSettings


def run_device_type(
    config: BenchmarkConfig, effective_settings: Any, environment: EnvironmentRecord
) -> str:
    """The kind of device ("cpu", "cuda", ...) the run used, or would have used."""
    resolved = (
        effective_settings.get("device")
        if isinstance(effective_settings, Mapping)
        else getattr(effective_settings, "device", None)
    )
    if isinstance(resolved, str) and resolved:
        return resolved.split(":")[0]
    if config.device != "auto":
        return config.device.split(":")[0]
    return "cuda" if environment.gpus else "cpu"


def result_workload_key(
    config: BenchmarkConfig, effective_settings: Any, environment: EnvironmentRecord
) -> str:
    """``config.workload_key`` for the device kind the run resolved."""
    return config.workload_key(run_device_type(config, effective_settings, environment))


def serving_workload_key(base_key: str, settings: ServingSettings) -> str:
    """A serving run's workload key: the request shape's key and the offered load (never the server)."""
    return hashlib.sha256(f"{base_key}:{settings.workload_hash}".encode()).hexdigest()[:16]


def serving_config_hash(base_hash: str, settings: ServingSettings) -> str:
    """A serving run's config hash: the request shape's and every load setting but the server's label."""
    payload = {key: value for key, value in settings.to_dict().items() if key != "label"}
    canonical = json.dumps([base_hash, payload], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]
