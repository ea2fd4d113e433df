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

    Plain ``generate`` submits every row at ``t0_ns`` and returns them all at ``end_ns``. Continuous
    batching submits and finishes each request on its own: ``request_submitted_ns[r]`` is the instant
    request ``r`` was handed to the manager, ``request_finished_ns[r]`` when its finished output reached
    the caller; ``t0_ns`` is then the first submission and ``end_ns`` the last finish. Empty means "as
    the call" (the plain path).
    """

    t0_ns: int
    end_ns: int
    token_timestamps_ns: tuple[tuple[int, ...], ...]
    prompt_tokens: tuple[int, ...]
    generated_tokens: tuple[int, ...]
    output_shape: tuple[int, ...]
    decoded_sample: str = ""
    sample_token_ids: tuple[int, ...] = ()  # generated ids of row 0, kept when a sample was decoded
    request_submitted_ns: tuple[int, ...] = ()
    request_finished_ns: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        for name in ("request_submitted_ns", "request_finished_ns"):
            values = getattr(self, name)
            if values and len(values) != len(self.token_timestamps_ns):
                raise ValueError(f"{name} has {len(values)} entries for {len(self.token_timestamps_ns)} rows")

    @property
    def batch_size(self) -> int:
        return len(self.token_timestamps_ns)

    @property
    def per_request_timing(self) -> bool:
        """Whether rows were submitted on their own (continuous batching), not in one lockstep call."""
        return bool(self.request_submitted_ns)

    def submitted_ns(self, row: int) -> int:
        """When request ``row`` started: its own submission, or the call's ``t0_ns``."""
        return self.request_submitted_ns[row] if self.request_submitted_ns else self.t0_ns

    def finished_ns(self, row: int) -> int:
        """When request ``row``'s result reached the caller: its own finish, or the call's ``end_ns``."""
        return self.request_finished_ns[row] if self.request_finished_ns else self.end_ns

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
            "request_submitted_ns": list(self.request_submitted_ns),
            "request_finished_ns": list(self.request_finished_ns),
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
            request_submitted_ns=tuple(int(t) for t in data.get("request_submitted_ns", ())),
            request_finished_ns=tuple(int(t) for t in data.get("request_finished_ns", ())),
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
    # A sweep's load group: one load measured several configs (``tokbench.engine.shared_load``); every one
    # of them carries these same timings, ``shared`` set and ``shared_by`` the number of configs.
    shared: bool = False
    shared_by: int = 1

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokenizer_ns": self.tokenizer_ns,
            "weights_ns": self.weights_ns,
            "to_device_ns": self.to_device_ns,
            "quantize_ns": self.quantize_ns,
            "tune_ns": self.tune_ns,
            "tokenizer_cached": self.tokenizer_cached,
            "shared": self.shared,
            "shared_by": self.shared_by,
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


@dataclass(frozen=True)
class ContinuousBatchingSetup:
    """The continuous-batching manager's one-time setup, done before the validation call and never timed
    as part of an iteration: creation (paged KV cache allocation) plus warmup, and the sizing it got.

    ``start_ns`` / ``end_ns`` are absolute clock instants, so a reader can check the setup lies outside
    every iteration. ``settings`` is the library's resolved config (page size, blocks, batch limits...).
    """

    start_ns: int
    end_ns: int
    attn_implementation: str  # what the manager runs (eager becomes paged|eager)
    settings: dict[str, Any]

    @property
    def elapsed_ns(self) -> int:
        return self.end_ns - self.start_ns

    def to_dict(self) -> dict[str, Any]:
        return {
            "start_ns": self.start_ns,
            "end_ns": self.end_ns,
            "elapsed_ns": self.elapsed_ns,
            "attn_implementation": self.attn_implementation,
            "settings": dict(self.settings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ContinuousBatchingSetup:
        return cls(
            start_ns=int(data["start_ns"]),
            end_ns=int(data["end_ns"]),
            attn_implementation=str(data["attn_implementation"]),
            settings=dict(data.get("settings", {})),
        )


@dataclass(frozen=True)
class OperatorTime:
    """One operator's totals in a profile: self time (excluding children) on the CPU and the device."""

    name: str
    calls: int
    self_cpu_us: float
    self_device_us: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "calls": self.calls,
            "self_cpu_us": self.self_cpu_us,
            "self_device_us": self.self_device_us,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OperatorTime:
        return cls(
            name=str(data["name"]),
            calls=int(data["calls"]),
            self_cpu_us=float(data["self_cpu_us"]),
            self_device_us=float(data["self_device_us"]),
        )


@dataclass(frozen=True)
class ProfileRecord:
    """One profiled generation of ``tokens`` tokens per request, run after measurement.

    ``trace_path`` is a gzipped Chrome / Perfetto trace JSON; each model forward in it is a
    ``tokbench.forward`` event. ``top_operators`` are sorted by self time (device time when profiled).
    """

    tokens: int
    trace_path: str
    forward_passes: int
    elapsed_ns: int
    activities: tuple[str, ...]
    top_operators: tuple[OperatorTime, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.tokens,
            "trace_path": self.trace_path,
            "forward_passes": self.forward_passes,
            "elapsed_ns": self.elapsed_ns,
            "activities": list(self.activities),
            "top_operators": [op.to_dict() for op in self.top_operators],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ProfileRecord:
        return cls(
            tokens=int(data["tokens"]),
            trace_path=str(data["trace_path"]),
            forward_passes=int(data["forward_passes"]),
            elapsed_ns=int(data["elapsed_ns"]),
            activities=tuple(str(a) for a in data.get("activities", ())),
            top_operators=tuple(OperatorTime.from_dict(op) for op in data.get("top_operators", ())),
        )
