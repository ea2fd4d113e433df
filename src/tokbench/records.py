"""Plain records the pipeline stages hand each other and results store: no torch, no transformers.

Kept apart from the stages that produce them so reading a result (``tokbench.load_result``) stays
a cheap, dependency-light operation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class GenerationTrace:
    """Raw record of one generate call. All times are absolute ``perf_counter_ns`` instants.

    ``token_timestamps_ns[r][i]`` is when token ``i`` (0-based) of row ``r`` reached the host.
    """

    t0_ns: int
    end_ns: int
    token_timestamps_ns: tuple[tuple[int, ...], ...]
    prompt_tokens: tuple[int, ...]
    generated_tokens: tuple[int, ...]
    output_shape: tuple[int, ...]
    decoded_sample: str = ""
    sample_token_ids: tuple[int, ...] = ()  # generated ids of row 0, kept when a sample was decoded

    @property
    def batch_size(self) -> int:
        return len(self.token_timestamps_ns)

    @property
    def e2e_ns(self) -> int:
        return self.end_ns - self.t0_ns

    def to_dict(self) -> dict[str, Any]:
        return {
            "t0_ns": self.t0_ns,
            "end_ns": self.end_ns,
            "token_timestamps_ns": [list(row) for row in self.token_timestamps_ns],
            "prompt_tokens": list(self.prompt_tokens),
            "generated_tokens": list(self.generated_tokens),
            "output_shape": list(self.output_shape),
            "decoded_sample": self.decoded_sample,
            "sample_token_ids": list(self.sample_token_ids),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationTrace:
        return cls(
            t0_ns=int(data["t0_ns"]),
            end_ns=int(data["end_ns"]),
            token_timestamps_ns=tuple(tuple(int(t) for t in row) for row in data["token_timestamps_ns"]),
            prompt_tokens=tuple(int(n) for n in data["prompt_tokens"]),
            generated_tokens=tuple(int(n) for n in data["generated_tokens"]),
            output_shape=tuple(int(n) for n in data["output_shape"]),
            decoded_sample=str(data.get("decoded_sample", "")),
            sample_token_ids=tuple(int(n) for n in data.get("sample_token_ids", ())),
        )


@dataclass(frozen=True)
class LoadTimings:
    """Wall time of each loading phase, in ns. ``None`` means the phase did not happen."""

    tokenizer_ns: int | None = None
    weights_ns: int | None = None
    to_device_ns: int | None = None
    quantize_ns: int | None = None
    tune_ns: int | None = None
    tokenizer_cached: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokenizer_ns": self.tokenizer_ns,
            "weights_ns": self.weights_ns,
            "to_device_ns": self.to_device_ns,
            "quantize_ns": self.quantize_ns,
            "tune_ns": self.tune_ns,
            "tokenizer_cached": self.tokenizer_cached,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LoadTimings:
        return cls(**data)


@dataclass(frozen=True)
class DeviceWarmupReport:
    """What a device warmup did: how many matmuls of which size, and for how long."""

    device: str
    matrix_size: int
    matmuls: int
    elapsed_ns: int

    def to_dict(self) -> dict[str, object]:
        return {
            "device": self.device,
            "matrix_size": self.matrix_size,
            "matmuls": self.matmuls,
            "elapsed_ns": self.elapsed_ns,
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> DeviceWarmupReport:
        return cls(
            device=str(data["device"]),
            matrix_size=int(data["matrix_size"]),  # type: ignore[arg-type]
            matmuls=int(data["matmuls"]),  # type: ignore[arg-type]
            elapsed_ns=int(data["elapsed_ns"]),  # type: ignore[arg-type]
        )
