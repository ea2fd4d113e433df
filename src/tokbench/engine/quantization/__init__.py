"""Quantization methods: how a config's ``quantization`` reaches the model, behind one protocol.

``engine.loading.load`` picks one method per load (``method_for``) and then only calls the protocol, in order:

1. ``check(device)``: before any weight is read, can the method run here? A missing library or a CUDA-only
   kernel is an ``UnavailableFeatureError`` with the library's own words (the runner's ``skipped``);
2. ``check_provided(model)`` instead, for a model passed in: it must already carry the method;
3. ``apply(model, device, clock, provided=...)``: quantize (and tune), each phase timed on its own, returning
   the model to measure with the record of what was done (``Quantized``);
4. ``settings(model, device)``: what the quantized layers really run, for the effective settings.

The methods, one module each:

- ``none``: no quantization (a preset, a plain folder, a passed-in model);
- ``int4``: tokbench's own int4 (``quant.quantize_model``) and its kernel tuning (``quant.tune``);
- ``library``: torchao / optimum-quanto / bitsandbytes through transformers' ``quantization_config``
  (``quant.thirdparty``): the weights are loaded again, quantized while loading;
- ``prequantized``: a folder (or Hub model) that is already quantized, loaded and recorded as it is.

Another method is one new module here plus a line in ``method_for``.
"""

from __future__ import annotations

from tokbench.config import BenchmarkConfig
from tokbench.engine.quantization.base import QuantizationMethod, Quantized
from tokbench.engine.quantization.int4 import Int4Method
from tokbench.engine.quantization.library import LibraryMethod
from tokbench.engine.quantization.none import Unquantized
from tokbench.engine.quantization.prequantized import PrequantizedMethod, folder_quantization
from tokbench.errors import UnavailableFeatureError
from tokbench.quant.thirdparty import prequantized_method
from tokbench.schema.records import ModelSource

__all__ = [
    "Int4Method",
    "LibraryMethod",
    "PrequantizedMethod",
    "QuantizationMethod",
    "Quantized",
    "Unquantized",
    "method_for",
]


def method_for(config: BenchmarkConfig, source: ModelSource) -> QuantizationMethod:
    """The method ``config`` asks for, on ``source``; a folder that is already quantized is measured as it is.

    Reads the folder's config.json (no weights); asking to quantize an already quantized folder again is an
    ``UnavailableFeatureError``.
    """
    found = folder_quantization(source)
    if found is not None:
        if config.quantization is not None:
            raise UnavailableFeatureError(
                "quantization",
                f"the model folder is already quantized ({prequantized_method(found)}); "
                f"tokbench does not quantize it again with {config.quantization}",
                "drop --quantization to measure the folder as it is",
            )
        return PrequantizedMethod(found)
    if config.quantization is None:
        if source.kind == "hub":  # a Hub model may arrive quantized: known only once it is loaded
            return PrequantizedMethod(None)
        return Unquantized(config)
    if config.quantization == "int4":
        return Int4Method(config)
    return LibraryMethod(config, source)
