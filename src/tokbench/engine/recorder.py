"""The run recorder: what a run measured so far, so any exit of the runner keeps all of it.

The runner hands the recorder each stage's output as the stage finishes (load timings, device warmup,
backend setup, the cold call, the warmup curve and traces as they grow, monitoring, compile record,
efficiency, profile). ``finish(status, reason)`` is then the one way out: an ``ok`` run, a failure in any
stage, an interruption: the result keeps the measured iterations and their summary either way.
A stage that never finished leaves a record saying so (the policy records get ``stop_reason``
``interrupted`` / ``failed``), never a made-up figure.
"""

from __future__ import annotations

from tokbench.analysis.summarize import summarize_traces
from tokbench.clock import Clock
from tokbench.config import BenchmarkConfig
from tokbench.engine.policy import POLICY_AUTO, POLICY_FIXED, MeasurementPlan, WarmupPlan
from tokbench.schema.comparison import OutputFingerprint
from tokbench.schema.efficiency import EfficiencyReport
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.interference import InterferenceRecord
from tokbench.schema.monitor import MemoryPeak, MonitorRecord
from tokbench.schema.policy import MeasurementRecord, WarmupRecord
from tokbench.schema.quant import QuantizationRecord
from tokbench.schema.records import (
    ContinuousBatchingSetup,
    DeviceWarmupReport,
    EffectiveSettings,
    GenerationTrace,
    LoadTimings,
    ModelSource,
    ProfileRecord,
)
from tokbench.schema.results import (
    STATUS_FAILED,
    STATUS_INTERRUPTED,
    STATUS_OK,
    BenchmarkResult,
    CompileRecord,
    StageRecords,
)

# stop_reason of a policy record whose loop never returned.
STOP_INTERRUPTED = "interrupted"
STOP_FAILED = "a failure"


