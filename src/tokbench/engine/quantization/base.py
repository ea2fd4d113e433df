"""The quantization-method protocol and what ``apply`` returns (see ``engine.quantization``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tokbench.schema.quant import QuantizationRecord, QuantizationSettings

if TYPE_CHECKING:
    import torch

    from tokbench.clock import Clock


@dataclass(frozen=True)
class Quantized:
    """What ``apply`` hands back: the model to measure, the two timed load phases, the record."""

    model: Any
    quantize_ns: int | None = None
    tune_ns: int | None = None
    record: QuantizationRecord = field(default_factory=QuantizationRecord)


class QuantizationMethod(Protocol):
    """One way the config's quantization reaches the model (see the module docstring for the call order)."""

    name: str
    # Whether ``apply`` changes the loaded weights: the unquantized model's greedy tokens are then taken first,
    # as the reference of the result's output fingerprint.
    changes_weights: bool
    # Whether the weights are placed on the device by the method's own loader (a pre-quantized model cannot
    # be moved with ``.to`` afterwards): the loader then leaves placement alone.
    places_weights: bool

    def check(self, device: torch.device) -> None:
        """Before any weight is read: raise ``UnavailableFeatureError`` unless the method runs here."""
        ...

    def check_provided(self, model: Any) -> None:
        """A passed-in model must already carry this method: raise ``ModelMismatchError`` otherwise."""
        ...

    def apply(self, model: Any, device: torch.device, clock: Clock, *, provided: bool) -> Quantized:
        """Quantize (and tune) ``model``, timing each phase; a passed-in model is never re-quantized."""
        ...

    def settings(self, model: Any, device: torch.device) -> QuantizationSettings | None:
        """What the quantized layers will really run (None without a quantization the config asked for)."""
        ...
