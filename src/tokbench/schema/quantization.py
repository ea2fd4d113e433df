"""Records of how a model was quantized and how far its outputs moved: no torch, no transformers.

A result's ``quantization`` mapping holds ``method`` (``QuantizationMethodRecord.to_dict()``) and
``fingerprint`` (``OutputFingerprint.to_dict()``) next to the int4 ``report`` / ``tuning`` entries.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class QuantizationMethodRecord:
    """Which library quantized the weights, with what settings, and what the quantized weights weigh.

    ``prequantized`` is true for a model folder that was already quantized (its config.json holds a
    ``quantization_config``): loaded as it is, never quantized again by tokbench.
    """

    method: str  # tokbench's name ("torchao-int8", "int4") or "prequantized:<quant_method>"
    library: str  # distribution name ("torchao", "optimum-quanto", "bitsandbytes", "tokbench")
    library_version: str
    settings: dict[str, Any] = field(default_factory=dict)  # the library config as transformers serializes it
    prequantized: bool = False
    quantized_weight_bytes: int | None = None  # every parameter and quantization buffer once
    layer_types: tuple[str, ...] = ()  # the classes of the quantized linear layers / weights

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "library": self.library,
            "library_version": self.library_version,
            "settings": self.settings,
            "prequantized": self.prequantized,
            "quantized_weight_bytes": self.quantized_weight_bytes,
            "layer_types": list(self.layer_types),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> QuantizationMethodRecord:
        values = dict(data)
        values["layer_types"] = tuple(data.get("layer_types", ()))
        values["settings"] = dict(data.get("settings", {}))
        return cls(**values)


@dataclass(frozen=True)
class OutputFingerprint:
    """Greedy tokens of the unquantized and the quantized model on the same prompt, and how well they agree.

    ``agreement`` = positions where both generated the same token ÷ positions compared (row 0, every
    generated token); ``first_divergence`` is the 0-based position of the first difference (None if none).
    Once the outputs diverge, later positions continue different texts, so the first divergence says more
    than the ratio about how early the quantization changed the output.
    """

    reference_token_ids: tuple[int, ...]
    quantized_token_ids: tuple[int, ...]
    agreement: float
    first_divergence: int | None
    compared_tokens: int
    reference: str = "the same weights unquantized, same dtype, same prompt, greedy"

    @classmethod
    def compare(cls, reference: Sequence[int], quantized: Sequence[int], reference_text: str = "") -> OutputFingerprint:
        compared = min(len(reference), len(quantized))
        if compared == 0:
            raise ValueError("an output fingerprint needs at least one generated token on each side")
        same = [reference[i] == quantized[i] for i in range(compared)]
        first = next((i for i, equal in enumerate(same) if not equal), None)
        extra = {"reference": reference_text} if reference_text else {}
        return cls(
            reference_token_ids=tuple(int(t) for t in reference),
            quantized_token_ids=tuple(int(t) for t in quantized),
            agreement=sum(same) / compared,
            first_divergence=first,
            compared_tokens=compared,
            **extra,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "reference_token_ids": list(self.reference_token_ids),
            "quantized_token_ids": list(self.quantized_token_ids),
            "agreement": self.agreement,
            "first_divergence": self.first_divergence,
            "compared_tokens": self.compared_tokens,
            "reference": self.reference,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OutputFingerprint:
        values = dict(data)
        values["reference_token_ids"] = tuple(data["reference_token_ids"])
        values["quantized_token_ids"] = tuple(data["quantized_token_ids"])
        return cls(**values)
