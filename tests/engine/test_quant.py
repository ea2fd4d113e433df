"""Int4 quantization, packing, kernels and the native-op adapter."""

from __future__ import annotations

import copy
import importlib.util
import math

import pytest
import torch
from torch import nn

from tokbench.errors import TokbenchError
from tokbench.quant import (
    Int4Runtime,
    KernelChoice,
    KernelUnavailableError,
    QuantizationError,
    QuantizationReport,
    QuantizedLinear,
    candidate_choices,
    dequantize,
    native_ops,
    pack_int4,
    quantize_model,
    quantize_weight,
    run_kernel,
    tolerance,
    unpack_int4,
)
from tokbench.quant import kernels as kernels_module

CPU = torch.device("cpu")


def _relative_error(got: torch.Tensor, expected: torch.Tensor) -> float:
    """Max abs difference as a fraction of the expected output's magnitude (the tolerance metric)."""
    scale = expected.float().abs().max().item()
    diff = (got.float() - expected.float()).abs().max().item()
    return diff / scale if scale > 0 else diff


def _layer(in_features: int, out_features: int, group_size: int, dtype: torch.dtype, seed: int = 0) -> QuantizedLinear:
    torch.manual_seed(seed)
    linear = nn.Linear(in_features, out_features, bias=False).to(dtype)
    return QuantizedLinear.from_linear(linear, group_size)


# --- packing and quantization -------------------------------------------------------------------------


