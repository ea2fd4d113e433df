"""Quantization by a library through transformers' ``quantization_config``: torchao, optimum-quanto, bitsandbytes.

The library is probed before any weight is read (``quant.thirdparty.check_available``); ``apply`` then loads the
weights again through transformers with the method's ``quantization_config``, as a user would, timed as the
"quantize" phase.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokbench.config import BenchmarkConfig
from tokbench.engine.quantization.base import Quantized
from tokbench.errors import ModelMismatchError
from tokbench.hardware.devices import synchronize, torch_dtype
from tokbench.quant import thirdparty
from tokbench.schema.quant import QuantizationRecord, QuantizationSettings
from tokbench.schema.records import ModelSource

if TYPE_CHECKING:
    import torch

    from tokbench.clock import Clock


class LibraryMethod:
    changes_weights = True
    places_weights = False  # the unquantized load is placed as usual; ``apply`` loads the quantized one in place

    def __init__(self, config: BenchmarkConfig, source: ModelSource) -> None:
        self._config = config
        self._source = source
        self.name = config.quantization or ""

    def check(self, device: torch.device) -> None:
        config = self._config
        thirdparty.check_available(self.name, device, torch_dtype(config.dtype), config.group_size)

    def check_provided(self, model: Any) -> None:
        if getattr(getattr(model, "config", None), "quantization_config", None) is None:
            raise ModelMismatchError(
                "quantization",
                f"the model passed in has no quantization_config, the config says {self.name}",
                "pass the model loaded with its quantization_config, or drop quantization",
            )

    def apply(self, model: Any, device: torch.device, clock: Clock, *, provided: bool) -> Quantized:
        """Reload the weights through transformers with the method's ``quantization_config``.

        transformers quantizes while it loads, so the quantize phase includes reading the weights again
        (from a temporary save of the seeded weights for a preset). The unquantized model is dropped first.
        A passed-in model was loaded quantized by its caller: nothing to do.
        """
        if provided:
            return Quantized(model)
        config = self._config
        # The model's own layer shapes, probed before its weights are read again: a kernel that refuses one is skipped.
        thirdparty.check_model_shapes(self.name, model, device, torch_dtype(config.dtype), config.group_size)
        folder = thirdparty.saved_for_loading(model) if self._source.kind == "preset" else None
        location = folder.name if folder is not None else self._source.identifier
        del model
        try:
            start_ns = clock()
            quantized = thirdparty.load_quantized(
                self.name,
                location,
                dtype=torch_dtype(config.dtype),
                group_size=config.group_size,
                attn_implementation=config.attn_implementation,
                device=device,
                trust_remote_code=config.trust_remote_code,
            )
            synchronize(device)
            quantize_ns = clock() - start_ns
        finally:
            if folder is not None:
                folder.cleanup()
        record = QuantizationRecord(method=thirdparty.method_record(self.name, quantized, config.group_size))
        return Quantized(quantized, quantize_ns, None, record)

    def settings(self, model: Any, device: torch.device) -> QuantizationSettings:
        # the library picks its own kernels; none is tokbench's to report
        return QuantizationSettings(method=self.name, tuned=False, kernels={})
