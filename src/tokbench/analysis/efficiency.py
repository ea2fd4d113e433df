"""Memory breakdown and efficiency against the hardware limit, as pure functions of plain numbers.

Definitions (B = batch, S = prompt tokens, N = new tokens per row, L = layers):
- KV cache bytes for P cached positions = 2 (K and V) × L × kv_heads × head_dim × B × P × dtype bytes
  (grouped-query attention: kv_heads, not query heads; a sliding-window layer holds and reads at most its
  window). Multi-head latent attention (DeepSeek-V3) caches one compressed latent plus the shared rope key
  per position instead: L × (kv_lora_rank + qk_rope_head_dim) × B × P × dtype bytes. (transformers'
  DeepseekV3 attention materializes the decompressed K and V in its cache; the figure is what MLA must
  read.) At the end of generation P = S + N − 1: the last token is returned, never fed back through the model.
- bytes that must move per decode step = the weights it reads + the KV cache it attends over. The
  weights read are all of them (tied embeddings once) except an untied input-embedding table, of which a
  step reads B rows (left out: negligible). Mixture of experts: of the routed experts' weights a step
  reads only the experts its tokens are routed to, min(E, B × k) of E (exactly k for B = 1; for B > 1 an
  upper bound, as rows may share experts). The step that produces token i (i = 2..N) attends over
  S + i − 1 positions.
- MBU = mean bytes per decode step × decode steps/s ÷ peak memory bandwidth.
- prefill FLOPs = 2 × B × S × (linear-layer weights of the transformer blocks + k/E of the routed experts'
  weights) + 2 × B × (LM head weights: generate computes logits of the last position only) + causal
  attention 2 × B × L × heads × (qk_head_dim + v_head_dim) × S(S+1)/2 (both are head_dim but for MLA).
  Norms, activations, routers and rotary embeddings are left out (well under 1 % for these shapes).
- MFU = prefill FLOPs ÷ prefill time (latest first-token instant − t0) ÷ peak FLOP/s.
- energy per token = the hardware energy counter's delta over the measured run ÷ tokens generated in it.

The figures are "what the model must do", not what the kernels happen to do: a static cache that attends
over its whole allocated length moves more bytes than counted here, and its MBU reads low accordingly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tokbench.analysis.stats import median
from tokbench.schema.efficiency import EfficiencyReport, HardwarePeak
from tokbench.schema.monitor import MemoryPeak, MonitorRecord
from tokbench.schema.records import GenerationTrace

DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass(frozen=True)
class ModelShape:
    """The attention shape the KV cache and FLOP counts need, read from a transformers config."""

    num_layers: int
    num_attention_heads: int
    num_kv_heads: int
    head_dim: int
    hidden_size: int
    sliding_window: int | None = None
    sliding_layers: int = 0  # how many of the layers use the sliding window
    # Multi-head latent attention: cached width per position (kv_lora_rank + qk_rope_head_dim); 0 = not MLA.
    latent_kv_dim: int = 0
    qk_head_dim: int | None = None  # query-key width per head where it differs from head_dim (MLA)
    v_head_dim: int | None = None  # value width per head where it differs from head_dim (MLA)
    num_experts: int = 0  # routed experts per MoE layer; 0 = dense
    experts_per_token: int = 0  # k: routed experts each token uses

    @classmethod
    def from_config(cls, config: Any) -> ModelShape:
        """From a transformers ``PretrainedConfig`` or its ``to_dict()``."""
        data = config if isinstance(config, dict) else config.to_dict()
        text_config = data.get("text_config")
        if isinstance(text_config, dict) and "num_hidden_layers" not in data:
            data = text_config  # multimodal wrappers keep the language model's shape here
        layers = int(data["num_hidden_layers"])
        heads = int(data["num_attention_heads"])
        kv_heads = int(data.get("num_key_value_heads") or heads)
        hidden = int(data["hidden_size"])
        head_dim = int(data.get("head_dim") or hidden // heads)
        window = data.get("sliding_window")
        layer_types = data.get("layer_types")
        if window and layer_types:
            sliding = sum(1 for kind in layer_types if kind == "sliding_attention")
        elif window and data.get("use_sliding_window", True):
            sliding = layers
        else:
            window, sliding = None, 0
        latent = qk_dim = v_dim = None
        if data.get("kv_lora_rank"):  # DeepSeek-V2/V3 multi-head latent attention
            latent = int(data["kv_lora_rank"]) + int(data["qk_rope_head_dim"])
            qk_dim = int(data["qk_rope_head_dim"]) + int(data["qk_nope_head_dim"])
            v_dim = int(data["v_head_dim"])
        experts = data.get("num_experts") or data.get("num_local_experts") or data.get("n_routed_experts") or 0
        per_token = int(data.get("num_experts_per_tok") or 0) if experts else 0
        return cls(
            layers, heads, kv_heads, head_dim, hidden, int(window) if window else None, sliding,
            latent_kv_dim=latent or 0, qk_head_dim=qk_dim, v_head_dim=v_dim,
            num_experts=int(experts), experts_per_token=per_token,
        )  # fmt: skip

    def active_experts(self, batch_size: int) -> int:
        """Routed experts one decode step reads: k for one row, at most min(E, B × k) for a batch."""
        return min(self.num_experts, batch_size * self.experts_per_token)


def kv_cache_bytes(shape: ModelShape, batch_size: int, positions: int, dtype_bytes: int) -> int:
    """Bytes of K and V (or of MLA's latent) for ``positions`` cached positions of every row."""
    if shape.latent_kv_dim:
        per_layer_position = shape.latent_kv_dim * batch_size * dtype_bytes
    else:
        per_layer_position = 2 * shape.num_kv_heads * shape.head_dim * batch_size * dtype_bytes
    full_layers = shape.num_layers - shape.sliding_layers
    sliding_positions = min(positions, shape.sliding_window) if shape.sliding_window else positions
    return per_layer_position * (full_layers * positions + shape.sliding_layers * sliding_positions)


def cached_positions_at_end(prompt_tokens: int, new_tokens: int) -> int:
    return prompt_tokens + new_tokens - 1


def mean_decode_step_bytes(
    weight_bytes_read: float, shape: ModelShape, batch_size: int, prompt_tokens: int, new_tokens: int, dtype_bytes: int
) -> float:
    """Mean over the N − 1 decode steps of (weights read + KV cache attended over)."""
    if new_tokens < 2:
        raise ValueError("decode needs at least 2 new tokens")
    kv_total = sum(
        kv_cache_bytes(shape, batch_size, prompt_tokens + i - 1, dtype_bytes) for i in range(2, new_tokens + 1)
    )
    return weight_bytes_read + kv_total / (new_tokens - 1)


def utilization(achieved_per_s: float, peak_per_s: float) -> float:
    if peak_per_s <= 0:
        raise ValueError(f"a peak must be positive, got {peak_per_s}")
    return achieved_per_s / peak_per_s


def decode_weight_bytes(facts: WeightFacts, shape: ModelShape, batch_size: int) -> float:
    """Weight bytes one decode step reads: all but the unread embedding, routed experts only as used."""
    if not facts.expert_weight_bytes or not shape.num_experts:
        return float(facts.decode_weight_bytes)
    unused = facts.expert_weight_bytes * (1 - shape.active_experts(batch_size) / shape.num_experts)
    return facts.decode_weight_bytes - unused


def prefill_flops(
    shape: ModelShape,
    linear_parameters: int,
    lm_head_parameters: int,
    batch_size: int,
    prompt_tokens: int,
    expert_parameters: int = 0,
) -> float:
    """Matmul FLOPs of one prefill (see the module docstring for what is counted)."""
    active_expert_parameters = (
        expert_parameters * shape.experts_per_token / shape.num_experts if shape.num_experts else 0
    )
    weights = (
        2 * batch_size * prompt_tokens * (linear_parameters + active_expert_parameters)
        + 2 * batch_size * lm_head_parameters
    )
    qk_dim = shape.qk_head_dim or shape.head_dim
    v_dim = shape.v_head_dim or shape.head_dim
    attention = (
        2 * batch_size * shape.num_layers * shape.num_attention_heads * (qk_dim + v_dim)
        * prompt_tokens * (prompt_tokens + 1) / 2
    )  # fmt: skip
    return float(weights + attention)


def decode_steps_per_s(trace: GenerationTrace) -> float:
    """Decode steps per second of one call: (N − 1) steps between the first and the last token."""
    first_ns = min(row[0] for row in trace.token_timestamps_ns)
    last_ns = max(row[-1] for row in trace.token_timestamps_ns)
    steps = max(len(row) for row in trace.token_timestamps_ns) - 1
    if last_ns <= first_ns:
        raise ValueError("decode steps/s needs the last token after the first")
    return steps * 1e9 / (last_ns - first_ns)


def prefill_seconds(trace: GenerationTrace) -> float:
    return (max(row[0] for row in trace.token_timestamps_ns) - trace.t0_ns) / 1e9


# --- the weights of a live model (duck-typed: any torch module) ---------------------------------------


@dataclass(frozen=True)
class WeightFacts:
    weight_bytes: int  # every parameter once (tied weights count once)
    unread_embedding_bytes: int  # an untied input-embedding table: a decode step reads only B of its rows
    linear_parameters: int  # weights of nn.Linear layers other than the LM head
    lm_head_parameters: int
    expert_weight_bytes: int = 0  # routed experts' weights (MoE), part of weight_bytes
    expert_parameters: int = 0

    @property
    def decode_weight_bytes(self) -> int:
        return self.weight_bytes - self.unread_embedding_bytes


# --- the report --------------------------------------------------------------------------------------


def analyse(
    *,
    facts: WeightFacts,
    shape: ModelShape,
    batch_size: int,
    prompt_tokens: int,
    new_tokens: int,
    dtype: str,
    traces: Sequence[GenerationTrace],
    memory_peaks: Sequence[MemoryPeak] = (),
    peak: HardwarePeak | None = None,
    peak_unavailable: str = "",
    energy_j: float | None = None,
    energy_status: str = "",
) -> EfficiencyReport:
    """Every figure of the report from plain inputs (hand-checkable; see the module docstring)."""
    dtype_bytes = DTYPE_BYTES[dtype]
    positions = cached_positions_at_end(prompt_tokens, new_tokens)
    kv_end = kv_cache_bytes(shape, batch_size, positions, dtype_bytes)
    peaks = [p.peak_bytes for p in memory_peaks if p.peak_bytes is not None]
    peak_memory = max(peaks) if peaks else None
    step_bytes = mean_decode_step_bytes(
        decode_weight_bytes(facts, shape, batch_size), shape, batch_size, prompt_tokens, new_tokens, dtype_bytes
    )
    steps_per_s = median([decode_steps_per_s(t) for t in traces]) if traces else None
    flops = prefill_flops(
        shape, facts.linear_parameters, facts.lm_head_parameters, batch_size, prompt_tokens, facts.expert_parameters
    )
    flops_s = median([flops / prefill_seconds(t) for t in traces]) if traces else None
    bandwidth = step_bytes * steps_per_s if steps_per_s is not None else None
    tokens = sum(sum(t.generated_tokens) for t in traces)
    notes = []
    if memory_peaks and memory_peaks[0].peak_allocated_bytes is None:
        notes.append("peak memory is the process RSS: beyond weights and KV cache it holds interpreter and libraries")
    if peak is not None and peak.kind == "probe":
        notes.append("the peak was measured on this machine; a probe taken under load reads low and MBU / MFU high")
    return EfficiencyReport(
        weight_bytes=facts.weight_bytes,
        kv_cache_bytes_at_end=kv_end,
        kv_cache_positions_at_end=positions,
        peak_memory_bytes=peak_memory,
        peak_memory_source=memory_peaks[0].source if memory_peaks else "",
        peak_beyond_weights_and_kv_bytes=None if peak_memory is None else peak_memory - facts.weight_bytes - kv_end,
        decode_bytes_per_step=step_bytes,
        decode_steps_per_s=steps_per_s,
        decode_bandwidth_bytes_s=bandwidth,
        mbu=utilization(bandwidth, peak.memory_bandwidth_bytes_s) if peak and bandwidth is not None else None,
        prefill_flops=flops,
        prefill_flops_s=flops_s,
        mfu=utilization(flops_s, peak.flops_s) if peak and flops_s is not None else None,
        peak=peak,
        peak_unavailable=peak_unavailable,
        energy_j=energy_j,
        energy_per_token_j=energy_j / tokens if energy_j is not None and tokens else None,
        energy_status=energy_status,
        notes=tuple(notes),
    )


# --- glue: the one function here that touches live objects --------------------------------------------


def energy_status(record: MonitorRecord | None) -> str:
    """Why there is (or is not) an energy figure, from what the sampler recorded."""
    gpu = record.gpu if record is not None else None
    if gpu is None:
        return "unavailable: monitoring was off"
    if not gpu.ok:
        return gpu.status
    if record is not None and record.energy_j is None:
        return f"unavailable: {gpu.backend} reported no energy counter for this GPU"
    return f"ok: {gpu.backend} hardware energy counter, delta over the measured run"
