"""Triton split-K int4 GEMM: ``out[M, N] = x[M, K] @ ((q - z) * s).T`` dequantizing inside the kernel.

Imported lazily by :mod:`tokbench.quant.kernels` only when CUDA and triton are present (this module
imports triton at the top on purpose, so importing it anywhere else fails loudly).

Grid: ``(cdiv(M, BLOCK_M) * cdiv(N, BLOCK_N), SPLIT_K)``. Program ``(tile, s)`` walks the groups
``[s * G // SPLIT_K, (s + 1) * G // SPLIT_K)`` (the same partition as the PyTorch split-K kernel),
one whole group per iteration so each iteration needs one scale and one zero per output column, and
accumulates in float32. With ``SPLIT_K == 1`` it stores its tile; otherwise the partial tiles are
added into a zeroed float32 buffer with atomics (order of additions varies run to run: results are
reproducible only to float32 rounding). The buffer is cast to the activation dtype at the end.

Packing (see :mod:`tokbench.quant.int4`): within a group, element ``h * g / 2 + 4 * w + b`` sits at
bit ``8 * b + 4 * h`` of word ``w``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _int4_splitk_kernel(
    x_ptr,
    qweight_ptr,
    scales_ptr,
    zeros_ptr,
    out_ptr,
    M,
    N,
    K,
    G,
    stride_xm,
    stride_xk,
    stride_qn,
    stride_sn,
    stride_zn,
    stride_om,
    GROUP_SIZE: tl.constexpr,
    SPLIT_K: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    WORDS: tl.constexpr = GROUP_SIZE // 8
    tile = tl.program_id(0)
    split = tl.program_id(1)
    tiles_n = tl.cdiv(N, BLOCK_N)
    tile_m = tile // tiles_n
    tile_n = tile % tiles_n

    offs_m = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = tile_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_e = tl.arange(0, GROUP_SIZE)
    # Element e of a group is nibble h = e // (g/2) of byte r % 4 of word r // 4, with r = e % (g/2).
    HALF: tl.constexpr = GROUP_SIZE // 2
    within_half = offs_e % HALF
    word = within_half // 4
    shift = (within_half % 4) * 8 + (offs_e // HALF) * 4
    m_mask = offs_m < M
    n_mask = offs_n < N

    first_group = split * G // SPLIT_K
    last_group = (split + 1) * G // SPLIT_K
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for group in range(first_group, last_group):
        k = group * GROUP_SIZE + offs_e
        x = tl.load(
            x_ptr + offs_m[:, None] * stride_xm + k[None, :] * stride_xk,
            mask=m_mask[:, None] & (k[None, :] < K),  # padded K columns read as 0
            other=0.0,
        )
        words = tl.load(
            qweight_ptr + offs_n[None, :] * stride_qn + (group * WORDS + word)[:, None],
            mask=n_mask[None, :],
            other=0,
        )  # [GROUP_SIZE, BLOCK_N]; each word is loaded 8 times, served from cache
        q = (words >> shift[:, None]) & 0xF  # arithmetic shift; the mask drops sign bits
        scale = tl.load(scales_ptr + offs_n * stride_sn + group, mask=n_mask, other=0.0)
        zero = tl.load(zeros_ptr + offs_n * stride_zn + group, mask=n_mask, other=0).to(tl.int32)
        weight = ((q - zero[None, :]).to(tl.float32) * scale[None, :]).to(x.dtype)
        acc += tl.dot(x, weight)

    out_ptrs = out_ptr + offs_m[:, None] * stride_om + offs_n[None, :]
    out_mask = m_mask[:, None] & n_mask[None, :]
    if SPLIT_K == 1:
        tl.store(out_ptrs, acc, mask=out_mask)
    else:
        tl.atomic_add(out_ptrs, acc, mask=out_mask)


def _block_m(m: int) -> int:
    # tl.dot needs at least 16 rows; decode (M = batch) wastes the rest of a 16-row tile.
    if m <= 16:
        return 16
    if m <= 32:
        return 32
    return 64


def int4_splitk_matmul(
    x2d: torch.Tensor,
    qweight: torch.Tensor,
    scales: torch.Tensor,
    zeros: torch.Tensor,
    *,
    group_size: int,
    in_features: int,
    split_k: int,
    block_n: int = 64,
) -> torch.Tensor:
    """``x2d [M, in_features] @ W.T`` for a packed int4 weight; returns ``[M, N]`` in ``x2d.dtype``."""
    m = x2d.shape[0]
    n, packed_width = qweight.shape
    groups = packed_width * 8 // group_size
    if not 1 <= split_k <= groups:
        raise ValueError(f"split_k={split_k} needs 1..{groups}")
    x2d = x2d.contiguous()
    scales = scales.to(torch.float32).contiguous()
    zeros = zeros.contiguous()
    # Atomics need a zeroed buffer; with one split the kernel overwrites every element it owns.
    alloc = torch.zeros if split_k > 1 else torch.empty
    out = alloc((m, n), dtype=torch.float32, device=x2d.device)
    block_m = _block_m(m)
    grid = (triton.cdiv(m, block_m) * triton.cdiv(n, block_n), split_k)
    _int4_splitk_kernel[grid](
        x2d,
        qweight,
        scales,
        zeros,
        out,
        m,
        n,
        in_features,
        groups,
        x2d.stride(0),
        x2d.stride(1),
        qweight.stride(0),
        scales.stride(0),
        zeros.stride(0),
        out.stride(0),
        GROUP_SIZE=group_size,
        SPLIT_K=split_k,
        BLOCK_M=block_m,
        BLOCK_N=block_n,
    )
    return out.to(x2d.dtype)
