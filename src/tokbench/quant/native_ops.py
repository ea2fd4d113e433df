"""The one adapter for torch's private int4 weight-only matmul ops.

These ``aten`` ops are private and have changed signature between torch releases (the CUDA packer took
an int32 ``[N, K]`` tensor before 2.5 and a uint8 ``[N, K/2]`` one since; the CPU variants appeared in
2.6), so every use of them lives here, behind a version check and a smoke test. Everything else in
tokbench talks to :func:`prepare_native_weight` and :func:`native_matmul` only.

Convention of the ops (checked by :func:`smoke_test` and the tests against the reference kernel):
``qScaleAndZeros`` is ``[K / group, N, 2]`` holding ``(scale, zero)`` and a weight dequantizes as
``W = (q - 8) * scale + zero`` -- a float offset, not an integer zero point. tokbench stores
``W = (q - z) * s``, so ``zero = (8 - z) * s`` is computed once when the packed copy is prepared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch.torch_version import TorchVersion

from tokbench.errors import TokbenchError
from tokbench.schema.quant import NativeAvailability

# The CPU ops (`*_for_cpu`) first shipped in 2.6; the uint8 form of the CUDA packer in 2.5.
_MIN_TORCH_CPU = (2, 6)
_MIN_TORCH_CUDA = (2, 5)
# Same tested range on both sides: newer majors may change the ops again, so they must pass the smoke
# test before they are trusted (they are still tried, the smoke test is the real gate).
_TESTED_TORCH_BELOW = (3, 0)
# CUDA kernel tiling parameter; 8 is what torchao uses for bf16 weight-only int4 on Ampere and newer.
_CUDA_INNER_K_TILES = 8


class NativeInt4Error(TokbenchError):
    """The native int4 op cannot run this layer on this device (the message says why)."""


@dataclass(frozen=True)
class NativeWeight:
    """The op-specific packed copy of one layer's weight, prepared once (not per forward)."""

    packed: torch.Tensor
    scales_and_zeros: torch.Tensor
    group_size: int
    in_features_padded: int
    out_features: int
    # The device's matmul op, looked up once at prepare time (an attribute lookup on torch.ops costs
    # about a microsecond, a lot next to a decode-sized product). None: looked up per call.
    matmul_op: Any = None

    @property
    def nbytes(self) -> int:
        return self.packed.numel() * self.packed.element_size() + (
            self.scales_and_zeros.numel() * self.scales_and_zeros.element_size()
        )


def _ops_for(device_type: str) -> tuple[Any, Any] | None:
    aten = torch.ops.aten
    if device_type == "cpu":
        names = ("_convert_weight_to_int4pack_for_cpu", "_weight_int4pack_mm_for_cpu")
    elif device_type == "cuda":
        names = ("_convert_weight_to_int4pack", "_weight_int4pack_mm")
    else:
        return None
    try:
        return getattr(aten, names[0]), getattr(aten, names[1])
    except (AttributeError, RuntimeError):
        return None


def version_problem(device_type: str, version: str | None = None) -> str | None:
    """Why this torch version cannot be used for ``device_type``, or None when it can be tried."""
    current = TorchVersion(version if version is not None else torch.__version__)
    if device_type == "cpu":
        minimum = _MIN_TORCH_CPU
    elif device_type == "cuda":
        minimum = _MIN_TORCH_CUDA
    else:
        return f"no native int4 op for device type {device_type!r}"
    if current < minimum:
        return f"torch {current} is older than {'.'.join(map(str, minimum))}, whose int4 op signature we use"
    return None


def shape_problem(device_type: str, in_features_padded: int, out_features: int, group_size: int) -> str | None:
    """Why the op cannot take a layer of this shape, or None when it can."""
    if device_type == "cpu":
        if out_features % 16:
            return f"out_features={out_features} is not a multiple of 16 (required by the CPU int4 packer)"
        return None
    if device_type == "cuda":
        if out_features % 8:
            return f"out_features={out_features} is not a multiple of 8 (required by the CUDA int4 packer)"
        if in_features_padded % (_CUDA_INNER_K_TILES * 16):
            return f"in_features={in_features_padded} is not a multiple of {_CUDA_INNER_K_TILES * 16}"
        if group_size not in (32, 64, 128, 256):
            return f"group_size={group_size} is not one of 32/64/128/256"
        return None
    return f"no native int4 op for device type {device_type!r}"


def dtype_problem(device_type: str, dtype: torch.dtype) -> str | None:
    if device_type == "cuda" and dtype != torch.bfloat16:
        return f"the CUDA int4 op takes bfloat16 activations only, not {dtype}"
    if device_type == "cpu" and dtype not in (torch.float32, torch.bfloat16, torch.float16):
        return f"the CPU int4 op does not take {dtype}"
    return None