@pytest.mark.parametrize("group_size", [32, 64, 128, 256])
def test_pack_unpack_roundtrip_and_layout(group_size: int) -> None:
    generator = torch.Generator().manual_seed(group_size)
    q = torch.randint(0, 16, (5, 2 * group_size), generator=generator, dtype=torch.int32)
    packed = pack_int4(q, group_size)
    assert packed.dtype == torch.int32 and packed.shape == (5, 2 * group_size // 8)
    assert torch.equal(unpack_int4(packed, group_size), q)
    # Documented layout: element h * g/2 + 4w + b of a group sits at bit 8b + 4h of word w, i.e. byte j
    # of a group holds elements j (low nibble) and j + g/2 (high nibble).
    words = group_size // 8
    word = int(packed[3, words + 1].item()) & 0xFFFFFFFF
    for byte in range(4):
        for half in range(2):
            expected = int(q[3, group_size + half * group_size // 2 + 4 * 1 + byte])
            assert (word >> (8 * byte + 4 * half)) & 0xF == expected
    as_bytes = packed.view(torch.uint8).view(5, 2, group_size // 2)
    assert torch.equal((as_bytes[1, 1] & 15).int(), q[1, group_size : group_size + group_size // 2])
    assert torch.equal((as_bytes[1, 1] >> 4).int(), q[1, group_size + group_size // 2 :])


def test_pack_rejects_out_of_range_values() -> None:
    with pytest.raises(QuantizationError):
        pack_int4(torch.full((2, 32), 16, dtype=torch.int32), 32)


def test_quantization_error_is_at_most_half_a_step() -> None:
    weight = torch.randn(64, 512, generator=torch.Generator().manual_seed(0))
    quantized = quantize_weight(weight, 128)
    restored = dequantize(pack_int4(quantized.q, 128), quantized.scales, quantized.zeros, 128, 512)
    step = quantized.scales.repeat_interleave(128, dim=1)
    assert bool(((restored - weight).abs() <= step / 2 + 1e-6).all())


def test_constant_zero_and_huge_rows_are_exact_or_bounded() -> None:
    weight = torch.randn(4, 256, generator=torch.Generator().manual_seed(1))
    weight[0] = 0.0  # all-zero: scale would be 0
    weight[1] = 3.25  # constant positive: max == min
    weight[2] = -7.5  # constant negative
    weight[3] *= 1e4  # huge magnitude
    quantized = quantize_weight(weight, 64)
    assert bool(torch.isfinite(quantized.scales).all()) and bool((quantized.scales > 0).all())
    restored = dequantize(pack_int4(quantized.q, 64), quantized.scales, quantized.zeros, 64, 256)
    assert torch.equal(restored[0], torch.zeros(256))
    torch.testing.assert_close(restored[1], weight[1], rtol=1e-6, atol=0)
    torch.testing.assert_close(restored[2], weight[2], rtol=1e-6, atol=0)
    step = quantized.scales[3].repeat_interleave(64)
    assert bool(((restored[3] - weight[3]).abs() <= step / 2 * (1 + 1e-5)).all())


def test_ragged_in_features_are_padded_with_exact_zeros() -> None:
    weight = torch.randn(8, 100, generator=torch.Generator().manual_seed(2))
    quantized = quantize_weight(weight, 32)
    assert quantized.q.shape == (8, 128)
    restored = dequantize(pack_int4(quantized.q, 32), quantized.scales, quantized.zeros, 32, 128)
    assert torch.equal(restored[:, 100:], torch.zeros(8, 28))


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_weights_are_rejected(bad: float) -> None:
    weight = torch.zeros(4, 64)
    weight[1, 3] = bad
    with pytest.raises(QuantizationError, match="NaN or infinite"):
        quantize_weight(weight, 32)


def test_unsupported_group_size_is_rejected() -> None:
    with pytest.raises(QuantizationError, match="group_size"):
        QuantizedLinear(64, 64, group_size=48)
    assert issubclass(QuantizationError, TokbenchError)


# --- kernels against the reference --------------------------------------------------------------------

# (in_features, out_features, group_size): one group; ragged K (688 = 5.375 groups); N not a multiple
# of 8 (native excluded, others fine); groups not divisible by most split_k; many small groups.
SHAPES = [(128, 64, 128), (688, 256, 128), (384, 20, 64), (640, 48, 128), (1024, 32, 32)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize(("in_features", "out_features", "group_size"), SHAPES)
@pytest.mark.parametrize("m", [1, 37])
def test_every_kernel_matches_the_reference(
    dtype: torch.dtype, in_features: int, out_features: int, group_size: int, m: int
) -> None:
    layer = _layer(in_features, out_features, group_size, dtype)
    x = torch.randn(m, in_features, generator=torch.Generator().manual_seed(m)).to(dtype)
    expected = run_kernel(layer, x, KernelChoice("reference"))
    assert expected.dtype == dtype
    choices = candidate_choices(layer, CPU, dtype)
    assert KernelChoice("splitk", 1) in choices
    assert (KernelChoice("native") in choices) == (out_features % 16 == 0)
    for choice in choices:
        got = run_kernel(layer, x, choice)
        assert got.shape == (m, out_features) and got.dtype == dtype
        error = _relative_error(got, expected)
        assert error <= tolerance(dtype, choice.split_k), (choice.label, error)


def test_large_m_and_huge_rows_and_zero_input() -> None:
    torch.manual_seed(3)
    linear = nn.Linear(512, 64, bias=False)
    with torch.no_grad():
        linear.weight[5] *= 1e4  # one huge row must not swamp the others' accuracy in its own output
        linear.weight[7] = 0.5  # constant row
    layer = QuantizedLinear.from_linear(linear.to(torch.bfloat16), 128)
    x = torch.randn(600, 512).to(torch.bfloat16)
    expected = run_kernel(layer, x, KernelChoice("reference"))
    for choice in candidate_choices(layer, CPU, torch.bfloat16):
        got = run_kernel(layer, x, choice)
        # Judge each output column on its own scale, so the huge row cannot hide errors elsewhere.
        for column in (0, 5, 7):
            error = _relative_error(got[:, column], expected[:, column])
            assert error <= tolerance(torch.bfloat16, choice.split_k), (choice.label, column, error)
        zero_out = run_kernel(layer, torch.zeros(3, 512, dtype=torch.bfloat16), choice)
        assert torch.equal(zero_out, torch.zeros(3, 64, dtype=torch.bfloat16))


def test_quantized_linear_matches_dense_linear_closely() -> None:
    torch.manual_seed(4)
    linear = nn.Linear(256, 96)
    layer = QuantizedLinear.from_linear(linear, 32)
    x = torch.randn(2, 7, 256)
    with torch.no_grad():
        dense, quantized = linear(x), layer(x)
    assert quantized.shape == (2, 7, 96)
    # int4 g32 on a uniform-init weight: ~2-3 % of the output scale; bound with margin.
    assert _relative_error(quantized, dense) < 0.08


def test_split_k_must_fit_the_group_count() -> None:
    layer = _layer(256, 32, 128, torch.float32)  # 2 groups
    assert [c.split_k for c in candidate_choices(layer, CPU, torch.float32) if c.kernel == "splitk"] == [1, 2]
    with pytest.raises(KernelUnavailableError, match="split_k=4"):
        layer.set_choice("splitk", 4)
    with pytest.raises(KernelUnavailableError):
        run_kernel(layer, torch.randn(1, 256), KernelChoice("splitk", 4))
    with pytest.raises(KernelUnavailableError, match="no split_k"):
        layer.set_choice("native", 2)
    with pytest.raises(KernelUnavailableError, match="unknown kernel"):
        run_kernel(layer, torch.randn(1, 256), KernelChoice("magic"))


def test_split_k_blocks_cover_all_groups_evenly() -> None:
    bounds = kernels_module.group_bounds(5, 4)
    assert bounds == [(0, 1), (1, 2), (2, 3), (3, 5)]
    assert all(last > first for first, last in bounds)


def test_triton_is_unavailable_on_cpu_with_a_reason() -> None:
    layer = _layer(128, 32, 64, torch.bfloat16)
    reason = kernels_module.unavailable_reason(layer, KernelChoice("triton", 1), CPU, torch.bfloat16)
    assert reason is not None and "CUDA" in reason
    with pytest.raises(KernelUnavailableError):
        run_kernel(layer, torch.randn(1, 128, dtype=torch.bfloat16), KernelChoice("triton", 1))


def test_triton_needs_sm80(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    layer = _layer(128, 32, 64, torch.bfloat16)
    reason = kernels_module.unavailable_reason(layer, KernelChoice("triton", 1), torch.device("cuda"), torch.bfloat16)
    assert reason is not None and "8.0" in reason and "7.5" in reason


# --- the native op adapter ----------------------------------------------------------------------------


def test_native_smoke_test_reports_availability_with_a_reason() -> None:
    status = native_ops.smoke_test(CPU)
    assert status.available, status.reason
    assert native_ops.NativeAvailability.from_dict(status.to_dict()) == status
    meta = native_ops.smoke_test(torch.device("meta"))
    assert not meta.available and "meta" in meta.reason
    assert native_ops.version_problem("cpu", "2.5.1") is not None
    assert native_ops.version_problem("cpu", "2.13.0") is None


def test_native_zero_point_convention_is_converted() -> None:
    """The op computes (q - 8) * s + zero; we store (q - z) * s and must pass zero = (8 - z) * s."""
    generator = torch.Generator().manual_seed(5)
    n, k, group = 32, 128, 32
    q = torch.randint(0, 16, (n, k), generator=generator, dtype=torch.int32)
    scales = torch.rand(n, k // group, generator=generator) + 0.1
    zeros = torch.randint(0, 16, (n, k // group), generator=generator, dtype=torch.uint8)
    x = torch.randn(4, k, generator=generator)
    weight = (q - zeros.repeat_interleave(group, 1)).float() * scales.repeat_interleave(group, 1)
    prepared = native_ops.prepare_native_weight(q, scales, zeros, group, torch.float32)
    assert prepared.scales_and_zeros.shape == (k // group, n, 2)
    torch.testing.assert_close(native_ops.native_matmul(x, prepared), x @ weight.t(), rtol=1e-5, atol=1e-4)
    # Passing our integer zero point straight through (the naive mapping) gives a different answer.
    naive = torch.stack([scales.t(), zeros.float().t()], dim=-1).contiguous()
    wrong = native_ops.NativeWeight(prepared.packed, naive, group, k, n)
    assert _relative_error(native_ops.native_matmul(x, wrong), x @ weight.t()) > 0.1


def test_native_rejects_shapes_it_cannot_pack() -> None:
    q = torch.zeros(20, 64, dtype=torch.int32)
    with pytest.raises(native_ops.NativeInt4Error, match="multiple of 16"):
        native_ops.prepare_native_weight(q, torch.ones(20, 2), torch.zeros(20, 2), 32, torch.float32)


# --- the module -----------------------------------------------------------------------------------------


def test_forward_dispatches_on_m(monkeypatch: pytest.MonkeyPatch) -> None:
    layer = _layer(256, 64, 128, torch.float32)
    used: list[tuple[int, str]] = []
    original = kernels_module.bind_kernel

    def spy(module: QuantizedLinear, choice: KernelChoice, device: torch.device, dtype: torch.dtype) -> object:
        bound = original(module, choice, device, dtype)

        def call(x2d: torch.Tensor) -> torch.Tensor:
            used.append((x2d.shape[0], choice.label))
            return bound(x2d)

        return call

    monkeypatch.setattr(kernels_module, "bind_kernel", spy)
    with torch.no_grad():
        layer(torch.randn(1, 1, 256))  # untuned, decode-sized: native
        layer(torch.randn(2, 40, 256))  # untuned, prefill-sized: splitk/1
        layer.dispatch = {1: KernelChoice("native"), 64: KernelChoice("splitk", 2)}
        layer(torch.randn(64, 256))  # tuned M
        layer(torch.randn(2, 256))  # nearest tuned in log2 is 1
        layer(torch.randn(2, 20, 256))  # M = 40 -> nearest is 64
        layer.set_choice("splitk", 2)  # fixed choice for every M
        layer(torch.randn(1, 256))
    assert used == [
        (1, "native"),
        (80, "splitk/1"),
        (64, "splitk/2"),
        (2, "native"),
        (40, "splitk/2"),
        (1, "splitk/2"),
    ]


def test_bias_three_dimensional_input_and_wrong_width() -> None:
    torch.manual_seed(6)
    linear = nn.Linear(64, 32)
    layer = QuantizedLinear.from_linear(linear, 32)
    x = torch.randn(3, 4, 64)
    with torch.no_grad():
        out = layer(x)
        no_bias = run_kernel(layer, x.reshape(-1, 64), KernelChoice("reference")).view(3, 4, 32)
    torch.testing.assert_close(out, no_bias + linear.bias.detach(), rtol=1e-5, atol=1e-5)
    with pytest.raises(QuantizationError, match="features"):
        layer(torch.randn(2, 63))


def test_inference_mode_then_autograd_mode_forward() -> None:
    """Scratch and derived copies first built under inference_mode must stay usable afterwards."""
    layer = _layer(256, 32, 64, torch.float32, seed=7)
    layer.set_choice("splitk", 2)
    x = torch.randn(3, 256)
    with torch.inference_mode():
        first = layer(x)
    second = layer(x.requires_grad_())
    second.sum().backward()  # gradients flow to the input through the dequantized weight
    assert x.grad is not None
    torch.testing.assert_close(first, second.detach())


def test_moving_the_layer_drops_derived_copies() -> None:
    layer = _layer(128, 32, 64, torch.float32)
    with torch.no_grad():
        layer(torch.randn(1, 128))
    assert layer.derived_bytes() > 0
    layer.to(torch.device("cpu"))
    assert layer.derived_bytes() == 0


def test_to_dtype_keeps_float32_scales_follows_the_dtype_and_drops_stale_choices() -> None:
    torch.manual_seed(11)
    layer = QuantizedLinear.from_linear(nn.Linear(256, 64), 128)
    scales = layer.scales.clone()
    layer.dispatch = {1: KernelChoice("native")}
    layer.to(torch.bfloat16)
    assert layer.scales.dtype == torch.float32 and torch.equal(layer.scales, scales)  # no bf16 rounding
    assert layer.compute_dtype == torch.bfloat16 and layer.bias is not None and layer.bias.dtype == torch.bfloat16
    assert dict(layer.dispatch) == {}  # timed on float32: stale
    layer.dispatch = {1: KernelChoice("native")}
    layer.to(torch.float64)
    assert layer.compute_dtype == torch.float64 and dict(layer.dispatch) == {}
    # A stored choice that cannot run this dtype (the CPU op has no float64) falls back to the default.
    layer.dispatch = {1: KernelChoice("native")}
    assert layer.choice_for(1, CPU, torch.float64) == KernelChoice("splitk", 1)
    x = torch.randn(1, 256, dtype=torch.float64)
    with torch.no_grad():
        out = layer(x)
        expected = run_kernel(layer, x, KernelChoice("reference")) + layer.bias
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)  # the reference rounds to float32


def test_device_change_clears_dispatch_but_a_no_op_move_keeps_it() -> None:
    layer = _layer(128, 32, 64, torch.float32)
    layer.dispatch = {1: KernelChoice("native")}
    layer.to(CPU)  # same device and dtype: the tuned table still holds
    assert dict(layer.dispatch) == {1: KernelChoice("native")}
    layer.to(torch.device("meta"))
    assert dict(layer.dispatch) == {} and layer.scales.device.type == "meta"
    assert layer.scales.dtype == torch.float32 and layer.compute_dtype == torch.float32


def test_bound_kernels_follow_selection_changes_and_copies() -> None:
    layer = _layer(128, 32, 64, torch.float32, seed=3)
    x = torch.randn(2, 128)
    with torch.no_grad():
        first = layer(x)
        layer.set_tuned(2, KernelChoice("splitk", 2))
        assert layer.bound_kernel(2, CPU, torch.float32).keywords == {"split_k": 2}  # type: ignore[attr-defined]
        clone = copy.deepcopy(layer)
        clone.qweight.zero_()
        clone.invalidate()
        torch.testing.assert_close(layer(x), first, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(clone(x), first)  # the copy runs its own (zeroed) weight, not the original's


def test_runtime_is_owned_by_the_model_and_caps_its_scratch() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(256, 64), nn.Linear(64, 32))
    other = nn.Sequential(nn.Linear(256, 64))
    quantize_model(model, group_size=32)
    quantize_model(other, group_size=32)
    first, second = model[0], model[1]
    assert first.runtime is second.runtime and first.runtime is not other[0].runtime
    first.set_choice("splitk", 1)
    with torch.no_grad():
        first(torch.randn(40, 256))
    assert first.runtime.scratch_bytes() > 0 and other[0].runtime.scratch_bytes() == 0
    clone = copy.deepcopy(model)
    assert clone[0].runtime is clone[1].runtime and clone[0].runtime is not first.runtime
    first.runtime.release_scratch()
    assert first.runtime.scratch_bytes() == 0
    capped = Int4Runtime(scratch_cap_bytes=1024)
    big = capped.scratch(CPU, torch.float32, 512, 0)  # 2 KiB: served, not kept
    assert big.numel() == 512 and capped.scratch_bytes() == 0
    capped.scratch(CPU, torch.float32, 64, 0)
    assert capped.scratch_bytes() == 256
    assert capped.native_availability(CPU, torch.float32) is capped.native_availability("cpu", torch.float32)


# --- whole models ---------------------------------------------------------------------------------------


def _tiny_llama(seed: int) -> nn.Module:
    from transformers import AutoModelForCausalLM, LlamaConfig

    config = LlamaConfig(
        hidden_size=256,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=688,  # not a multiple of 128: the down projections are padded
        vocab_size=8192,
        max_position_embeddings=128,
    )
    torch.manual_seed(seed)
    return AutoModelForCausalLM.from_config(config).eval()


@pytest.fixture(scope="module")
def dense_llama() -> nn.Module:
    return _tiny_llama(0)


def test_quantize_tiny_llama(dense_llama: nn.Module) -> None:
    model = copy.deepcopy(dense_llama)
    report = quantize_model(model, group_size=128)
    assert report.layers_quantized == 4 * 7  # q, k, v, o, gate, up, down per layer
    assert set(report.unique_shapes) == {(256, 256), (256, 128), (256, 688), (688, 256)}
    assert report.skipped == ("lm_head",)
    assert type(model.lm_head) is nn.Linear and model.get_output_embeddings() is model.lm_head
    assert not any(type(m) is nn.Linear for n, m in model.named_modules() if n != "lm_head")
    # int4 + a float32 scale and uint8 zero per 128 weights vs float32 weights: ~7.4x smaller.
    assert report.bytes_before / report.bytes_after > 7.0
    assert QuantizationReport.from_dict(report.to_dict()) == report

    ids = torch.randint(0, 8192, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        dense_logits = dense_llama(ids).logits
        quant_logits = model(ids).logits
        other_logits = _tiny_llama(1)(ids).logits
    cosine = torch.nn.functional.cosine_similarity(dense_logits.flatten(1), quant_logits.flatten(1), dim=-1)
    unrelated = torch.nn.functional.cosine_similarity(dense_logits.flatten(1), other_logits.flatten(1), dim=-1)
    # Measured 0.965-0.970 for g128 on this random-init model (N(0, 0.02) weights, 4 layers of int4
    # error compounding); a differently seeded model scores ~0. Bound with margin on both.
    assert float(cosine.min()) > 0.93, cosine
    assert float(unrelated.abs().max()) < 0.5, unrelated

    generated = model.generate(
        ids[:1, :8],
        attention_mask=torch.ones(1, 8, dtype=torch.long),
        max_new_tokens=4,
        do_sample=False,
        pad_token_id=0,
    )
    assert generated.shape == (1, 12)


def test_quantize_model_fixed_kernel_fails_early_when_a_layer_cannot_run_it() -> None:
    model = nn.Sequential(nn.Linear(64, 20), nn.Linear(20, 64))
    with pytest.raises(KernelUnavailableError, match="multiple of 16"):
        quantize_model(model, group_size=32, kernel="native")


def test_quantize_model_group_sizes_and_lm_head_attribute() -> None:
    class Tiny(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(64, 64)
            self.lm_head = nn.Linear(64, 100)

    for group_size in (32, 64):
        model = Tiny()
        report = quantize_model(model, group_size=group_size)
        assert report.layers_quantized == 1 and report.group_size == group_size
        assert isinstance(model.body, QuantizedLinear) and type(model.lm_head) is nn.Linear
        assert math.isclose(report.bytes_before, 64 * 64 * 4 + 64 * 4)


# --- CUDA / Triton (skipped here) -------------------------------------------------------------------------

_HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_cuda_triton = pytest.mark.skipif(
    not (torch.cuda.is_available() and _HAS_TRITON), reason="needs a CUDA device and triton"
)


@pytest.mark.cuda
@needs_cuda_triton
@pytest.mark.parametrize(("in_features", "out_features", "group_size"), [*SHAPES, (4096, 4096, 128)])
@pytest.mark.parametrize("m", [1, 16, 77])
def test_triton_matches_the_reference(in_features: int, out_features: int, group_size: int, m: int) -> None:
    device = torch.device("cuda")
    layer = _layer(in_features, out_features, group_size, torch.bfloat16).to(device)
    x = torch.randn(m, in_features, device=device, dtype=torch.bfloat16)
    expected = run_kernel(layer, x, KernelChoice("reference"))
    for split_k in (1, 2, 4, 8, 16, 32):
        choice = KernelChoice("triton", split_k)
        if kernels_module.unavailable_reason(layer, choice, device, torch.bfloat16) is not None:
            continue
        got = run_kernel(layer, x, choice)
        assert _relative_error(got, expected) <= tolerance(torch.bfloat16, split_k), split_k


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_native_cuda_op_matches_the_reference_or_says_why() -> None:
    device = torch.device("cuda")
    status = native_ops.smoke_test(device, torch.bfloat16)
    if not status.available:
        pytest.skip(status.reason)
    layer = _layer(1024, 256, 128, torch.bfloat16).to(device)
    x = torch.randn(5, 1024, device=device, dtype=torch.bfloat16)
    expected = run_kernel(layer, x, KernelChoice("reference"))
    got = run_kernel(layer, x, KernelChoice("native"))
    assert _relative_error(got, expected) <= tolerance(torch.bfloat16)
