"""Records of a serving benchmark: load settings, each HTTP request's raw stamps, the endpoint's capabilities.

A serving run is stored as a ``BenchmarkResult`` whose ``serving`` field holds a ``ServingRecord``. Its
``iterations`` are the successful requests grouped into blocks of consecutive sends (``GenerationTrace`` with
per-request submission and finish stamps), so every metric, summary, comparison and change point is the one
defined in ``analysis`` for in-process runs. Every time is an absolute ``perf_counter_ns`` instant (on Linux
CLOCK_MONOTONIC, shared by every process of the machine, so a mock server's own stamps compare directly).
No torch, no network.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from tokbench.schema.serde import Record

APIS = ("completions", "chat")
LOAD_MODES = ("concurrency", "rate")
ARRIVALS = ("constant", "poisson", "gamma")
LENGTH_KINDS = ("fixed", "uniform", "normal", "lognormal", "dataset")
# How the k tokens of one SSE event are stamped: all at the event's arrival (the instant they became
# available to the client); nothing is interpolated between events.
STAMPING_EVENT_ARRIVAL = "event_arrival"
# Where the tokens of an event were counted.
TOKENS_FROM_USAGE = "usage_deltas"  # the server's cumulative usage.completion_tokens in each chunk (vLLM)
TOKENS_FROM_TOKENIZER = "tokenizer"  # the served model's tokenizer on each event's text delta
TOKENS_FROM_USAGE_TOTAL = "usage_total"  # the final usage equals the text events: one token each, exactly
TOKENS_FROM_EVENTS = "one_per_event"  # no tokenizer and no usage: one token per content event (stated)

# Request outcomes ("ok" or an error kind).
REQUEST_OK = "ok"
ERROR_KINDS = (
    "http_4xx", "http_429", "http_5xx", "timeout", "connection_refused", "connection_error", "disconnected",
    "malformed_stream", "line_too_long", "stalled", "stream_error", "no_tokens", "redirect_refused",
    "client_failed",  # the client process that owned the request ended without its results (``serving.clients``)
)  # fmt: skip

_WORKLOAD_VERSION = "tokbench-serving-workload-v1"


@dataclass(frozen=True)
class LengthSpec(Record):
    """Tokens per request: fixed, or a seeded distribution clipped to [minimum, maximum], or a dataset's own."""

    OMIT_NONE = True

    kind: str = "fixed"
    value: int | None = None  # fixed
    minimum: int | None = None
    maximum: int | None = None
    mean: float | None = None  # normal / lognormal: of the token count
    std: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in LENGTH_KINDS:
            raise ValueError(f"length kind must be one of {LENGTH_KINDS}, got {self.kind!r}")

    def describe(self) -> str:
        if self.kind == "fixed":
            return str(self.value)
        if self.kind == "uniform":
            return f"uniform:{self.minimum}:{self.maximum}"
        if self.kind == "dataset":
            return "dataset"
        return f"{self.kind}:{self.mean:g}:{self.std:g}"


