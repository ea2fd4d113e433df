"""Preflight: whether this machine can run a valid config as asked, before anything is loaded.

Kept out of ``config`` (pure values, no torch) because it asks the hardware and the installed packages.
"""

from __future__ import annotations

import importlib.util

from tokbench.config import BenchmarkConfig
from tokbench.engine import compat
from tokbench.errors import UnavailableFeatureError
from tokbench.hardware.devices import resolve_device


def check_runnable(config: BenchmarkConfig) -> None:
    """Raise ``UnavailableFeatureError`` if this machine cannot run ``config`` as asked.

    Nothing is rewritten: a feature that is missing makes the whole config skipped, with the reason.
    """
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
