"""Int4 packing and group-wise quantization of plain tensors: the math both the layer (``int4``) and
its kernels (``kernels``) build on, kept apart so neither imports the other's module to get it.

Layout: see :mod:`tokbench.quant.int4`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from tokbench.errors import TokbenchError

SUPPORTED_GROUP_SIZES = (32, 64, 128, 256)
PACK_FACTOR = 8  # int4 values per int32 word
_QMAX = 15


class QuantizationError(TokbenchError, ValueError):
    """A model or weight cannot be quantized as asked (bad group size, non-finite weights...)."""


def check_group_size(group_size: int) -> None:
    if group_size not in SUPPORTED_GROUP_SIZES:
        raise QuantizationError(f"group_size={group_size} is not supported. Fix: use one of {SUPPORTED_GROUP_SIZES}")


def padded_in_features(in_features: int, group_size: int) -> int:
    return math.ceil(in_features / group_size) * group_size


def _nibble_shifts(device: torch.device) -> torch.Tensor:
    """Bit offset of (half h, byte b) in a word: ``[2, 1, 4]`` broadcast against ``[.., 2, words, 4]``."""
    half = torch.arange(2, dtype=torch.int32, device=device).view(2, 1, 1) * 4
    byte = torch.arange(4, dtype=torch.int32, device=device).view(1, 1, 4) * 8
    return half + byte


def pack_int4(q: torch.Tensor, group_size: int) -> torch.Tensor:
    """Pack int values 0..15 ``[N, K_pad]`` into int32 ``[N, K_pad / 8]`` (layout in the module doc)."""
    check_group_size(group_size)
    out_features, in_padded = q.shape
    if in_padded % group_size:
        raise QuantizationError(f"packed width {in_padded} is not a multiple of group_size={group_size}")
    if q.numel() and (int(q.min()) < 0 or int(q.max()) > _QMAX):
        raise QuantizationError("int4 values must lie in 0..15")
    words = group_size // PACK_FACTOR
    # [N, G, half, word, byte]: element h * g/2 + 4 * w + b of each group.
    grouped = q.to(torch.int64).view(out_features, in_padded // group_size, 2, words, 4)
    shifts = _nibble_shifts(q.device).to(torch.int64)
    packed = (grouped << shifts).sum(dim=(2, 4))
    # Values are < 2**32; wrap the top half into int32's negative range (same bits).
    packed = torch.where(packed >= 2**31, packed - 2**32, packed)
    return packed.to(torch.int32).view(out_features, in_padded // PACK_FACTOR)


def unpack_int4(packed: torch.Tensor, group_size: int) -> torch.Tensor:
    """Inverse of :func:`pack_int4`: int32 ``[N, K_pad / 8]`` to int32 values 0..15 ``[N, K_pad]``."""
    out_features, packed_width = packed.shape
    words = group_size // PACK_FACTOR
    groups = packed_width // words
    # Arithmetic shift sign-extends negative words; the mask drops those bits.
    values = (packed.view(out_features, groups, 1, words, 1) >> _nibble_shifts(packed.device)) & _QMAX
    return values.reshape(out_features, groups * group_size)


@dataclass(frozen=True)
class QuantizedWeight:
    """Unpacked result of quantizing one weight (internal hand-off; tensors, so no to_dict)."""

    q: torch.Tensor  # int32 [N, K_pad], 0..15
    scales: torch.Tensor  # float32 [N, G]
    zeros: torch.Tensor  # uint8 [N, G]
    in_features: int
    group_size: int


def quantize_weight(weight: torch.Tensor, group_size: int = 128) -> QuantizedWeight:
    """Quantize a ``[N, K]`` weight group-wise along K (asymmetric, zero always in range)."""
    check_group_size(group_size)
    if weight.dim() != 2:
        raise QuantizationError(f"expected a 2-D weight, got shape {tuple(weight.shape)}")
    w = weight.detach().to(torch.float32)
    if not bool(torch.isfinite(w).all()):
        raise QuantizationError("the weight has NaN or infinite values; int4 cannot represent them")
    out_features, in_features = w.shape
    in_padded = padded_in_features(in_features, group_size)
    if in_padded != in_features:
        w = torch.nn.functional.pad(w, (0, in_padded - in_features))
    grouped = w.view(out_features, in_padded // group_size, group_size)
    low = grouped.amin(dim=-1).clamp(max=0.0)
    high = grouped.amax(dim=-1).clamp(min=0.0)
    scales = (high - low) / _QMAX
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))
    zeros = torch.round(-low / scales).clamp(0, _QMAX)
    q = torch.round(grouped / scales.unsqueeze(-1)) + zeros.unsqueeze(-1)
    q = q.clamp(0, _QMAX).to(torch.int32).view(out_features, in_padded)
    return QuantizedWeight(q, scales.contiguous(), zeros.to(torch.uint8).contiguous(), in_features, group_size)


def dequantize(
    packed: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    group_size: int,
    in_features: int,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The full ``[N, in_features]`` weight ``(q - z) * s`` computed in float32 (the oracle's weight)."""
    q = unpack_int4(packed, group_size)
    out_features, in_padded = q.shape
    grouped = q.view(out_features, in_padded // group_size, group_size).to(torch.float32)
    weight = (grouped - zeros.to(torch.float32).unsqueeze(-1)) * scales.to(torch.float32).unsqueeze(-1)
    return weight.view(out_features, in_padded)[:, :in_features].to(dtype)
