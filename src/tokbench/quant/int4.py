"""Group-wise asymmetric int4 weight-only quantization, packing, and the ``QuantizedLinear`` module.

Format (one layer, ``N = out_features``, ``K = in_features``, ``g = group_size``):

* ``K`` is padded with zero weights up to ``K_pad``, a multiple of ``g`` (so layers like an MLP with
  ``intermediate_size = 688`` and ``g = 128`` are supported; inputs are never padded except for the
  native op, see ``native_ops``). ``N`` can be anything: packing runs along ``K``.
* ``qweight``: int32 ``[N, K_pad / 8]``, 8 values per int32. Within each group of ``g`` values, the
  value at bit offset ``8 * b + 4 * h`` of word ``w`` (byte ``b``, low ``h = 0`` or high ``h = 1``
  nibble) is element ``h * g / 2 + 4 * w + b``. Seen as bytes (little-endian), byte ``j`` of a group
  holds elements ``j`` (low nibble) and ``j + g / 2`` (high nibble), so the torch split-K kernel
  unpacks a whole block with two contiguous byte ops (``& 15`` and ``>> 4``) instead of a gather.
* ``scales``: float32 ``[N, K_pad / g]``; ``zeros``: uint8 ``[N, K_pad / g]`` (integer zero points).
* ``W ≈ (q - z) * s``. The range of each group always includes 0 (as GPTQ does): 0 is then exact,
  which keeps padding exact and makes a constant group exact (``c = 15 * (c / 15)``), and an all-zero
  group gets ``s = 1`` instead of a division by zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import torch
from torch import nn

from tokbench.quant import kernels as quant_kernels  # bind_kernel looked up per call: tests spy on it
from tokbench.quant.kernels import (
    KernelChoice,
    check_choice,
    default_choice,
    prepare_for,
    unavailable_reason,
)
from tokbench.quant.packing import (
    PACK_FACTOR,
    QuantizationError,
    QuantizedWeight,
    check_group_size,
    pack_int4,
    padded_in_features,
    quantize_weight,
)
from tokbench.quant.runtime import Int4Runtime
from tokbench.schema.quant import QuantizationReport

# Bound kernels kept per layer, one per (M, device, dtype) seen; a run uses a handful of M values,
# the cap only bounds sweeps over many M.
_MAX_BOUND_KERNELS = 64


class QuantizedLinear(nn.Module):
    """An ``nn.Linear`` replacement holding int4 weights, with several kernels behind one ``forward``.

    Kernel selection, most specific first:

    * ``dispatch``: ``{M: KernelChoice}`` set by the tuner, where ``M`` is the number of rows of the
      flattened input (batch x sequence for prefill, batch for decode). An ``M`` that was not tuned
      uses the tuned ``M`` nearest in log2 (so a decode-sized input gets the decode winner).
    * ``kernel`` / ``split_k``: a fixed choice for every ``M`` when ``kernel != "auto"``.
    * ``"auto"``: the untuned default, :func:`tokbench.quant.kernels.default_choice`.

    A tuned or fixed choice that cannot run the current device and activation dtype falls back to the
    default. Moving the layer to another device or float dtype (``.to()``) clears ``dispatch`` (its
    timings were taken elsewhere), sets ``compute_dtype`` to the new float dtype and keeps ``scales``
    in float32. The kernel resolved for each (M, device, dtype) is bound once and reused by later
    forwards: decode runs one tiny product per layer, where per-call selection would cost more than
    the product itself.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        group_size: int = 128,
        bias: bool = True,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str | None = None,
        runtime: Int4Runtime | None = None,
    ) -> None:
        super().__init__()
        check_group_size(group_size)
        # Shared with the model's other layers when quantize_model made them; a lone layer owns one.
        self.runtime = runtime if runtime is not None else Int4Runtime()
        self.in_features = in_features
        self.out_features = out_features
        self.group_size = group_size
        self.in_features_padded = padded_in_features(in_features, group_size)
        self.num_groups = self.in_features_padded // group_size
        self.compute_dtype = dtype  # the dense layer's dtype, what the model feeds this layer
        self.register_buffer(
            "qweight",
            torch.zeros(out_features, self.in_features_padded // PACK_FACTOR, dtype=torch.int32, device=device),
        )
        self.register_buffer("scales", torch.ones(out_features, self.num_groups, device=device))
        self.register_buffer("zeros", torch.zeros(out_features, self.num_groups, dtype=torch.uint8, device=device))
        self.bias: torch.Tensor | None
        if bias:
            self.register_buffer("bias", torch.zeros(out_features, dtype=dtype, device=device))
        else:
            self.bias = None
        self.kernel = "auto"
        self.split_k = 1
        self._dispatch: dict[int, Any] = {}
        # Derived tensors (scales in the compute dtype, the native op's packed copy...), built once per
        # (purpose, device, dtype) and dropped whenever the buffers move or are reloaded.
        self._derived: dict[tuple[Any, ...], Any] = {}
        # (M, device, dtype) -> the bound kernel forward calls; dropped with the derived tensors and
        # whenever the selection (dispatch, fixed kernel) changes.
        self._bound: dict[tuple[int, torch.device, torch.dtype], Callable[[torch.Tensor], torch.Tensor]] = {}

    @classmethod
    def from_linear(
        cls, linear: nn.Linear, group_size: int = 128, runtime: Int4Runtime | None = None
    ) -> QuantizedLinear:
        weight = linear.weight
        quantized = quantize_weight(weight, group_size)
        layer = cls(
            linear.in_features,
            linear.out_features,
            group_size,
            bias=linear.bias is not None,
            dtype=weight.dtype,
            device=weight.device,
            runtime=runtime,
        )
        layer.load_quantized(quantized)
        if linear.bias is not None:
            layer.bias.copy_(linear.bias.detach())  # type: ignore[union-attr]
        return layer

    def load_quantized(self, quantized: QuantizedWeight) -> None:
        with torch.no_grad():
            self.qweight.copy_(pack_int4(quantized.q, self.group_size))
            self.scales.copy_(quantized.scales)
            self.zeros.copy_(quantized.zeros)
        self.invalidate()

    @property
    def dispatch(self) -> Mapping[int, Any]:
        """The tuned ``{M: KernelChoice}`` table (read-only view: assign or use :meth:`set_tuned`)."""
        return MappingProxyType(self._dispatch)

    @dispatch.setter
    def dispatch(self, table: Mapping[int, Any]) -> None:
        self._dispatch = dict(table)
        self._bound.clear()

    def set_tuned(self, m: int, choice: Any) -> None:
        """Use ``choice`` for inputs of ``m`` rows (the tuner's hand-off)."""
        self._dispatch[int(m)] = choice
        self._bound.clear()

    def invalidate(self) -> None:
        """Forget derived tensors and bound kernels (call after editing the buffers by hand)."""
        self._derived.clear()
        self._bound.clear()

    def __getstate__(self) -> dict[str, Any]:
        # Bound kernels are partials over this layer and its derived tensors: a copy must rebind its own.
        state = dict(self.__dict__)
        state["_bound"] = {}
        return state

    def derived(self, key: tuple[Any, ...], build: Any) -> Any:
        """Return the cached ``build()`` result for ``key`` (built at most once while buffers are unchanged)."""
        if key not in self._derived:
            # Outside inference mode, so a copy first built during an inference_mode forward stays usable
            # by later forwards that run with autograd on.
            with torch.inference_mode(False), torch.no_grad():
                self._derived[key] = build()
        return self._derived[key]

    def _apply(self, fn: Any, recurse: bool = True) -> QuantizedLinear:
        old_device, old_dtype = self.qweight.device, self.compute_dtype
        scales = self.scales
        # What fn does to a float tensor of the compute dtype tells the new activation dtype, if any
        # (``.to(bf16)``, ``.half()``, ``.to("cuda")`` ... all go through here).
        probe = fn(torch.empty(0, dtype=old_dtype, device=old_device))
        result = super()._apply(fn, recurse)
        moved = self._buffers["scales"]
        if moved is not None and moved.dtype != torch.float32:
            # Scales stay float32 whatever the activation dtype: kernels cast them once into derived
            # copies, and rounding the stored ones to bf16 would lose precision for good. Cast from the
            # original, not from ``moved``, so nothing is lost.
            self._buffers["scales"] = scales.to(device=moved.device, dtype=torch.float32)
        if isinstance(probe, torch.Tensor) and probe.is_floating_point():
            self.compute_dtype = probe.dtype
        if (self.qweight.device, self.compute_dtype) != (old_device, old_dtype):
            self._dispatch.clear()  # tuned winners were timed on the old device / dtype
        self.invalidate()  # derived copies live on the old device / dtype
        return result

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(*args, **kwargs)
        self.invalidate()

    def packed_bytes(self) -> int:
        """Bytes of the int4 state itself: packed weights, scales, zeros and bias."""
        tensors = [self.qweight, self.scales, self.zeros] + ([self.bias] if self.bias is not None else [])
        return sum(t.numel() * t.element_size() for t in tensors)

    def derived_bytes(self) -> int:
        """Bytes held in derived copies (e.g. the native op's own packing), not counted in packed_bytes."""
        total = 0
        for value in self._derived.values():
            if isinstance(value, torch.Tensor):
                total += value.numel() * value.element_size()
            elif hasattr(value, "nbytes"):
                total += int(value.nbytes)
        return total

    def set_choice(self, kernel: str, split_k: int = 1) -> None:
        """Use one kernel for every M (clears the tuned dispatch table)."""
        choice = KernelChoice(kernel, split_k)
        if kernel != "auto":
            check_choice(self, choice)
        self.kernel, self.split_k = kernel, split_k
        self.dispatch = {}

    def choice_for(self, m: int, device: torch.device, dtype: torch.dtype) -> Any:
        """The kernel used for ``m`` rows: tuned, else fixed, else default; the default if it cannot run."""
        stored: Any = None
        if self._dispatch:
            if m in self._dispatch:
                stored = self._dispatch[m]
            else:
                log_m = math.log2(max(m, 1))
                nearest = min(self._dispatch, key=lambda tuned: (abs(math.log2(tuned) - log_m), tuned))
                stored = self._dispatch[nearest]
        elif self.kernel != "auto":
            stored = KernelChoice(self.kernel, self.split_k)
        if stored is not None and unavailable_reason(self, stored, device, dtype) is None:
            return stored
        return default_choice(self, m, device, dtype)

    def bound_kernel(self, m: int, device: torch.device, dtype: torch.dtype) -> Callable[[torch.Tensor], torch.Tensor]:
        """The ``x2d -> x2d @ W.T`` function forward uses for this (M, device, dtype), bound on first use."""
        key = (m, device, dtype)
        bound = self._bound.get(key)
        if bound is None:
            with torch.inference_mode(False), torch.no_grad():
                bound = quant_kernels.bind_kernel(self, self.choice_for(m, device, dtype), device, dtype)
            if len(self._bound) >= _MAX_BOUND_KERNELS:
                self._bound.clear()
            self._bound[key] = bound
        return bound

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise QuantizationError(f"input has {x.shape[-1]} features but the layer takes {self.in_features}")
        x2d = x.reshape(-1, self.in_features)
        bound = self._bound.get((x2d.shape[0], x2d.device, x2d.dtype))  # the hot path: one dict lookup
        if bound is None:
            bound = self.bound_kernel(x2d.shape[0], x2d.device, x2d.dtype)
        out = bound(x2d)
        bias = self.bias  # one nn.Module attribute lookup (they are slow), not two
        if bias is not None:
            out.add_(bias)  # in place: out is the kernel's own fresh tensor
        return out.view(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, group_size={self.group_size}, "
            f"bias={self.bias is not None}, kernel={self.kernel}, tuned_m={sorted(self._dispatch)}"
        )


def _output_embedding_ids(model: nn.Module) -> set[int]:
    ids: set[int] = set()
    getter = getattr(model, "get_output_embeddings", None)
    if callable(getter):
        try:
            head = getter()
        except (NotImplementedError, AttributeError):
            head = None
        if isinstance(head, nn.Module):
            ids.add(id(head))
    return ids


def quantize_model(model: nn.Module, group_size: int = 128, kernel: str = "auto") -> QuantizationReport:
    """Replace every ``nn.Linear`` except the LM head by a :class:`QuantizedLinear`, in place.

    The LM head is any module named ``lm_head`` and whatever ``model.get_output_embeddings()``
    returns. ``kernel`` is ``"auto"`` (see :class:`QuantizedLinear`) or a kernel name every layer
    will use (``"reference"``, ``"splitk"``, ``"native"``, ``"triton"``); layers that cannot run a
    fixed kernel raise :class:`tokbench.quant.kernels.KernelUnavailableError` here, not mid-run.
    """
    from tokbench.clock import perf_counter_ns

    check_group_size(group_size)
    start_ns = perf_counter_ns()
    head_ids = _output_embedding_ids(model)
    targets: list[tuple[str, nn.Linear]] = []
    skipped: list[str] = []
    for name, module in model.named_modules():
        if not isinstance(module, nn.Linear) or isinstance(module, QuantizedLinear):
            continue
        if name.split(".")[-1] == "lm_head" or id(module) in head_ids:
            skipped.append(name)
            continue
        targets.append((name, module))
    bytes_before = bytes_after = derived = 0
    shapes: list[tuple[int, int]] = []
    runtime = Int4Runtime()  # one per model: shared scratch and native-op checks
    for name, linear in targets:
        layer = QuantizedLinear.from_linear(linear, group_size, runtime)
        if kernel != "auto":
            layer.set_choice(kernel, 1)
        prepare_for(layer, layer.qweight.device, layer.compute_dtype)
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, layer)
        bytes_before += sum(p.numel() * p.element_size() for p in linear.parameters(recurse=False))
        bytes_after += layer.packed_bytes()
        derived += layer.derived_bytes()
        if (linear.in_features, linear.out_features) not in shapes:
            shapes.append((linear.in_features, linear.out_features))
    return QuantizationReport(
        layers_quantized=len(targets),
        unique_shapes=tuple(shapes),
        bytes_before=bytes_before,
        bytes_after=bytes_after,
        derived_bytes=derived,
        group_size=group_size,
        kernel=kernel,
        skipped=tuple(skipped),
        elapsed_ns=perf_counter_ns() - start_ns,
    )
