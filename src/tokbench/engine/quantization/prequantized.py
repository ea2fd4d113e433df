"""A model that is already quantized (a saved folder, or a Hub model that arrives quantized), measured as it is.

Its ``quantization_config`` is read from the folder's config.json before any weight is read, and transformers'
own quantizer for it is checked (``quant.thirdparty.check_prequantized_loadable``): a library this machine lacks
is a skip with transformers' reason. A Hub model's is known only once it is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokbench.engine.quantization.base import Quantized
from tokbench.quant import thirdparty
from tokbench.schema.quant import QuantizationRecord
from tokbench.schema.records import ModelSource

if TYPE_CHECKING:
    import torch

    from tokbench.clock import Clock


def folder_quantization(source: ModelSource) -> dict[str, Any] | None:
    """The ``quantization_config`` a local folder's config.json names, else None."""
    return thirdparty.folder_quantization_config(source.identifier) if source.kind == "local" else None


class PrequantizedMethod:
    name = "prequantized"
    changes_weights = False

    def __init__(self, found: dict[str, Any] | None) -> None:
        """``found``: the folder's ``quantization_config``; None for a Hub model (read from it once loaded)."""
        self._found = found
        # transformers' quantizer placed the folder's weights while loading; they cannot be moved after
        self.places_weights = found is not None

    def check(self, device: torch.device) -> None:
        if self._found is not None:
            thirdparty.check_prequantized_loadable(self._found)

    def check_provided(self, model: Any) -> None:
        return None  # never chosen for a passed-in model

    def apply(self, model: Any, device: torch.device, clock: Clock, *, provided: bool) -> Quantized:
        found = self._found if self._found is not None else _loaded_quantization(model)
        if found is None:
            return Quantized(model)
        return Quantized(model, record=QuantizationRecord(method=thirdparty.prequantized_record(model, found)))

    def settings(self, model: Any, device: torch.device) -> None:
        return None  # no quantization was asked for


def _loaded_quantization(model: Any) -> dict[str, Any] | None:
    """The ``quantization_config`` a loaded model carries (a Hub model that arrived quantized), else None."""
    found = getattr(getattr(model, "config", None), "quantization_config", None)
    if found is None:
        return None
    return found if isinstance(found, dict) else found.to_dict()
