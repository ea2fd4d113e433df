"""No quantization: the model is measured with the weights it was loaded with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokbench.config import BenchmarkConfig
from tokbench.engine.quantization.base import Quantized
from tokbench.errors import ModelMismatchError
from tokbench.schema.quant import QuantizationSettings

if TYPE_CHECKING:
    import torch

    from tokbench.clock import Clock


class Unquantized:
    name = "none"
    changes_weights = False
    places_weights = False

    def __init__(self, config: BenchmarkConfig) -> None:
        self._config = config

    def check(self, device: torch.device) -> None:
        return None

    def check_provided(self, model: Any) -> None:
        from tokbench.quant import QuantizedLinear

        if any(isinstance(module, QuantizedLinear) for module in model.modules()):
            raise ModelMismatchError(
                "quantization",
                "the model passed in is int4-quantized, the config says no quantization",
                "pass a model quantized with tokbench.quant.quantize_model, or set quantization to match",
            )

    def apply(self, model: Any, device: torch.device, clock: Clock, *, provided: bool) -> Quantized:
        return Quantized(model)

    def settings(self, model: Any, device: torch.device) -> QuantizationSettings | None:
        return None
