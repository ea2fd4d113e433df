"""tokbench's own int4 (``quant.quantize_model``) and its kernel tuning (``quant.tune``), each a timed load phase."""

from __future__ import annotations

import warnings
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from tokbench.config import BenchmarkConfig
from tokbench.engine.efficiency import weight_facts
from tokbench.engine.quantization.base import Quantized
from tokbench.errors import ModelMismatchError
from tokbench.hardware.devices import synchronize
from tokbench.quant import QuantizedLinear, quantize_model
from tokbench.quant.tune import tune_model
from tokbench.schema.quant import QuantizationMethodRecord, QuantizationRecord, QuantizationSettings, TuningReport
from tokbench.version import __version__

if TYPE_CHECKING:
    import torch

    from tokbench.clock import Clock


class Int4Method:
    name = "int4"
    changes_weights = True
    places_weights = False

    def __init__(self, config: BenchmarkConfig) -> None:
        self._config = config

    def check(self, device: torch.device) -> None:
        return None  # a pinned kernel this device lacks fails in quantize_model, before any layer is replaced

    def check_provided(self, model: Any) -> None:
        if not any(isinstance(module, QuantizedLinear) for module in model.modules()):
            raise ModelMismatchError(
                "quantization",
                "the model passed in is not int4-quantized, the config says int4",
                "pass a model quantized with tokbench.quant.quantize_model, or set quantization to match",
            )

    def apply(self, model: Any, device: torch.device, clock: Clock, *, provided: bool) -> Quantized:
        """The quantize and tune phases, each timed on its own; a passed-in model is only tuned (if asked)."""
        config = self._config
        quantize_ns = tune_ns = None
        record = QuantizationRecord()
        if not provided:
            start_ns = clock()
            record = replace(record, report=quantize_model(model, config.group_size, config.quant_kernel))
            synchronize(device)
            quantize_ns = clock() - start_ns
            record = replace(record, method=self._method_record(model))
        if config.tune:
            start_ns = clock()
            tuning, warned = self._tune(model, device, clock)
            tune_ns = clock() - start_ns
            record = replace(record, tuning=tuning, tuning_warnings=warned)
        return Quantized(model, quantize_ns, tune_ns, record)

    def _tune(self, model: Any, device: torch.device, clock: Clock) -> tuple[TuningReport, tuple[str, ...]]:
        config = self._config
        # The tuner's warnings (noisy timings, rejected candidates, bad cache entries) belong to the
        # result, not to stderr in the middle of a progress bar.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            tuning = tune_model(
                model,
                config.batch_size,
                max(config.prompt_lengths),
                device=device,
                budget_s_per_shape=config.tune_budget_s,
                clock=clock,
                prefill_rows=config.prefill_rows,
            )
        return tuning, tuple(f"{w.category.__name__}: {w.message}" for w in caught)

    def _method_record(self, model: Any) -> QuantizationMethodRecord:
        config = self._config
        return QuantizationMethodRecord(
            method="int4",
            library="tokbench",
            library_version=__version__,
            settings={"group_size": config.group_size, "quant_kernel": config.quant_kernel, "tune": config.tune},
            quantized_weight_bytes=weight_facts(model).weight_bytes,
            layer_types=("QuantizedLinear",),
        )

    def settings(self, model: Any, device: torch.device) -> QuantizationSettings:
        """Per layer shape, the kernel each quantized layer runs for the prefill and the decode row counts."""
        config = self._config
        layers = [module for module in model.modules() if isinstance(module, QuantizedLinear)]
        row_counts = {"decode": config.batch_size, "prefill": config.prefill_rows}
        kernels: dict[str, dict[str, str]] = {}
        for layer in layers:
            label = f"{layer.in_features}x{layer.out_features}"
            if label not in kernels:
                kernels[label] = {
                    f"{phase} M={m}": layer.choice_for(m, device, layer.compute_dtype).label
                    for phase, m in row_counts.items()
                }
        return QuantizationSettings(
            method="int4",
            group_size=layers[0].group_size if layers else None,
            layers=len(layers),
            tuned=any(layer.dispatch for layer in layers),
            kernels=kernels,
        )