class RunRecorder:
    """Accumulates one run's records; mutable on purpose (it grows while the run goes), never serialized itself.

    ``warmup_curve_ns`` and ``traces`` are the lists the policies append to as each iteration ends, so an
    interruption mid-loop still finds every finished iteration here.
    """

    def __init__(self, config: BenchmarkConfig, started_at: str, clock: Clock) -> None:
        self.config = config
        self.started_at = started_at
        self._clock = clock
        self.environment = EnvironmentRecord()
        self.effective_settings = EffectiveSettings()
        self.model_source = ModelSource()
        self.quantization = QuantizationRecord()
        self.load = LoadTimings()
        self.device_warmup: DeviceWarmupReport | None = None
        self.continuous_batching_setup: ContinuousBatchingSetup | None = None
        self.cold_call: GenerationTrace | None = None
        self.warmup_curve_ns: list[int] = []
        self.warmup: WarmupRecord | None = None
        self.traces: list[GenerationTrace] = []
        self.measurement: MeasurementRecord | None = None
        self.compile: CompileRecord | None = None
        self.efficiency: EfficiencyReport | None = None
        self.profile: ProfileRecord | None = None
        self.monitor: MonitorRecord | None = None
        self.memory_peaks: tuple[MemoryPeak, ...] = ()
        self.interference: InterferenceRecord | None = None
        self.notes: list[str] = []
        self.output_fingerprint: OutputFingerprint | None = None
        self._warmup_plan: WarmupPlan | None = None
        self._warmup_start_ns: int | None = None
        self._measurement_plan: MeasurementPlan | None = None
        self._measurement_start_ns: int | None = None
        self._measurement_end_ns: int | None = None

    # --- stages, in run order -------------------------------------------------------------------------

    def loaded(
        self,
        timings: LoadTimings,
        effective_settings: EffectiveSettings,
        model_source: ModelSource,
        quantization: QuantizationRecord,
    ) -> None:
        self.load = timings
        self.effective_settings = effective_settings
        self.model_source = model_source
        self.quantization = quantization

    def warmup_started(self, plan: WarmupPlan) -> None:
        self._warmup_plan, self._warmup_start_ns = plan, self._clock()

    def measurement_started(self, plan: MeasurementPlan) -> None:
        self._measurement_plan, self._measurement_start_ns = plan, self._clock()

    def measurement_finished(self, record: MeasurementRecord) -> None:
        self._measurement_end_ns = self._clock()
        self.measurement = record

    def note(self, *notes: str) -> None:
        self.notes.extend(notes)

    # --- the one way out ------------------------------------------------------------------------------

    def stage_records(self, status: str = STATUS_OK) -> StageRecords:
        """Everything outside the measured iterations recorded so far; unfinished policy loops get a record
        with what they did and why they stopped."""
        warmup, measurement = self.warmup, self.measurement
        stop = STOP_INTERRUPTED if status == STATUS_INTERRUPTED else STOP_FAILED
        if warmup is None and self._warmup_plan is not None and self._warmup_start_ns is not None:
            warmup = WarmupRecord(
                policy=POLICY_FIXED if self._warmup_plan.iterations is not None else POLICY_AUTO,
                iterations=len(self.warmup_curve_ns),
                stop_reason=stop,
                steady_state=None,
                compiled_in=(),
                elapsed_ns=self._clock() - self._warmup_start_ns,
            )
        wall_ns: int | None = None
        if self._measurement_start_ns is not None:
            end_ns = self._measurement_end_ns if self._measurement_end_ns is not None else self._clock()
            wall_ns = end_ns - self._measurement_start_ns
        if measurement is None and self._measurement_plan is not None and wall_ns is not None:
            fixed = self._measurement_plan.iterations is not None
            measurement = MeasurementRecord(
                policy=POLICY_FIXED if fixed else POLICY_AUTO,
                iterations=len(self.traces),
                stop_reason=stop,
                relative_precision=None,  # not computed on a stopped loop: no figure the loop did not reach
                target_relative_precision=None if fixed else self._measurement_plan.target_relative_precision,
                elapsed_ns=wall_ns,
            )
        return StageRecords(
            load=self.load,
            device_warmup=self.device_warmup,
            cold_call=self.cold_call,
            warmup_curve_ns=tuple(self.warmup_curve_ns),
            measurement_wall_ns=wall_ns,
            compile=self.compile,
            continuous_batching_setup=self.continuous_batching_setup,
            warmup=warmup,
            measurement=measurement,
        )

    def finish(self, status: str, reason: str = "") -> BenchmarkResult:
        """The result of the run as it stands: ``status`` and ``reason``, and everything recorded so far.

        The summary is computed from the traces whatever the status; if that fails, an ``ok`` run becomes
        ``failed`` with the reason, any other keeps its status and says why in a note.
        """
        notes = list(self.notes)
        summary = {}
        if status == STATUS_OK and not self.traces:  # nothing measured is never "ok" (a config bypassing checks)
            status, reason = STATUS_FAILED, "no measured iteration: a result needs at least one timed call"
        if self.traces:
            try:
                summary = summarize_traces(self.traces)
            except ValueError as error:  # e.g. a zero-length interval from a broken clock
                failure = f"metrics could not be computed from the raw stamps: {describe(error)}"
                if status == STATUS_OK:
                    status, reason = STATUS_FAILED, failure
                else:
                    notes.append(failure)
        return BenchmarkResult(
            config=self.config,
            status=status,
            reason=reason,
            environment=self.environment,
            phases=self.stage_records(status),
            iterations=tuple(self.traces),
            summary=summary,
            effective_settings=self.effective_settings,
            model_source=self.model_source,
            started_at=self.started_at,
            notes=tuple(notes),
            quantization=self.quantization,
            profile=self.profile,
            monitor=self.monitor,
            memory_peaks=self.memory_peaks,
            efficiency=self.efficiency,
            interference=self.interference,
            output_fingerprint=self.output_fingerprint,
        )


def describe(error: BaseException) -> str:
    """``Type: first line of the message`` (the type alone when there is no message)."""
    message = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
