"""Int4 quantization and kernel-tuning records (produced by ``tokbench.quant``)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from tokbench.schema.serde import Record

MEDIAN_SE_PER_IQR = 0.93  # standard error of a median ~ 0.93 * IQR / sqrt(n) (normal approximation)


@dataclass(frozen=True)
class QuantizationReport(Record):
    """What :func:`quantize_model` did, for the runner's load-phase record."""

    layers_quantized: int
    unique_shapes: tuple[tuple[int, int], ...]  # (in_features, out_features)
    bytes_before: int  # dense weights (and biases) of the replaced layers
    bytes_after: int  # packed int4 + scales + zeros (+ biases) of their replacements
    derived_bytes: int  # op-specific copies prepared at quantize time (e.g. native packing)
    group_size: int
    kernel: str
    skipped: tuple[str, ...]  # module names left dense on purpose (the LM head)
    elapsed_ns: int


@dataclass(frozen=True, order=True)
class KernelChoice(Record):
    """One runnable configuration: a kernel and, for split-K kernels, the number of K blocks."""

    kernel: str
    split_k: int = 1

    @property
    def label(self) -> str:
        return f"{self.kernel}/{self.split_k}" if self.kernel in ("splitk", "triton") else self.kernel


@dataclass(frozen=True)
class NativeAvailability(Record):
    """Whether the native int4 op works on a device, and why not when it does not."""

    device_type: str
    available: bool
    reason: str
    torch_version: str


@dataclass(frozen=True)
class MeasurePlan(Record):
    """How a measurement spent its budget."""

    estimate_round_ns: int
    warmup_rounds: int
    timed_rounds: int


@dataclass(frozen=True)
class CandidateTiming(Record):
    """One candidate's timed samples (ns) and their median and interquartile range."""

    choice: KernelChoice
    median_ns: int
    iqr_ns: int
    samples: tuple[int, ...]

    @property
    def dispersion(self) -> float:
        return self.iqr_ns / self.median_ns if self.median_ns > 0 else 0.0

    @property
    def median_standard_error_ns(self) -> float:
        return MEDIAN_SE_PER_IQR * self.iqr_ns / math.sqrt(max(len(self.samples), 1))


CONFIDENCE_CLEAR = "clear"  # the winner beat the runner-up beyond chance: cached
CONFIDENCE_TIE = "tie"  # measured equal within a few percent: the simpler one is as good a pick; cached
CONFIDENCE_NOISE = "noise"  # could not separate the candidates from the noise: used for this run, never cached


@dataclass(frozen=True)
class PickConfidence(Record):
    """How sure the tuner is of one pick (``tokbench.quant.tune.selection.pick_confidence``), and why."""

    OMIT_NONE = True

    level: str  # CONFIDENCE_CLEAR | CONFIDENCE_TIE | CONFIDENCE_NOISE
    reason: str
    runner_up: str | None = None  # the fastest other candidate it was tested against
    rounds_won: int | None = None  # paired rounds the winner was faster / slower in (ties left out)
    rounds_lost: int | None = None
    p_value: float | None = None  # exact two-sided sign test on those rounds
    noise_band: float | None = None  # 2 standard errors of the difference of medians, relative to the winner's
    clock_step: float | None = None  # the smallest step between distinct timings, relative to the winner's median

    @property
    def cacheable(self) -> bool:
        return self.level != CONFIDENCE_NOISE


@dataclass(frozen=True)
class ShapeTuning(Record):
    """Tuning of one layer shape at one M."""

    in_features: int
    out_features: int
    group_size: int
    m: int
    phase: str  # "prefill", "decode" or "prefill+decode" (sequence_length 1)
    layers: int  # how many layers of the model have this shape
    candidates: tuple[CandidateTiming, ...]
    winner: KernelChoice
    default: KernelChoice  # always timed (as a baseline when it is not a candidate)
    speedup_vs_default: float | None  # default's median / winner's median; None if the default failed
    from_cache: bool
    tie_break: bool
    high_dispersion: bool
    plan: MeasurePlan | None  # None when the entry came from the cache
    tuning_ns: int
    rejected: tuple[tuple[str, str], ...] = ()  # (label, reason) of candidates whose first call failed
    confidence: PickConfidence | None = None  # absent in reports written before the tuner said it

    def timing_of(self, choice: KernelChoice) -> CandidateTiming | None:
        return next((t for t in self.candidates if t.choice == choice), None)


@dataclass(frozen=True)
class TuningReport(Record):
    """Everything :func:`tune_model` measured and decided."""

    device: str
    device_type: str
    dtype: str
    torch_version: str
    batch_size: int
    sequence_length: int
    budget_s_per_shape: float
    entries: tuple[ShapeTuning, ...]
    warmup_ns: int  # device warmup before timing (0 when everything came from the cache)
    total_tuning_ns: int  # wall time of the whole call, warmup included
    cache_dir: str | None

    @property
    def cache_hits(self) -> int:
        return sum(1 for e in self.entries if e.from_cache)


@dataclass(frozen=True)
class QuantizationSettings(Record):
    """What the quantized layers of a loaded model run: per layer shape, the kernel at prefill M and decode M."""

    method: str
    group_size: int | None = None  # None: a third-party method, which picks its own grouping and kernels
    layers: int | None = None
    tuned: bool = False
    kernels: dict[str, dict[str, str]] = field(default_factory=dict)  # "4096x4096" -> {"decode M=1": "native"}


@dataclass(frozen=True)
class QuantizationMethodRecord(Record):
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

@dataclass(frozen=True)
class QuantizationFingerprint(Record):
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
    def compare(
        cls, reference: Sequence[int], quantized: Sequence[int], reference_text: str = ""
    ) -> QuantizationFingerprint:
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


@dataclass(frozen=True)
class QuantizationRecord(Record):
    """The result's ``quantization``: what quantizing did and what tuning decided; empty when unquantized."""

    OMIT_NONE = True

    report: QuantizationReport | None = None
    tuning: TuningReport | None = None
    tuning_warnings: tuple[str, ...] | None = None  # the tuner's warnings, kept for the result
    # Any quantization (tokbench's int4, a third-party library, or a pre-quantized folder): which, how, how big.
    method: QuantizationMethodRecord | None = None
    # Once the validation call ran: its tokens next to the unquantized model's on the same prompt.
    fingerprint: QuantizationFingerprint | None = None

    def __bool__(self) -> bool:
        return self.report is not None or self.tuning is not None or self.method is not None
