"""The one adapter for private torch / transformers APIs, each used only where no public API exists.

Every function here checks the library version it was written against and degrades to a clear
answer ("unknown") rather than guessing when the private attribute is gone.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch
import transformers
from packaging.version import Version

TORCH_VERSION = Version(torch.__version__.split("+")[0])
TRANSFORMERS_VERSION = Version(transformers.__version__)

# Versions these adapters were written and tested against; outside this range they still try,
# but warn once so a changed private API does not silently mislabel a result.
_TESTED_TORCH = (Version("2.4"), Version("2.14"))
_TESTED_TRANSFORMERS = (Version("5.0"), Version("6.0"))


def _in_range(version: Version, bounds: tuple[Version, Version]) -> bool:
    return bounds[0] <= version < bounds[1]


def check_versions() -> list[str]:
    """Warnings for library versions outside the tested range (empty when all is known-good)."""
    notes = []
    if not _in_range(TORCH_VERSION, _TESTED_TORCH):
        notes.append(f"torch {TORCH_VERSION} is outside the tested range {_TESTED_TORCH[0]}..{_TESTED_TORCH[1]}")
    if not _in_range(TRANSFORMERS_VERSION, _TESTED_TRANSFORMERS):
        notes.append(
            f"transformers {TRANSFORMERS_VERSION} is outside the tested range "
            f"{_TESTED_TRANSFORMERS[0]}..{_TESTED_TRANSFORMERS[1]}"
        )
    for note in notes:
        warnings.warn(note, stacklevel=2)
    return notes


def make_compile_config(mode: str, device_type: str) -> Any:
    """A transformers ``CompileConfig`` that really compiles on ``device_type``.

    transformers only auto-compiles ``generate`` on accelerators; on CPU it silently skips compile
    unless the private ``_compile_all_devices`` flag is set. Without it, a "compiled" CPU result
    would be an eager one under a compiled label.
    """
    from transformers import CompileConfig

    compile_config = CompileConfig(mode=mode)
    if device_type not in ("cuda", "xpu"):
        if not hasattr(compile_config, "_compile_all_devices"):
            raise RuntimeError(
                f"transformers {TRANSFORMERS_VERSION} has no CompileConfig._compile_all_devices; "
                "tokbench cannot make generate compile on CPU with this version"
            )
        compile_config._compile_all_devices = True
    return compile_config


def attention_implementation(model: Any) -> str:
    """The attention implementation the loaded model really uses (transformers keeps it private)."""
    value = getattr(model.config, "_attn_implementation", None)
    return str(value) if value is not None else "unknown"


def compiled_graph_count() -> int:
    """How many graphs dynamo has compiled so far in this process (no public counter exists).

    Process-wide: flex_attention compiles its own kernels even in an eager model, so a rising count
    alone does not prove the model's forward was compiled (see ``generate_used_compiled_forward``).
    """
    try:
        from torch._dynamo.utils import counters
    except ImportError:  # pragma: no cover - torch without dynamo
        return 0
    return int(counters.get("stats", {}).get("unique_graphs", 0))


# generate keeps its torch.compile'd forward here (PreTrainedModel.get_compiled_call); it is created
# only when generate decides to compile, so its presence after a run shows the compiled path was taken.
_COMPILED_CALL_ATTRIBUTES = ("_compiled_call", "_last_compile_config")


def forget_compiled_forward(model: Any) -> None:
    """Drop generate's cached compiled forward, so the next call compiles (cold) and is observed."""
    for name in _COMPILED_CALL_ATTRIBUTES:
        if name in vars(model):
            delattr(model, name)


def generate_used_compiled_forward(model: Any) -> bool:
    """Whether generate created (and so used) a compiled forward for ``model``."""
    return vars(model).get(_COMPILED_CALL_ATTRIBUTES[0]) is not None


# Combinations that valid configs can ask for but a library version cannot run, with the reason
# the result gets. Checked before loading so they are skipped, not reported as crashes.
def known_incompatibility(attn_implementation: str, static_cache: bool) -> str | None:
    if attn_implementation == "flex_attention" and static_cache and Version("6.0") > TRANSFORMERS_VERSION:
        return (
            f"transformers {TRANSFORMERS_VERSION} cannot run flex_attention with a static KV cache (so neither "
            "with compile): its BlockMask has no .contiguous() in the static-cache path"
        )
    return None


def reset_compiler() -> None:
    """Forget compiled graphs so one configuration's compile does not leak into the next."""
    with contextlib.suppress(AttributeError):  # torch without dynamo has nothing to forget
        torch._dynamo.reset()


# transformers' continuous batching (5.x) stamps each request's creation and every generated token with
# time.perf_counter(), float seconds: the same clock as tokbench's clock.perf_counter_ns, so a
# stamp converts exactly enough (float64 keeps sub-ns steps for years of uptime). The generation loop runs
# in a background thread that no streamer reaches, so these stamps are the only ones taken the moment a
# token is on the host; continuous.py checks every converted stamp lies between its own ns stamps.
_TESTED_CONTINUOUS_BATCHING = (Version("5.0"), Version("6.0"))


def continuous_batching_stamp_ns(perf_counter_seconds: float) -> int:
    """A continuous-batching timestamp (``time.perf_counter`` seconds) as ``perf_counter_ns`` nanoseconds."""
    if not _in_range(TRANSFORMERS_VERSION, _TESTED_CONTINUOUS_BATCHING):
        raise RuntimeError(
            f"transformers {TRANSFORMERS_VERSION}: tokbench does not know which clock its continuous batching "
            "stamps tokens with (written against 5.x, where it is time.perf_counter)"
        )
    return round(perf_counter_seconds * 1_000_000_000)


def continuous_batching_workload_hints(max_prompt_length: int, max_generated_length: int, num_requests: int) -> Any:
    """``WorkloadHints`` for ``init_continuous_batching`` (public parameter, class not exported by transformers)."""
    from transformers.generation.continuous_batching.utils import WorkloadHints

    return WorkloadHints(
        max_prompt_length=max_prompt_length, max_generated_length=max_generated_length, num_requests=num_requests
    )


def profiler_all_threads_config() -> Any:
    """A torch.profiler experimental config that records every thread, not only the one that started it.

    Continuous batching runs the model in a background thread that exists before profiling starts;
    without ``profile_all_threads`` (private ``_ExperimentalConfig``; present in torch 2.13) its forwards
    are missing from the trace. A torch without it: ``None`` (the plain path is still fully profiled).
    """
    try:
        from torch.profiler import _ExperimentalConfig
    except ImportError:
        return None
    try:
        return _ExperimentalConfig(profile_all_threads=True)
    except TypeError:
        return None