@dataclass(frozen=True)
class ServingSettings(Record):
    """What load was offered to the endpoint: the API, the served model, the arrival process, the lengths."""

    api: str
    model: str
    load: str  # "concurrency" (closed loop) | "rate" (open loop)
    concurrency: int | None = None
    rate: float | None = None  # requests per second (open loop); None with a closed loop
    arrival: str = "constant"
    burstiness: float = 1.0  # gamma shape: 1 is Poisson, below 1 burstier, above 1 more regular
    requests: int = 0  # measured requests (after warmup)
    warmup_requests: int = 0
    input_tokens: LengthSpec = field(default_factory=LengthSpec)
    output_tokens: LengthSpec = field(default_factory=LengthSpec)
    dataset: str = ""  # "NAME sha256:HEX" of a dataset file, "" for synthetic prompts
    seed: int = 0
    lag_budget_ms: float = 1.0  # p99 send lag above this marks an open-loop run invalid
    timeout_s: float = 60.0
    stall_timeout_s: float = 30.0  # no byte for this long mid-stream: the request is "stalled"
    label: str = ""  # which server (a name, a version): not part of the workload

    def __post_init__(self) -> None:
        if self.api not in APIS:
            raise ValueError(f"api must be one of {APIS}, got {self.api!r}")
        if self.load not in LOAD_MODES:
            raise ValueError(f"load must be one of {LOAD_MODES}, got {self.load!r}")
        if self.arrival not in ARRIVALS:
            raise ValueError(f"arrival must be one of {ARRIVALS}, got {self.arrival!r}")
        # one JSON form for every number (40 and 40.0 would hash differently)
        for name in ("burstiness", "lag_budget_ms", "timeout_s", "stall_timeout_s"):
            object.__setattr__(self, name, float(getattr(self, name)))
        if self.rate is not None:
            object.__setattr__(self, "rate", float(self.rate))

    def workload_payload(self) -> dict[str, Any]:
        """What is measured, without how long or on which server: two servers of one workload compare."""
        return {
            "api": self.api,
            "model": self.model,
            "load": self.load,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "arrival": self.arrival if self.load == "rate" else None,
            "burstiness": self.burstiness if self.arrival == "gamma" and self.load == "rate" else None,
            "input": self.input_tokens.to_dict(),
            "output": self.output_tokens.to_dict(),
            "dataset": self.dataset.split(" ")[-1] if self.dataset else "",
        }

    @property
    def workload_hash(self) -> str:
        canonical = json.dumps([_WORKLOAD_VERSION, self.workload_payload()], sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:16]

    def describe_load(self) -> str:
        if self.load == "concurrency":
            return f"concurrency {self.concurrency}"
        shape = f"gamma({self.burstiness:g})" if self.arrival == "gamma" else self.arrival
        return f"{self.rate:g} req/s {shape}"


@dataclass(frozen=True)
class RequestRecord(Record):
    """One HTTP request, raw. ``intended_ns`` is when the schedule said to send it (open loop) or when its
    slot freed (closed loop); ``sent_ns`` when its first byte was written; latencies count from ``intended_ns``.
    ``event_ns[i]`` is the arrival of the i-th SSE event that carried text, ``event_tokens[i]`` its tokens."""

    OMIT_NONE = True

    index: int
    intended_ns: int
    sent_ns: int
    end_ns: int
    status: str = REQUEST_OK  # "ok" or one of ERROR_KINDS
    error: str | None = None  # what went wrong, terminal-safe and bounded
    http_status: int | None = None
    warmup: bool = False
    prompt_tokens: int = 0  # what the client built (exact with a tokenizer)
    usage_prompt_tokens: int | None = None  # what the server said it read
    usage_completion_tokens: int | None = None
    event_ns: tuple[int, ...] = ()
    event_tokens: tuple[int, ...] = ()
    first_byte_ns: int | None = None  # the response's first byte (headers)
    role_only_first_chunk: bool | None = None
    saw_done: bool | None = None
    finish_reason: str | None = None
    reads: int | None = None  # socket reads that delivered the stream (events per read = coalescing)
    iteration: int | None = None  # where its stamps are in the result's iterations (block, row)
    row: int | None = None
    client: int | None = None  # which client process sent it, when several offered the load (``--clients``)

    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ()

    @property
    def ok(self) -> bool:
        return self.status == REQUEST_OK

    @property
    def output_tokens(self) -> int:
        return sum(self.event_tokens)

    @property
    def send_lag_ns(self) -> int:
        return self.sent_ns - self.intended_ns

    def token_stamps(self) -> tuple[int, ...]:
        """One stamp per token: each token of an event at that event's arrival."""
        stamps: list[int] = []
        for instant, tokens in zip(self.event_ns, self.event_tokens, strict=True):
            stamps.extend([instant] * tokens)
        return tuple(stamps)


@dataclass(frozen=True)
class EndpointCapabilities(Record):
    """What the pre-flight check found the endpoint does, before any load (``serving.preflight``)."""

    OMIT_NONE = True

    api: str
    streams: bool = False
    role_only_first_chunk: bool | None = None
    done_sentinel: bool | None = None
    usage_in_stream: bool | None = None  # a final usage chunk (stream_options.include_usage, or always)
    usage_per_chunk: bool | None = None  # continuous usage deltas (vLLM continuous_usage_stats)
    rejected_fields: tuple[str, ...] = ()  # fields answered with HTTP 4xx (e.g. 422)
    fixed_output_field: str | None = None  # how exact output lengths are asked: ignore_eos / min_tokens / ...
    fixed_output_honoured: bool | None = None
    prompt_tokens_honoured: bool | None = None  # usage.prompt_tokens == the prompt the client built
    models: tuple[str, ...] = ()
    skip_reasons: tuple[str, ...] = ()  # what the workload needs and the server cannot do
    notes: tuple[str, ...] = ()
    elapsed_ns: int = 0


