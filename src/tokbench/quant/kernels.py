"""Kernel registry for :class:`~tokbench.quant.int4.QuantizedLinear`: which kernels exist, which apply
to a layer on a device, how simple each is (for tie-breaks), and running them.

Kernels:

* ``reference``: unpack everything, dequantize in float32, float32 matmul, cast back. The oracle:
  slow and memory hungry on purpose, never a tuning candidate.
* ``splitk``: K cut into ``split_k`` blocks of whole groups (sizes differ by at most one group when
  ``split_k`` does not divide the group count); each block is dequantized straight into the input's
  dtype in a reused scratch buffer and multiplied into the output, which accumulates the partials
  (``addmm_``). Bigger ``split_k`` means a smaller scratch (it fits in cache) but more, thinner
  matmuls. Valid for ``1 <= split_k <= number of groups``.
* ``native``: torch's private int4 op (see :mod:`tokbench.quant.native_ops`), on its own packed copy.
* ``triton``: a Triton split-K GEMM dequantizing in-kernel (CUDA with fp16/bf16 activations only).

Accuracy: :func:`tolerance` is the max abs difference from the reference allowed, as a fraction of
``max |reference output|`` (tests assert it on random and adversarial shapes). The reference works in
float32; a kernel rounds the dequantized weight to the activation dtype (2**-9 relative in bf16) and
its output, and split-K rounds the running output once per block, so the error grows like the square
root of ``split_k``: ``base * (1 + sqrt(split_k))`` with base 5e-5 (fp32), 2.5e-3 (fp16), 1e-2 (bf16).
Measured on K = 4096: bf16 0.3-0.6 % at split_k 1, 1.2 % at 32; fp32 ~1e-6.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch

from tokbench.errors import TokbenchError
from tokbench.quant import native_ops
from tokbench.quant.packing import PACK_FACTOR, dequantize, unpack_int4
from tokbench.schema.quant import KernelChoice

if TYPE_CHECKING:
    from tokbench.quant.int4 import QuantizedLinear

KERNELS = ("reference", "splitk", "native", "triton")
# Bump whenever a kernel's code changes in a way that can change its speed: it is part of the tuning
# cache key, so winners timed against older kernel code are not reused.
KERNEL_REVISION = 2
SPLIT_K_VALUES = (1, 2, 4, 8, 16, 32)
TUNABLE_KERNELS = ("native", "splitk", "triton")  # reference is the oracle, not a candidate
# Inputs with at most this many rows are "decode-like": the untuned default sends them to the native
# op when it is available (dequantizing a whole weight for one row costs far more than the product).
AUTO_NATIVE_MAX_M = 16

TOLERANCES: dict[torch.dtype, float] = {torch.float32: 5e-5, torch.bfloat16: 1e-2, torch.float16: 2.5e-3}
"""Per-dtype base of :func:`tolerance`."""


def tolerance(dtype: torch.dtype, split_k: int = 1) -> float:
    """Allowed ``max |out - reference| / max |reference|`` for a kernel (see the module doc)."""
    return TOLERANCES.get(dtype, TOLERANCES[torch.float16]) * (1.0 + math.sqrt(split_k))


class KernelUnavailableError(TokbenchError):
    """A kernel was asked for a layer, device or dtype it cannot run (the message says why)."""


DEFAULT_PREFILL_CHOICE = KernelChoice("splitk", 1)


def simplicity_rank(choice: KernelChoice) -> tuple[int, int]:
    """Lower is simpler; near-ties go to the simpler candidate.

    native (one library call, no scratch) < splitk by increasing split_k (fewer, bigger matmuls and no
    partial sums first) < triton by increasing split_k (custom code, atomics) < reference (the oracle).
    """
    order = {"native": 0, "splitk": 1, "triton": 2, "reference": 3}
    return order.get(choice.kernel, 4), choice.split_k


def group_bounds(num_groups: int, split_k: int) -> list[tuple[int, int]]:
    """Block ``i`` covers groups ``[i * G // split_k, (i + 1) * G // split_k)``: every block non-empty."""
    return [(i * num_groups // split_k, (i + 1) * num_groups // split_k) for i in range(split_k)]


def _triton_problem(device: torch.device, dtype: torch.dtype) -> str | None:
    if device.type != "cuda":
        return "the Triton kernel runs on CUDA devices only"
    if dtype not in (torch.float16, torch.bfloat16):
        return f"the Triton kernel takes float16/bfloat16 activations, not {dtype}"
    if not torch.cuda.is_available():
        return "CUDA is not available"
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 0):
        # bf16 tl.dot (and the kernel's tiling) needs Ampere or newer.
        return f"the Triton kernel needs compute capability >= 8.0, this GPU has {capability[0]}.{capability[1]}"
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    return None


def unavailable_reason(
    layer: QuantizedLinear, choice: KernelChoice, device: torch.device, dtype: torch.dtype
) -> str | None:
    """Why ``choice`` cannot run ``layer`` on ``device`` with ``dtype`` activations, or None if it can."""
    if choice.kernel not in KERNELS:
        return f"unknown kernel {choice.kernel!r} (known: {', '.join(KERNELS)})"
    if choice.kernel in ("splitk", "triton"):
        if not 1 <= choice.split_k <= layer.num_groups:
            return f"split_k={choice.split_k} needs 1..{layer.num_groups} (the layer's number of groups)"
    elif choice.split_k != 1:
        return f"kernel {choice.kernel!r} has no split_k"
    if choice.kernel == "native":
        status = layer.runtime.native_availability(device, dtype)
        if not status.available:
            return status.reason
        return native_ops.shape_problem(device.type, layer.in_features_padded, layer.out_features, layer.group_size)
    if choice.kernel == "triton":
        return _triton_problem(device, dtype)
    return None


def check_choice(layer: QuantizedLinear, choice: KernelChoice, device: torch.device | None = None) -> None:
    device = device if device is not None else layer.qweight.device
    reason = unavailable_reason(layer, choice, device, layer.compute_dtype)
    if reason is not None:
        raise KernelUnavailableError(f"{choice.label} cannot run this layer: {reason}")


def candidate_choices(
    layer: QuantizedLinear,
    device: torch.device,
    dtype: torch.dtype,
    kernels: tuple[str, ...] = TUNABLE_KERNELS,
) -> list[KernelChoice]:
    """Every valid (kernel, split_k) for this layer, simplest first."""
    choices: list[KernelChoice] = []
    for kernel in kernels:
        split_ks = SPLIT_K_VALUES if kernel in ("splitk", "triton") else (1,)
        for split_k in split_ks:
            choice = KernelChoice(kernel, split_k)
            if unavailable_reason(layer, choice, device, dtype) is None:
                choices.append(choice)
    return sorted(choices, key=simplicity_rank)


def default_choice(layer: QuantizedLinear, m: int, device: torch.device, dtype: torch.dtype) -> KernelChoice:
    """The untuned choice (``kernel="auto"``), also the baseline a tuner's speedup is measured against."""
    native = KernelChoice("native")
    if m <= AUTO_NATIVE_MAX_M and unavailable_reason(layer, native, device, dtype) is None:
        return native
    return DEFAULT_PREFILL_CHOICE


def prepare_for(layer: QuantizedLinear, device: torch.device, dtype: torch.dtype) -> None:
    """Build derived tensors the layer's likely kernels need now (quantize/selection time), not mid-run."""
    if unavailable_reason(layer, KernelChoice("native"), device, dtype) is None:
        _native_weight(layer, dtype)


def prepare_choice(layer: QuantizedLinear, choice: KernelChoice, dtype: torch.dtype) -> None:
    """Build what ``choice`` needs for this layer now, so the first timed forward does not pay for it."""
    device = layer.qweight.device
    if choice.kernel == "native":
        _native_weight(layer, dtype)
    elif choice.kernel == "splitk":
        _compute_scales(layer, device, dtype)
        _zeros_int8(layer, device)
    elif choice.kernel == "triton":
        _compute_scales(layer, device, torch.float32)


# --- reference ---------------------------------------------------------------------------------------


def reference_matmul(layer: QuantizedLinear, x2d: torch.Tensor) -> torch.Tensor:
    weight = dequantize(layer.qweight, layer.scales, layer.zeros, layer.group_size, layer.in_features)
    return (x2d.to(torch.float32) @ weight.t()).to(x2d.dtype)


# --- split-K (PyTorch) -------------------------------------------------------------------------------

_LITTLE_ENDIAN = sys.byteorder == "little"


def _compute_scales(layer: QuantizedLinear, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return layer.derived(("scales", str(device), dtype), lambda: layer.scales.to(device=device, dtype=dtype))


def _zeros_int8(layer: QuantizedLinear, device: torch.device) -> torch.Tensor:
    return layer.derived(("zeros_i8", str(device)), lambda: layer.zeros.to(device=device, dtype=torch.int8))


def dequantize_groups_into(
    layer: QuantizedLinear, first_group: int, last_group: int, dtype: torch.dtype, reuse: bool = True
) -> torch.Tensor:
    """Groups ``[first_group, last_group)`` of the weight as ``[N, groups * group_size]`` in ``dtype``.

    With ``reuse`` the result is a view of the runtime's scratch buffer, valid until the next call;
    without, a fresh tensor (needed when autograd saves it for the backward pass).
    """
    device = layer.qweight.device
    n, groups, words = layer.out_features, last_group - first_group, layer.group_size // PACK_FACTOR
    numel = n * groups * layer.group_size
    if _LITTLE_ENDIAN:
        # Byte j of a group holds elements j (low nibble) and j + g/2 (high nibble), see the int4
        # module doc: two contiguous uint8 ops unpack a whole block (a quarter of int32's traffic).
        half = layer.group_size // 2
        as_bytes = layer.qweight.view(torch.uint8).view(n, layer.num_groups, half)[:, first_group:last_group]
        nibbles = layer.runtime.scratch(device, torch.uint8, numel, 0).view(n, groups, 2, half)
        torch.bitwise_and(as_bytes, 15, out=nibbles[:, :, 0, :])
        torch.bitwise_right_shift(as_bytes, 4, out=nibbles[:, :, 1, :])
        ints = nibbles.view(torch.int8).view(n, groups, layer.group_size)
    else:  # pragma: no cover - big-endian hosts: the generic (slower) unpack gives the same values
        packed = layer.qweight.view(n, layer.num_groups * words)[:, first_group * words : last_group * words]
        ints = unpack_int4(packed.contiguous(), layer.group_size).view(n, groups, layer.group_size)
        ints = ints.to(torch.int8)
    # q - z in int8 is exact (-15..15), so the only rounding left is that of (q - z) * s.
    ints.sub_(_zeros_int8(layer, device)[:, first_group:last_group, None])
    buffer = layer.runtime.scratch(device, dtype, numel, 1) if reuse else torch.empty(numel, dtype=dtype, device=device)
    weight = buffer.view(n, groups, layer.group_size)
    weight.copy_(ints)
    weight.mul_(_compute_scales(layer, device, dtype)[:, first_group:last_group, None])
    return weight.view(n, groups * layer.group_size)


def splitk_matmul(layer: QuantizedLinear, x2d: torch.Tensor, split_k: int) -> torch.Tensor:
    # If autograd will save each block's weight for backward, blocks cannot share the scratch.
    reuse = not (torch.is_grad_enabled() and x2d.requires_grad)
    out: torch.Tensor | None = None
    for first, last in group_bounds(layer.num_groups, split_k):
        weight = dequantize_groups_into(layer, first, last, x2d.dtype, reuse)
        k_start = first * layer.group_size
        k_stop = min(last * layer.group_size, layer.in_features)
        if k_stop - k_start != weight.shape[1]:  # the last block of a padded layer
            weight = weight[:, : k_stop - k_start]
        block = x2d[:, k_start:k_stop]
        if out is None:
            out = torch.matmul(block, weight.t())
        else:
            out.addmm_(block, weight.t())
    assert out is not None
    return out


# --- native ------------------------------------------------------------------------------------------


def _native_weight(layer: QuantizedLinear, dtype: torch.dtype) -> native_ops.NativeWeight:
    device = layer.qweight.device

    def build() -> native_ops.NativeWeight:
        q = unpack_int4(layer.qweight, layer.group_size)
        return native_ops.prepare_native_weight(q, layer.scales, layer.zeros, layer.group_size, dtype)

    return layer.derived(("native", str(device), dtype), build)


def native_matmul(layer: QuantizedLinear, x2d: torch.Tensor) -> torch.Tensor:
    return native_ops.native_matmul(x2d, _native_weight(layer, x2d.dtype))


# --- dispatch ----------------------------------------------------------------------------------------

MatmulFn = Callable[[torch.Tensor], torch.Tensor]


def bind_kernel(layer: QuantizedLinear, choice: KernelChoice, device: torch.device, dtype: torch.dtype) -> MatmulFn:
    """``x2d -> x2d @ W.T`` for ``choice`` with everything resolvable ahead of time resolved now.

    Checks validity and builds derived tensors once, so a forward pass only calls the returned function
    (QuantizedLinear keeps one per (M, device, dtype)). Raises KernelUnavailableError for invalid choices.
    """
    if choice.kernel == "splitk":
        if not 1 <= choice.split_k <= layer.num_groups:
            raise KernelUnavailableError(f"split_k={choice.split_k} needs 1..{layer.num_groups} for this layer")
        return functools.partial(splitk_matmul, layer, split_k=choice.split_k)
    if choice.kernel == "native":
        try:
            weight = _native_weight(layer, dtype)
        except native_ops.NativeInt4Error as error:
            raise KernelUnavailableError(f"native cannot run this layer: {error}") from error
        return functools.partial(native_ops.native_matmul, weight=weight)
    if choice.kernel == "reference":
        return functools.partial(reference_matmul, layer)
    if choice.kernel == "triton":
        reason = unavailable_reason(layer, choice, device, dtype)
        if reason is not None:
            raise KernelUnavailableError(f"{choice.label} cannot run this layer: {reason}")
        from tokbench.quant import triton_kernels  # imported only when triton and CUDA are present

        return functools.partial(
            _triton_call,
            triton_kernels.int4_splitk_matmul,
            layer,
            _compute_scales(layer, device, torch.float32),
            choice.split_k,
        )
    raise KernelUnavailableError(f"unknown kernel {choice.kernel!r} (known: {', '.join(KERNELS)})")


def _triton_call(
    kernel: Callable[..., torch.Tensor], layer: QuantizedLinear, scales: torch.Tensor, split_k: int, x2d: torch.Tensor
) -> torch.Tensor:
    return kernel(
        x2d,
        layer.qweight,
        scales,
        layer.zeros,
        group_size=layer.group_size,
        in_features=layer.in_features,
        split_k=split_k,
    )


def run_kernel(layer: QuantizedLinear, x2d: torch.Tensor, choice: KernelChoice) -> torch.Tensor:
    """``x2d [M, in] @ W.T`` with ``choice`` (no bias). Raises KernelUnavailableError for invalid choices."""
    return bind_kernel(layer, choice, x2d.device, x2d.dtype)(x2d)
