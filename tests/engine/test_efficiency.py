"""Efficiency and the hardware limit: hand-computed cases, the real tiny model, the real probe and its cache."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tokbench import presets
from tokbench.analysis.efficiency import (
    ModelShape,
    WeightFacts,
    analyse,
    cached_positions_at_end,
    decode_steps_per_s,
    kv_cache_bytes,
    mean_decode_step_bytes,
    prefill_flops,
    prefill_seconds,
    utilization,
)
from tokbench.config import BenchmarkConfig
from tokbench.engine.efficiency import weight_facts
from tokbench.engine.loading import load
from tokbench.hardware.peaks import (
    ACCELERATORS,
    KIND_PROBE,
    ProbeCacheWarning,
    cached_probe,
    find_accelerator,
    peak_for,
)
from tokbench.schema.efficiency import EfficiencyReport, HardwarePeak
from tokbench.schema.monitor import MemoryPeak
from tokbench.schema.records import GenerationTrace

SHAPE = ModelShape(num_layers=2, num_attention_heads=4, num_kv_heads=2, head_dim=8, hidden_size=32)
S = 1_000_000_000


def test_kv_cache_bytes_by_hand() -> None:
    # 2 (K, V) x 2 kv heads x 8 dims x batch 3 x 2 bytes = 192 bytes per layer and position
    assert kv_cache_bytes(SHAPE, batch_size=3, positions=10, dtype_bytes=2) == 192 * 2 * 10
    sliding = ModelShape(2, 4, 2, 8, 32, sliding_window=4, sliding_layers=1)
    assert kv_cache_bytes(sliding, 3, 10, 2) == 192 * (10 + 4)  # the sliding layer holds its window only
    assert cached_positions_at_end(prompt_tokens=5, new_tokens=3) == 7  # the last token is never fed back


def test_decode_bytes_and_prefill_flops_by_hand() -> None:
    # batch 3, prompt 5, 3 new tokens: the 2 decode steps attend over 6 and 7 positions, 384 bytes each
    assert mean_decode_step_bytes(1000, SHAPE, 3, 5, 3, 2) == 1000 + (384 * 6 + 384 * 7) / 2
    # 2*B*S*linear + 2*B*lm_head (last position) + 4*B*L*heads*head_dim*S(S+1)/2
    assert prefill_flops(SHAPE, linear_parameters=100, lm_head_parameters=50, batch_size=3, prompt_tokens=5) == (
        2 * 3 * 5 * 100 + 2 * 3 * 50 + 4 * 3 * 2 * 4 * 8 * 15
    )
    with pytest.raises(ValueError):
        mean_decode_step_bytes(1000, SHAPE, 1, 5, 1, 2)
    with pytest.raises(ValueError):
        utilization(1.0, 0.0)


def _trace(t0_s: float, token_s: tuple[float, ...]) -> GenerationTrace:
    stamps = tuple(int(t * S) for t in token_s)
    return GenerationTrace(int(t0_s * S), stamps[-1] + 1, (stamps,), (5,), (len(stamps),), (1, 5 + len(stamps)))


def test_analyse_by_hand() -> None:
    trace = _trace(0.0, (1.0, 1.5, 2.0))  # prefill 1 s; 2 decode steps in 1 s
    assert decode_steps_per_s(trace) == 2.0 and prefill_seconds(trace) == 1.0
    peak = HardwarePeak("test", "bfloat16", memory_bandwidth_bytes_s=10_000, flops_s=9_880, kind="table", source="hand")
    facts = WeightFacts(weight_bytes=2000, unread_embedding_bytes=500, linear_parameters=100, lm_head_parameters=50)
    report = analyse(
        facts=facts,
        shape=SHAPE,
        batch_size=1,
        prompt_tokens=5,
        new_tokens=3,
        dtype="bfloat16",
        traces=[trace, trace],
        memory_peaks=[MemoryPeak("VmHWM (peak RSS)", peak_rss_bytes=rss) for rss in (10_000, 12_000)],
        peak=peak,
        energy_j=3.0,
        energy_status="ok",
    )
    # batch 1: 128 bytes of KV per position over both layers
    assert report.kv_cache_bytes_at_end == 128 * 7
    assert report.decode_bytes_per_step == 1500 + (128 * 6 + 128 * 7) / 2  # 2332
    assert report.decode_steps_per_s == 2.0
    assert report.mbu == pytest.approx(2332 * 2 / 10_000)
    assert report.prefill_flops == 2 * 5 * 100 + 2 * 50 + 4 * 2 * 4 * 8 * 15  # 4940
    assert report.mfu == pytest.approx(4940 / 9_880)
    assert report.peak_memory_bytes == 12_000
    assert report.peak_beyond_weights_and_kv_bytes == 12_000 - 2000 - 896
    assert report.energy_per_token_j == pytest.approx(3.0 / 6)
    assert report.notes  # RSS includes the interpreter: said so
    assert EfficiencyReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report

    no_peak = analyse(facts=facts, shape=SHAPE, batch_size=1, prompt_tokens=5, new_tokens=3, dtype="float32",
                      traces=[trace], peak_unavailable="unavailable: test")  # fmt: skip
    assert (no_peak.mbu, no_peak.mfu, no_peak.energy_per_token_j, no_peak.peak_memory_bytes) == (None, None, None, None)
    assert no_peak.kv_cache_bytes_at_end == 2 * 128 * 7  # float32: twice the bytes


def test_model_shape_from_configs() -> None:
    tiny = ModelShape.from_config(presets.preset_config_dict("tiny-llama"))
    assert (tiny.num_layers, tiny.num_attention_heads, tiny.num_kv_heads, tiny.head_dim) == (4, 4, 2, 64)
    assert tiny.sliding_window is None
    mixed = ModelShape.from_config(
        {"num_hidden_layers": 4, "num_attention_heads": 8, "hidden_size": 512, "head_dim": 32, "sliding_window": 128,
         "layer_types": ["sliding_attention", "full_attention"] * 2}
    )  # fmt: skip
    assert (mixed.num_kv_heads, mixed.head_dim, mixed.sliding_window, mixed.sliding_layers) == (8, 32, 128, 2)
    off = ModelShape.from_config(
        {"num_hidden_layers": 2, "num_attention_heads": 2, "hidden_size": 64, "sliding_window": 16,
         "use_sliding_window": False}
    )  # fmt: skip
    assert (off.sliding_window, off.sliding_layers) == (None, 0)


def test_weight_facts_of_the_real_tiny_model(fast_config_fields: dict[str, object]) -> None:
    loaded = load(BenchmarkConfig(**fast_config_fields))  # type: ignore[arg-type]
    facts = weight_facts(loaded.model)
    embedding = 8192 * 256
    per_layer = 256 * 256 * 2 + 256 * 128 * 2 + 3 * 256 * 688  # q, o, k, v, gate/up/down
    assert facts.linear_parameters == 4 * per_layer
    assert facts.lm_head_parameters == embedding
    assert facts.weight_bytes == 7_096_576 * 2  # bfloat16
    assert facts.unread_embedding_bytes == embedding * 2  # untied: a decode step reads B rows of it

    # int4: the same linear work, but each layer's packed weights, scales and zeros instead of bf16 weights
    quantized = load(BenchmarkConfig(**fast_config_fields, quantization="int4"))  # type: ignore[arg-type]
    int4_facts = weight_facts(quantized.model)
    assert int4_facts.linear_parameters == facts.linear_parameters
    dense_linear_bytes = 4 * per_layer * 2
    packed = quantized.quantization.report.bytes_after
    assert int4_facts.weight_bytes == facts.weight_bytes - dense_linear_bytes + packed
    assert packed < dense_linear_bytes / 3


@pytest.mark.parametrize(
    ("device_name", "expected"),
    [
        ("NVIDIA H100 80GB HBM3", "NVIDIA H100 SXM"),
        ("NVIDIA H100 PCIe", "NVIDIA H100 PCIe"),
        ("NVIDIA H100 NVL", "NVIDIA H100 NVL"),
        ("NVIDIA H200", "NVIDIA H200 SXM"),
        ("NVIDIA A100-SXM4-80GB", "NVIDIA A100 SXM4 80GB"),
        ("NVIDIA A100 80GB PCIe", "NVIDIA A100 PCIe 80GB"),
        ("NVIDIA A100-SXM4-40GB", "NVIDIA A100 40GB"),
        ("NVIDIA L4", "NVIDIA L4"),
        ("NVIDIA L40S", "NVIDIA L40S"),
        ("NVIDIA A10G", "NVIDIA A10G"),
        ("NVIDIA A10", "NVIDIA A10"),
        ("AMD Instinct MI300X", "AMD Instinct MI300X"),
        ("NVIDIA GeForce RTX 4090", None),
    ],
)
def test_known_accelerators_are_found_by_name(device_name: str, expected: str | None) -> None:
    spec = find_accelerator(device_name)
    assert (spec.name if spec else None) == expected


def test_every_table_entry_names_its_source() -> None:
    for spec in ACCELERATORS:
        assert spec.source.startswith("https://"), spec.name
        assert spec.memory_bandwidth_bytes_s > 1e11 and spec.bf16_flops_s > spec.fp32_flops_s > 1e12
        assert spec.flops_s("float32") == spec.fp32_flops_s and spec.flops_s("float16") == spec.bf16_flops_s


def test_cpu_probe_is_short_cached_and_reprobed_when_the_cache_is_unreadable(tmp_path: Path) -> None:
    cpu = torch.device("cpu")
    record, path, from_cache = cached_probe(cpu, "float32", tmp_path)
    assert not from_cache and path.is_file() and path.parent == tmp_path
    assert record.copy_bandwidth_bytes_s.median > 0 and record.matmul_flops_s.median > 0
    again, same_path, from_cache = cached_probe(cpu, "float32", tmp_path)
    assert from_cache and same_path == path and again == record
    path.write_text("{not json", encoding="utf-8")
    with pytest.warns(ProbeCacheWarning, match=path.name):
        _, _, from_cache = cached_probe(cpu, "float32", tmp_path)
    assert not from_cache and json.loads(path.read_text(encoding="utf-8"))["figures"]["matmul_size"] > 0


def test_a_cpu_peak_comes_from_the_probe_and_says_so() -> None:
    peak = peak_for(torch.device("cpu"), "bfloat16")  # cached in the session's TOKBENCH_CACHE_DIR
    assert peak.kind == KIND_PROBE and "measured probe" in peak.source and peak.dtype == "bfloat16"
    assert peak.memory_bandwidth_bytes_s > 0 and peak.flops_s > 0
    assert HardwarePeak.from_dict(peak.to_dict()) == peak
