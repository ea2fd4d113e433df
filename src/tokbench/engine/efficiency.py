"""Efficiency of a finished run from the live model: its weights (read from the torch modules) and the
hardware peak (table or probe), handed to the pure arithmetic of ``tokbench.analysis.efficiency``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from tokbench.analysis.efficiency import ModelShape, WeightFacts, analyse, energy_status
from tokbench.hardware.peaks import peak_for
from tokbench.quant import QuantizedLinear
from tokbench.schema.efficiency import EfficiencyReport, HardwarePeak
from tokbench.schema.monitor import MemoryPeak, MonitorRecord
from tokbench.schema.records import GenerationTrace


def weight_facts(model: Any) -> WeightFacts:
    from tokbench.quant.thirdparty import tensor_storage_bytes

    # parameters() yields a tied (shared) weight once; a quantized tensor counts at the bytes it holds.
    weight_bytes = sum(tensor_storage_bytes(p) for p in model.parameters())
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    input_embeddings = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    output_weight = getattr(output, "weight", None)
    input_weight = getattr(input_embeddings, "weight", None)
    tied = output_weight is not None and input_weight is not None and output_weight is input_weight
    unread = 0 if tied or input_weight is None else tensor_storage_bytes(input_weight)
    linear = sum(
        m.in_features * m.out_features for m in model.modules() if isinstance(m, torch.nn.Linear) and m is not output
    )
    # Routed experts (transformers 5.x fuses each MoE layer's experts into 3-D parameters [E, ...]).
    num_experts = ModelShape.from_config(model.config).num_experts if hasattr(model, "config") else 0
    experts = [p for p in model.parameters() if num_experts and p.ndim == 3 and p.shape[0] == num_experts]
    expert_bytes = sum(tensor_storage_bytes(p) for p in experts)
    expert_parameters = sum(p.numel() for p in experts)
    # int4 layers keep their weights in buffers (packed ints, scales, zeros): what a decode step reads.
    quantized = [m for m in model.modules() if isinstance(m, QuantizedLinear)]
    weight_bytes += sum(layer.packed_bytes() for layer in quantized)
    linear += sum(layer.in_features * layer.out_features for layer in quantized)
    lm_head = output.in_features * output.out_features if isinstance(output, torch.nn.Linear) else 0
    return WeightFacts(
        int(weight_bytes), int(unread), int(linear), int(lm_head), int(expert_bytes), int(expert_parameters)
    )


def measure_efficiency(
    model: Any,
    device: Any,
    dtype: str,
    batch_size: int,
    prompt_tokens: int,
    new_tokens: int,
    traces: Sequence[GenerationTrace],
    memory_peaks: Sequence[MemoryPeak],
    record: MonitorRecord | None,
) -> EfficiencyReport:
    """The report of a finished run: model facts from ``model``, the peak from the table or the probe."""
    peak: HardwarePeak | None = None
    why_no_peak = ""
    try:
        peak = peak_for(device, dtype)
    except Exception as error:  # a probe that cannot run costs MBU / MFU, not the result
        why_no_peak = f"unavailable: the hardware probe failed: {type(error).__name__}: {error}"
    return analyse(
        facts=weight_facts(model),
        shape=ModelShape.from_config(model.config),
        batch_size=batch_size,
        prompt_tokens=prompt_tokens,
        new_tokens=new_tokens,
        dtype=dtype,
        traces=traces,
        memory_peaks=memory_peaks,
        peak=peak,
        peak_unavailable=why_no_peak,
        energy_j=record.energy_j if record is not None else None,
        energy_status=energy_status(record),
    )