def prepare_native_weight(
    q: torch.Tensor, scales: torch.Tensor, zeros: torch.Tensor, group_size: int, dtype: torch.dtype
) -> NativeWeight:
    """Pack unpacked int4 values for the device's op.

    ``q`` is int32 ``[N, K_padded]`` with values 0..15 on the target device; ``scales`` (float) and
    ``zeros`` (integer zero points) are ``[N, K_padded / group_size]``; ``dtype`` is the activation dtype.
    """
    device_type = q.device.type
    problem = version_problem(device_type) or dtype_problem(device_type, dtype)
    out_features, in_features_padded = q.shape
    problem = problem or shape_problem(device_type, in_features_padded, out_features, group_size)
    ops = _ops_for(device_type)
    if problem is None and ops is None:
        problem = f"this torch build has no int4 weight-only matmul op for {device_type}"
    if problem is not None:
        raise NativeInt4Error(problem)
    assert ops is not None
    convert, matmul = ops
    scales32 = scales.to(torch.float32)
    # W = (q - z) * s  ==  (q - 8) * s + (8 - z) * s: the op's float "zero" is (8 - z) * s.
    zero_offset = (8.0 - zeros.to(torch.float32)) * scales32
    scales_and_zeros = torch.stack([scales32.t(), zero_offset.t()], dim=-1).to(dtype).contiguous()
    if device_type == "cpu":
        packed = convert(q.to(torch.int32).contiguous(), 1)  # innerKTiles is ignored by the CPU packer
    else:
        # Since torch 2.5 the CUDA packer takes two values per byte, the even-k value in the high nibble.
        q_u8 = q.to(torch.uint8)
        two_per_byte = ((q_u8[:, ::2] << 4) | q_u8[:, 1::2]).contiguous()
        packed = convert(two_per_byte, _CUDA_INNER_K_TILES)
    return NativeWeight(packed, scales_and_zeros, group_size, in_features_padded, out_features, matmul)


def native_matmul(x2d: torch.Tensor, weight: NativeWeight) -> torch.Tensor:
    """``x2d [M, K] @ W.T`` with the prepared native weight; pads K with zeros when the layer was padded."""
    matmul = weight.matmul_op
    if matmul is None:
        ops = _ops_for(x2d.device.type)
        if ops is None:
            raise NativeInt4Error(f"no native int4 op for device type {x2d.device.type!r}")
        _, matmul = ops
    if x2d.shape[1] != weight.in_features_padded:
        # Padded weight columns are zero-valued inputs' partners; zeros keep the product exact.
        x2d = torch.nn.functional.pad(x2d, (0, weight.in_features_padded - x2d.shape[1]))
    return matmul(x2d.contiguous(), weight.packed, weight.group_size, weight.scales_and_zeros)


def smoke_test(device: torch.device | str, dtype: torch.dtype | None = None) -> NativeAvailability:
    """Run a tiny matmul through the native op and compare it with a float32 dequantize-then-matmul.

    Unavailable is a reason, not a crash: any failure (missing op, changed signature, wrong numbers) is
    caught and returned as ``available=False`` with the reason.
    """
    device = torch.device(device)
    device_type = device.type
    if dtype is None:
        dtype = torch.bfloat16 if device_type == "cuda" else torch.float32
    problem = version_problem(device_type) or dtype_problem(device_type, dtype)
    if problem is None and _ops_for(device_type) is None:
        problem = f"this torch build has no int4 weight-only matmul op for {device_type}"
    if problem is not None:
        return NativeAvailability(device_type, False, problem, torch.__version__)
    out_features, in_features, group_size = 32, 256, 64
    generator = torch.Generator(device="cpu").manual_seed(1234)
    q = torch.randint(0, 16, (out_features, in_features), generator=generator, dtype=torch.int32)
    groups = in_features // group_size
    scales = torch.rand(out_features, groups, generator=generator) * 0.05 + 0.01
    zeros = torch.randint(0, 16, (out_features, groups), generator=generator, dtype=torch.int32)
    x = torch.randn(3, in_features, generator=generator)
    weight = (q - zeros.repeat_interleave(group_size, 1)).float() * scales.repeat_interleave(group_size, 1)
    expected = x @ weight.t()
    try:
        prepared = prepare_native_weight(q.to(device), scales.to(device), zeros.to(device), group_size, dtype)
        got = native_matmul(x.to(device=device, dtype=dtype), prepared).float().cpu()
    except (RuntimeError, TypeError, ValueError, NativeInt4Error) as error:
        return NativeAvailability(device_type, False, f"native op failed: {error}", torch.__version__)
    # Loose on purpose: this checks the layout convention (a wrong one is off by ~100%), not precision.
    error = (got - expected).abs().max().item() / max(expected.abs().max().item(), 1e-6)
    if not error < 0.05:
        return NativeAvailability(
            device_type, False, f"native op gives wrong results (max rel error {error:.3g})", torch.__version__
        )
    if version_problem(device_type) is None and TorchVersion(torch.__version__) >= _TESTED_TORCH_BELOW:
        return NativeAvailability(
            device_type, True, "ok (untested torch major, but the smoke test passed)", torch.__version__
        )
    return NativeAvailability(device_type, True, "ok", torch.__version__)