@dataclass(frozen=True)
class ServerRecord(Record):
    """Which server answered: one given by URL, or one tokbench launched (and stopped)."""

    OMIT_NONE = True

    kind: str = "external"  # "external" | "launched" | "transformers-serve" | "mock"
    command: tuple[str, ...] | None = None
    pid: int | None = None
    startup_ns: int | None = None  # launch to healthy
    exit_code: int | None = None
    log_tail: str | None = None


@dataclass(frozen=True)
class ClientCost(Record):
    """The client's own cost on this machine, measured against the mock (``benchmarks/serving_client.py``)."""

    per_request_us: float
    per_event_us: float
    measured_at: str = ""


@dataclass(frozen=True)
class SloSpec(Record):
    """Latency objectives at a percentile: a request is good when it succeeded and met every one."""

    OMIT_NONE = True

    ttft_ms: float | None = None
    tpot_ms: float | None = None
    e2e_ms: float | None = None
    percentile: float = 99.0

    def describe(self) -> str:
        limits = (("ttft", self.ttft_ms), ("tpot", self.tpot_ms), ("e2e", self.e2e_ms))
        parts = [f"{name}<={value:g}ms" for name, value in limits if value is not None]
        return f"{','.join(parts)} at p{self.percentile:g}"


@dataclass(frozen=True)
class ClientLag(Record):
    """One client process's send lag (``--clients N``): a process that fell behind shows here by itself."""

    client: int
    requests: int
    send_lag_p50_ms: float
    send_lag_p99_ms: float
    send_lag_max_ms: float


@dataclass(frozen=True)
class ServingSummary(Record):
    """Run-level figures of a serving run (``analysis.serving.serving_summary``), recomputable from requests."""

    OMIT_NONE = True

    duration_s: float
    completed: int
    failed: int
    errors: dict[str, int] = field(default_factory=dict)
    request_throughput: float = 0.0  # completed requests / duration
    output_throughput_tok_s: float = 0.0  # output tokens of completed requests / duration
    input_throughput_tok_s: float = 0.0
    offered_rate: float | None = None  # measured requests / scheduled span (open loop)
    send_lag_p50_ms: float = 0.0
    send_lag_p99_ms: float = 0.0
    send_lag_max_ms: float = 0.0
    mean_concurrency: float = 0.0  # Little: sum of latencies / duration
    peak_concurrency: int = 0
    events: int = 0
    multi_token_events: int = 0
    max_tokens_per_event: int = 0
    mean_events_per_read: float | None = None
    goodput: float | None = None  # good requests / duration (errors count as not good)
    good_fraction: float | None = None
    good_fraction_ci: tuple[float, float] | None = None
    slo_met: bool | None = None  # each objective's percentile within it, with 95% confidence
    slo_detail: dict[str, Any] = field(default_factory=dict)
    output_tokens_mismatch: int = 0  # requests whose usage.completion_tokens differ from the counted tokens
    client_lags: tuple[ClientLag, ...] | None = None  # per client process, when separate processes offered the load


@dataclass(frozen=True)
class ServingRecord(Record):
    """Everything a serving run adds to a ``BenchmarkResult``: settings, endpoint, server, raw requests."""

    OMIT_NONE = True

    settings: ServingSettings
    endpoint: str  # scheme://host:port/path, never credentials or a query
    served_model: str | None = None  # the model name sent in requests (a launched preset's is a temporary path)
    server: ServerRecord = field(default_factory=ServerRecord)
    capabilities: EndpointCapabilities | None = None
    requests: tuple[RequestRecord, ...] = ()
    token_stamping: str = STAMPING_EVENT_ARRIVAL
    token_source: str = TOKENS_FROM_TOKENIZER
    block_size: int = 1  # requests per iteration (the bootstrap's cluster)
    slo: SloSpec | None = None
    summary: ServingSummary | None = None
    valid: bool = True
    invalid_reason: str = ""
    client_processes: int | None = None  # fresh client processes that offered the load; None: the tokbench process
    client_cost: ClientCost | None = None
    sweep_point: int | None = None  # position in a sweep over rates / concurrencies
