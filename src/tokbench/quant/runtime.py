"""Per-model runtime state of the int4 kernels, owned by the quantized model instead of module globals.

:func:`tokbench.quant.int4.quantize_model` creates one :class:`Int4Runtime` and hands it to every
layer it makes, so the layers share it; two quantized models (or a test) never see each other's
state, and dropping the model frees it.
"""

from __future__ import annotations

from typing import Any

import torch

from tokbench.quant import native_ops

# Cap on the split-K scratch kept between calls (all buffers together). A block bigger than what is
# left gets a fresh tensor that is not kept: correct, only slower.
DEFAULT_SCRATCH_CAP_BYTES = 1 << 30


class Int4Runtime:
    """Native-op availability per (device, dtype) and the split-K scratch workspace.

    The scratch is shared by the layers of one model: re-allocating a large block on every call costs
    page faults on CPU (fresh pages are zeroed by the kernel) and allocator churn on GPU. Kernels run
    one at a time per device stream, so sharing is safe; it is not safe across Python threads.
    """

    def __init__(self, scratch_cap_bytes: int = DEFAULT_SCRATCH_CAP_BYTES) -> None:
        self.scratch_cap_bytes = scratch_cap_bytes
        self._native: dict[tuple[str, torch.dtype], native_ops.NativeAvailability] = {}
        self._scratch: dict[tuple[str, torch.dtype, int], torch.Tensor] = {}

    def native_availability(self, device: torch.device | str, dtype: torch.dtype) -> native_ops.NativeAvailability:
        """:func:`tokbench.quant.native_ops.smoke_test`, run once per device and dtype."""
        device = torch.device(device)
        key = (str(device), dtype)
        status = self._native.get(key)
        if status is None:
            status = self._native[key] = native_ops.smoke_test(device, dtype)
        return status

    def scratch(self, device: torch.device, dtype: torch.dtype, numel: int, slot: int) -> torch.Tensor:
        """A 1-D ``numel`` buffer for ``slot``, reused across calls (its content is garbage)."""
        key = (str(device), dtype, slot)
        buffer = self._scratch.get(key)
        if buffer is not None and buffer.numel() >= numel:
            return buffer[:numel]
        # A normal (not inference) tensor: written in place both inside and outside inference_mode.
        with torch.inference_mode(False):
            fresh = torch.empty(numel, dtype=dtype, device=device)
        kept = self.scratch_bytes() - (buffer.numel() * buffer.element_size() if buffer is not None else 0)
        if kept + numel * fresh.element_size() <= self.scratch_cap_bytes:
            self._scratch[key] = fresh
        return fresh

    def scratch_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._scratch.values())

    def release_scratch(self) -> None:
        """Free the scratch buffers (they grow to the largest block dequantized so far)."""
        self._scratch.clear()

    def __deepcopy__(self, memo: dict[int, Any]) -> Int4Runtime:
        # A copied model gets its own, empty runtime (shared by its layers through ``memo``).
        return Int4Runtime(self.scratch_cap_bytes)
