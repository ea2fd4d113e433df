"""Efficiency arithmetic per architecture, each against a figure computed by hand from the preset configs."""

from __future__ import annotations

import pytest
import torch

from tokbench import presets
from tokbench.analysis.efficiency import (
    ModelShape,
    WeightFacts,
    decode_weight_bytes,
    kv_cache_bytes,
    prefill_flops,
)
from tokbench.engine.efficiency import weight_facts


def _shape(name: str) -> ModelShape:
    return ModelShape.from_config(presets.preset_config_dict(name))


def _model(name: str) -> torch.nn.Module:
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        config = AutoConfig.for_model(**presets.preset_config_dict(name))
        return AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)


def test_grouped_kv_heads_count_kv_heads_not_query_heads() -> None:
    # tiny-qwen3: 4 layers, 2 KV heads (of 4 query heads) × head_dim 64; batch 1, 10 positions, bf16:
    # 2 (K, V) × 4 × 2 × 64 × 1 × 10 × 2 bytes = 20,480
    assert kv_cache_bytes(_shape("tiny-qwen3"), 1, 10, 2) == 20_480


def test_a_sliding_window_caps_what_its_layers_hold_and_read() -> None:
    shape = _shape("tiny-gemma3")  # 3 sliding layers (window 32) + 1 full, 2 KV heads × 64
    assert (shape.sliding_layers, shape.sliding_window) == (3, 32)
    # 100 positions: per layer and position 2 × 2 × 64 × 2 bytes = 512; full 1 × 100 + sliding 3 × 32 = 196
    assert kv_cache_bytes(shape, 1, 100, 2) == 196 * 512
    # under the window every layer holds every position: 4 × 20 × 512
    assert kv_cache_bytes(shape, 1, 20, 2) == 4 * 20 * 512


def test_latent_attention_caches_the_compressed_latent_and_the_rope_key() -> None:
    shape = _shape("tiny-mla")  # kv_lora_rank 64 + qk_rope_head_dim 16 = 80 values per layer and position
    assert shape.latent_kv_dim == 80 and (shape.qk_head_dim, shape.v_head_dim) == (48, 32)
    # 4 layers × 80 × batch 2 × 10 positions × 2 bytes = 12,800 (full K/V of 4 heads would be 4 × (48 + 32) × …)
    assert kv_cache_bytes(shape, 2, 10, 2) == 12_800
    # prefill attention, batch 1, 4 tokens: 2 × 1 × 4 layers × 4 heads × (48 + 32) × (4 × 5 / 2) = 25,600
    assert prefill_flops(shape, 0, 0, 1, 4) == 25_600


def test_moe_decode_reads_only_the_experts_its_tokens_use() -> None:
    shape = _shape("tiny-moe")  # 8 experts, 2 per token, 4 layers
    assert (shape.num_experts, shape.experts_per_token) == (8, 2)
    facts = weight_facts(_model("tiny-moe"))
    # experts per layer: gate_up 8 × 256 (2 × 128) × 256 + down 8 × 256 × 128 = 786,432; × 4 layers
    assert facts.expert_parameters == 4 * 786_432
    assert facts.expert_weight_bytes == 4 * 786_432 * 2
    # batch 1: 2 of 8 experts, so 6/8 of the expert bytes are not read
    assert decode_weight_bytes(facts, shape, 1) == facts.decode_weight_bytes - 6 * 786_432
    # batch 4: up to min(8, 4 × 2) = 8 experts: every expert may be read
    assert decode_weight_bytes(facts, shape, 4) == facts.decode_weight_bytes
    # prefill counts k/E of the expert weights: batch 1, 4 tokens: 2 × 4 × 3,145,728 × 2/8 = 6,291,456
    # + attention 2 × 4 layers × 4 heads × (64 + 64) × 10 = 40,960
    assert prefill_flops(shape, 0, 0, 1, 4, facts.expert_parameters) == 6_291_456 + 40_960


def test_tied_embeddings_are_counted_once() -> None:
    facts = weight_facts(_model("tiny-qwen3"))
    # embedding 8192 × 256 = 2,097,152 (shared with the LM head); per layer q 256×256 + k, v 256×128 + o
    # 256×256 = 196,608, MLP 3 × 256 × 640 = 491,520, q/k norms 2 × 64, two layer norms 2 × 256; final norm 256
    parameters = 2_097_152 + 4 * (196_608 + 491_520 + 128 + 512) + 256
    assert facts.weight_bytes == parameters * 2
    assert facts.unread_embedding_bytes == 0  # tied: the LM head reads the table every step
    assert facts.linear_parameters == 4 * (196_608 + 491_520)
    assert facts.lm_head_parameters == 2_097_152


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-qwen3", "tiny-gemma3"])
def test_dense_models_have_no_expert_discount(name: str) -> None:
    facts = WeightFacts(1000, 100, 10, 5)
    assert decode_weight_bytes(facts, _shape(name), 1) == 900
