"""Int4 weight-only quantization: packed layers, their kernels, and the native-op adapter.

Triton is never imported from here: :mod:`tokbench.quant.triton_kernels` is loaded on first use of the
``triton`` kernel, only when CUDA and triton are present.
"""

from __future__ import annotations

from tokbench.quant.int4 import QuantizedLinear, quantize_model
from tokbench.quant.kernels import (
    KERNELS,
    SPLIT_K_VALUES,
    TOLERANCES,
    KernelChoice,
    KernelUnavailableError,
    candidate_choices,
    default_choice,
    run_kernel,
    simplicity_rank,
    tolerance,
)
from tokbench.quant.packing import (
    SUPPORTED_GROUP_SIZES,
    QuantizationError,
    dequantize,
    pack_int4,
    quantize_weight,
    unpack_int4,
)
from tokbench.quant.runtime import Int4Runtime
from tokbench.schema.quant import QuantizationReport

__all__ = [
    "KERNELS",
    "SPLIT_K_VALUES",
    "SUPPORTED_GROUP_SIZES",
    "TOLERANCES",
    "Int4Runtime",
    "KernelChoice",
    "KernelUnavailableError",
    "QuantizationError",
    "QuantizationReport",
    "QuantizedLinear",
    "candidate_choices",
    "default_choice",
    "dequantize",
    "pack_int4",
    "quantize_model",
    "quantize_weight",
    "run_kernel",
    "simplicity_rank",
    "tolerance",
    "unpack_int4",
]
