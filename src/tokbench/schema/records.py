"""Plain records the pipeline stages hand each other and results store: no torch, no transformers.

Kept apart from the stages that produce them so reading a result (``tokbench.load_result``) stays
a cheap, dependency-light operation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from tokbench.schema.quant import QuantizationSettings
from tokbench.schema.serde import Record


@dataclass(frozen=True)
class GenerationTrace(Record):
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


@dataclass(frozen=True)
class LoadTimings(Record):
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


@dataclass(frozen=True)
class DeviceWarmupReport(Record):
    """What a device warmup did: how many matmuls of which size, and for how long."""

    device: str
    matrix_size: int
    matmuls: int
    elapsed_ns: int


@dataclass(frozen=True)
class ContinuousBatchingSetup(Record):
    """The continuous-batching manager's one-time setup, done before the validation call and never timed
    as part of an iteration: creation (paged KV cache allocation) plus warmup, and the sizing it got.

    ``start_ns`` / ``end_ns`` are absolute clock instants, so a reader can check the setup lies outside
    every iteration. ``settings`` is the library's resolved config (page size, blocks, batch limits...).
    """

    start_ns: int
    end_ns: int
    attn_implementation: str  # what the manager runs (eager becomes paged|eager)
    settings: dict[str, Any] = field(default_factory=dict)

    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ("elapsed_ns",)

    @property
    def elapsed_ns(self) -> int:
        return self.end_ns - self.start_ns


@dataclass(frozen=True)
class OperatorTime(Record):
    """One operator's totals in a profile: self time (excluding children) on the CPU and the device."""

    name: str
    calls: int
    self_cpu_us: float
    self_device_us: float


@dataclass(frozen=True)
class ProfileRecord(Record):
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


@dataclass(frozen=True)
class ModelSource(Record):
    """Where a model comes from: a built-in preset, a local folder, or a Hugging Face Hub id.

    Both fields are empty in a result that failed before the model was resolved (stored as ``{}``).
    """

    OMIT_NONE = True

    kind: str | None = None  # "preset" | "local" | "hub" | "provided" (a model object passed in by the caller)
    identifier: str | None = None

    def __bool__(self) -> bool:
        return self.kind is not None


@dataclass(frozen=True)
class EffectiveSettings(Record):
    """What the loaded model really ran with, next to what the config asked for; empty (``{}``) when
    the run failed before loading. ``generation_config`` is transformers' own diff against its defaults."""

    OMIT_NONE = True

    device: str | None = None
    dtype: str | None = None
    attn_implementation: str | None = None
    use_kernels: bool | None = None
    parameters: int | None = None
    generation_config: dict[str, Any] | None = None
    quantization: QuantizationSettings | None = None  # only when the model was quantized
    # "inference_mode" | "no_grad": what every call's forwards were checked to run under (engine.gradmode);
    # absent in results stored before the field existed (they ran under no_grad).
    grad_mode: str | None = None

    def __bool__(self) -> bool:
        return self.device is not None


@dataclass(frozen=True)
class LaunchGroup(Record):
    """The load group a config ran in: its position, the group's size, which worker (1 = first) ran it."""

    OMIT_NONE = True

    index: int = 0
    size: int = 1
    worker: int = 1
    worker_wall_ns: int | None = None  # the worker's wall time up to this config's result


@dataclass(frozen=True)
class DuetRecord(Record):
    """A process of a duet pair (``tokbench ab --duet``, ``sweep.duet``): its measured calls took turns, one each
    round, with its partner's (the other side's process of the same pair), which ran at the same time."""

    side: str  # this process's side: "a" | "b"
    rounds: int  # rounds measured: this process's measured calls
    first: str  # per round, the side that measured first ("abba..."): with the call timestamps, the rounds
    ended: str  # why the pair stopped measuring
    partner_pid: int | None = None


@dataclass(frozen=True)
class RayPlacement(Record):
    """Where a Ray task ran a config, or why it never returned one (``error``)."""

    OMIT_NONE = True

    node_id: str | None = None
    node_ip: str | None = None
    task_id: str | None = None
    gpu_ids: tuple[str, ...] | None = None
    worker_pid: int | None = None
    cuda_visible_devices: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class LaunchRecord(Record):
    """How a launcher produced a result (``tokbench.sweep.launchers``); empty for a plain ``run``.

    Each field is written only when it applies, so the stored object keeps the keys it always had.
    """

    OMIT_NONE = True

    launcher: str | None = None  # "inline" | "process" | "none (skipped before launching)"
    planned_launcher: str | None = None  # the launcher a config skipped up front would have used
    pid: int | None = None
    compile_cache: str | None = None
    timeout_s: float | None = None
    start_method: str | None = None  # "forkserver" | "spawn"
    forkserver_pid: int | None = None
    forkserver_start_s: float | None = None  # the fork server's start, paid by the first config it ran
    forkserver_error: str | None = None
    fallback: str | None = None
    wall_ns: int | None = None
    exit_code: int | None = None
    signal: str | None = None
    stderr_tail: str | None = None
    sweep_id: str | None = None
    repeat_index: int | None = None
    # Sweep executors (``tokbench.sweep.executors``): which ran it, and on which slot / GPUs / Ray node.
    executor: str | None = None  # "local" | "ray"
    parallel: int | None = None  # slots of a parallel local executor
    slot: int | None = None
    gpus: tuple[str, ...] | None = None  # the GPUs the child saw (CUDA_VISIBLE_DEVICES entries: index or UUID)
    child_environment: dict[str, str] | None = None
    threads: int | None = None  # torch threads the executor's thread policy gave the child (sweep.threads)
    group: LaunchGroup | None = None
    ray: RayPlacement | None = None
    duet: DuetRecord | None = None  # a duet pair's process (``tokbench ab --duet``)

    def __bool__(self) -> bool:
        return any(getattr(self, name) is not None for name in self.__dataclass_fields__)


@dataclass(frozen=True)
class LibraryMessage(Record):
    """One distinct message a library logged, warned or printed, held back from the terminal
    (``engine.quiet``): who said it, at which level, and how often."""

    origin: str  # the library ("torchao", "bitsandbytes", "torch"...)
    level: str  # a logging level ("warning"...), or "output": a line C or C++ code printed
    text: str
    count: int = 1
