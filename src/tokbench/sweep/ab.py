"""``tokbench ab``: two sides measured in interleaved pairs of fresh processes until the verdict is decided.

A side is a config and an environment: its own Python interpreter (another virtualenv: another transformers
or torch), extra environment variables and a working directory. Each pair runs one process of each side, in
an order drawn at random per pair (seeded, recorded), each process a fresh isolated worker as in a sweep
(``launchers.ProcessLauncher``, one per side, so a side's fork server imports under that side's environment).
Machine drift over minutes then hits both members of a pair alike, and the comparison analyses the pairs as
pairs (``results.comparison``: a paired t on the per-pair differences of the log process medians). By default
(config sides) a pair is a duet (``sweep.duet``): both processes alive at once, their measured calls in turns,
so load that changes within seconds hits both alike too, and each pair's value is the median over its rounds of
log(B call ÷ A call).

What runs one process of a side is a ``SideRunner`` (a protocol: ``run_once(timeout_s)`` returns one result,
``close()`` releases what it holds). A config side's is ``ProcessSideRunner``; the CLI hands the runner others,
e.g. serving sides (``serving.sides``: a server by URL, or a command launched fresh for each run), which ``sweep``
cannot import (sibling layers), so the pairs, the order, the store and the one paired sequential analysis below
serve every kind of side.

Sequential: the runner looks at planned pair counts (``analysis.sequential``), each look with its own share of
alpha, and stops at the first look where every hypothesis is decided (slower / faster beyond --min-effect, or
an interval inside ±min-effect: no change beyond it), or when --max-pairs or --budget ends. Every result is
stored as it arrives, under one ab id: sweep ids ``AB-a`` and ``AB-b``, the pair in the repeat index; a
result that failed is stored too, and its pair is left out of the analysis.
"""

from __future__ import annotations

import dataclasses
import math
import random
import secrets
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from tokbench.analysis import compare as stats
from tokbench.analysis.sequential import LookPlan, plan_looks
from tokbench.config import BenchmarkConfig
from tokbench.engine.progress import ProgressHook
from tokbench.errors import TokbenchError
from tokbench.interrupts import signals_deferred
from tokbench.results.comparison import AB_PREFIX, ComparisonRefused, compare
from tokbench.results.selectors import SelectedRun
from tokbench.results.store import ResultStore
from tokbench.schema.comparison import ComparisonReport, MetricComparison, SequentialLook
from tokbench.schema.results import BenchmarkResult
from tokbench.sweep.duet import DuetPairRunner
from tokbench.sweep.launchers import DEFAULT_START_METHOD, ProcessLauncher
from tokbench.sweep.turns import STOP_PARTNER_ENDED

STAGE_AB = "ab"
SIDES = ("a", "b")
# Fields that say how a run is measured or named, not what: they may differ between sides and are no difference.
_POLICY_FIELDS = ("name", "warmup_", "measurement_", "target_", "monitor")
# A side that failed this many times in a row stops the run: something is wrong with it, not with the machine.
MAX_FAILURES_IN_A_ROW = 3
# The metric whose interval the progress bar shows.
PROGRESS_METRIC = "e2e_latency_ms"


class AbRefused(TokbenchError):
    """Two sides that cannot be compared (a usage error: exit 2)."""


@dataclass(frozen=True)
class AbSide:
    """One side: what to run (config) and where (interpreter, extra environment variables, working directory);
    or, with no config, a side whose runner brings its own work, described by ``details`` (a serving side)."""

    name: str
    config: BenchmarkConfig | None
    python: str = sys.executable
    environment: dict[str, str] = field(default_factory=dict)
    cwd: str | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        if self.config is None:
            return dict(self.details)
        return {"python": self.python, "environment": dict(self.environment), "cwd": self.cwd, **self.details}


class SideRunner(Protocol):
    """Runs one process of one side: a result per call (a failure is a failed result, not an exception)."""

    def run_once(self, timeout_s: float | None) -> BenchmarkResult: ...

    def close(self) -> None: ...


SideRunners = Callable[[AbSide], SideRunner]


def duet_pair_runner(spec: AbSpec) -> DuetPairRunner:
    """Both config sides' processes as duet pairs (``sweep.duet``): one launcher per side, as in
    ``ProcessSideRunner``."""
    sides = (spec.a, spec.b)
    if any(side.config is None for side in sides):
        raise AbRefused("--duet needs two config sides (a serving side brings its own processes)")
    configs = {side.name: side.config for side in sides}
    launchers = {
        side.name: ProcessLauncher(python=side.python, side_environment=side.environment, cwd=side.cwd,
                                   start_method=spec.start_method)
        for side in sides
    }  # fmt: skip
    return DuetPairRunner(configs, launchers)  # type: ignore[arg-type]


class ProcessSideRunner:
    """A config side: every run a fresh isolated worker (``launchers.ProcessLauncher``) under the side's
    interpreter, environment and folder."""

    def __init__(self, side: AbSide, start_method: str = DEFAULT_START_METHOD) -> None:
        if side.config is None:
            raise AbRefused(f"side {side.name} has no config to run")
        self.config = side.config
        self.launcher = ProcessLauncher(python=side.python, side_environment=side.environment, cwd=side.cwd,
                                        start_method=start_method)  # fmt: skip

    def run_once(self, timeout_s: float | None) -> BenchmarkResult:
        return self.launcher.launch(self.config, timeout_s)

    def close(self) -> None:
        self.launcher.close()


@dataclass(frozen=True)
class AbSpec:
    a: AbSide
    b: AbSide
    min_pairs: int = 4
    max_pairs: int = 20
    budget_s: float | None = None
    min_effect: float = stats.DEFAULT_MIN_EFFECT
    alpha: float = stats.DEFAULT_ALPHA
    seed: int | None = None  # of the order within each pair; drawn (and recorded) when None
    timeout_s: float | None = 1800.0
    start_method: str = DEFAULT_START_METHOD
    # Each pair's two processes alive at once, their measured calls in turns (``sweep.duet``); None: duet for two
    # config sides run by the default runners, one after the other otherwise (a serving side brings its own).
    duet: bool | None = None

    def looks(self) -> LookPlan:
        return plan_looks(self.min_pairs, self.max_pairs, self.alpha)


@dataclass
class AbOutcome:
    ab_id: str
    spec: AbSpec
    seed: int
    ignored: tuple[str, ...]
    stored: list[tuple[int, str, SelectedRun]] = field(default_factory=list)  # (pair, side, run)
    report: ComparisonReport | None = None
    stopped_because: str = ""
    interrupted: bool = False
    elapsed_s: float = 0.0

    def runs(self, side: str) -> list[SelectedRun]:
        return [run for _, name, run in self.stored if name == side]

    @property
    def complete_pairs(self) -> int:
        ok = {(pair, side) for pair, side, run in self.stored if usable(run.result)}
        return sum(1 for pair in {pair for pair, _ in ok} if all((pair, side) in ok for side in SIDES))

    @property
    def failed(self) -> int:
        return sum(1 for _, _, run in self.stored if not usable(run.result))


def usable(result: BenchmarkResult) -> bool:
    """An ok result that ``compare`` will use: a serving run whose client fell behind its schedule is not."""
    return result.ok and (result.serving is None or result.serving.valid)


def failed_by_itself(result: BenchmarkResult) -> bool:
    """Unusable for a reason of its own: not a duet process stopped because its partner ended (that failure is the
    partner's, and counts on the partner's side)."""
    measurement = result.phases.measurement
    stopped_by_partner = measurement is not None and measurement.stop_reason.startswith(STOP_PARTNER_ENDED)
    return not usable(result) and not stopped_by_partner


def why_unusable(result: BenchmarkResult) -> str:
    if not result.ok or result.serving is None:
        return result.reason
    return f"invalid serving run: {result.serving.invalid_reason}"


def differing_fields(a: BenchmarkConfig, b: BenchmarkConfig) -> tuple[str, ...]:
    """The config fields that differ between the sides (what the A/B compares); refused when they change
    what is measured (shape, model, device)."""
    from tokbench.results.comparison import NEVER_IGNORED

    first, second = a.to_dict(), b.to_dict()
    names = tuple(
        name for name in first if first[name] != second[name] and not name.startswith(_POLICY_FIELDS)
    )
    changed = [name for name in names if name in NEVER_IGNORED]
    if changed:
        detail = "; ".join(f"{name} {first[name]!r} vs {second[name]!r}" for name in changed)
        raise AbRefused(f"the sides measure different workloads ({detail}); an A/B compares one workload")
    return names


def compared_fields(a: AbSide, b: AbSide) -> tuple[str, ...]:
    """``differing_fields`` of two config sides; sides that bring their own work compare no config field (a
    serving side's workload is its request shape and load, the same on both sides by construction)."""
    if a.config is None or b.config is None:
        return ()
    return differing_fields(a.config, b.config)


def new_ab_id() -> str:
    return f"{AB_PREFIX}{datetime.now(timezone.utc):%Y%m%d-%H%M%S}-{secrets.token_hex(2)}"


def sweep_id_of(ab_id: str, side: str) -> str:
    return f"{ab_id}-{side}"


def decided(metric: MetricComparison, min_effect: float) -> bool:
    """faster / slower, or an interval inside ±min_effect: more pairs would not change the kind of answer."""
    if metric.verdict in (stats.VERDICT_FASTER, stats.VERDICT_SLOWER, stats.VERDICT_NO_CHANGE):
        return True
    low, high, bound = metric.median.ci_low, metric.median.ci_high, math.log1p(min_effect)
    return low is not None and high is not None and abs(math.log(low)) < bound and abs(math.log(high)) < bound


def all_decided(report: ComparisonReport, min_effect: float) -> bool:
    return all(decided(metric, min_effect) for workload in report.workloads for metric in workload.metrics)


def _progress_detail(report: ComparisonReport | None) -> str:
    if report is None:
        return ""
    for workload in report.workloads:
        for metric in workload.metrics:
            if metric.metric == PROGRESS_METRIC:
                ratio = metric.median
                if ratio.ci_low is None or ratio.ci_high is None:
                    return f"E2E ×{ratio.ratio:.3f}"
                return f"E2E ×{ratio.ratio:.3f} [{ratio.ci_low:.3f}, {ratio.ci_high:.3f}] {metric.verdict}"
    return ""


class AbRunner:
    """Runs one A/B: the launchers of both sides, the store, the looks; ``run`` returns the outcome."""

    def __init__(
        self,
        spec: AbSpec,
        store: ResultStore,
        *,
        progress: ProgressHook | None = None,
        clock: Callable[[], float] = time.monotonic,
        ab_id: str | None = None,
        runners: SideRunners | None = None,
    ) -> None:
        self.spec = spec
        self.runners = runners or (lambda side: ProcessSideRunner(side, spec.start_method))
        self.store = store
        self.progress = progress
        self.clock = clock
        self.looks = spec.looks()
        seed = spec.seed if spec.seed is not None else secrets.randbelow(2**31)
        self.outcome = AbOutcome(ab_id or new_ab_id(), spec, seed, compared_fields(spec.a, spec.b))
        self._order = random.Random(seed)
        self._duet: DuetPairRunner | None = None
        configs = spec.a.config is not None and spec.b.config is not None
        self.duet = spec.duet if spec.duet is not None else configs and runners is None

    def _compare(self, look: int, stopped_because: str = "") -> ComparisonReport | None:
        a, b = self.outcome.runs("a"), self.outcome.runs("b")
        if not any(usable(run.result) for run in a) or not any(usable(run.result) for run in b):
            return None
        sequential = SequentialLook(
            look=look + 1,
            looks=len(self.looks.pairs),
            pairs=self.outcome.complete_pairs,
            alpha_spent=self.looks.alphas[look],
            overall_alpha=self.spec.alpha,
            stopped_because=stopped_because,
        )
        report = compare(
            a,
            b,
            baseline_source=f"{self.outcome.ab_id} side a",
            contender_source=f"{self.outcome.ab_id} side b",
            min_effect=self.spec.min_effect,
            alpha=self.looks.alphas[look],
            ignore=self.outcome.ignored,
            undecided="add pairs (--max-pairs, --budget)",
            sequential=sequential,
        )
        extra = {"ab": {"id": self.outcome.ab_id, "order_seed": self.outcome.seed,
                        "sides": {side.name: side.describe() for side in (self.spec.a, self.spec.b)},
                        "compared_fields": list(self.outcome.ignored), "duet": self.duet,
                        "looks": list(self.looks.pairs), "alphas": list(self.looks.alphas)}}  # fmt: skip
        return dataclasses.replace(report, extra=extra)

    def _run_one(self, runner: SideRunner, side: AbSide, pair: int) -> SelectedRun:
        return self._store(runner.run_once(self.spec.timeout_s), side, pair)

    def _store(self, result: BenchmarkResult, side: AbSide, pair: int) -> SelectedRun:
        note = f"tokbench ab {self.outcome.ab_id} side {side.name}, pair {pair + 1}"
        launch = dataclasses.replace(result.launch, sweep_id=sweep_id_of(self.outcome.ab_id, side.name),
                                     repeat_index=pair)  # fmt: skip
        result = dataclasses.replace(result, launch=launch, notes=(*result.notes, note))
        with signals_deferred():  # a Ctrl-C during the write would roll back a finished result
            run_id = self.store.add(result, sweep_id=launch.sweep_id, repeat_index=pair)
        run = SelectedRun(result, f"{self.store.path} run {run_id}", run_id, result.started_at)
        self.outcome.stored.append((pair, side.name, run))
        return run

    def _failing_side(self) -> str | None:
        for name in SIDES:
            recent = [run for _, side, run in self.outcome.stored if side == name][-MAX_FAILURES_IN_A_ROW:]
            if len(recent) == MAX_FAILURES_IN_A_ROW and all(failed_by_itself(run.result) for run in recent):
                return f"side {name} failed {MAX_FAILURES_IN_A_ROW} times in a row: {why_unusable(recent[-1].result)}"
        return None

    def _pair(self, runners: dict[str, SideRunner], pair: int) -> None:
        sides = {"a": self.spec.a, "b": self.spec.b}
        if self._duet is not None:  # both at once, in turns: stored once both are back
            results = self._duet.run_pair(self._order, self.spec.timeout_s)
            for name in SIDES:
                self._store(results[name], sides[name], pair)
            return
        order = list(SIDES)
        self._order.shuffle(order)
        for name in order:
            self._run_one(runners[name], sides[name], pair)

    def _look(self, pair_count: int) -> bool:
        """Show the interval; at a planned look, decide whether to stop."""
        index = self.looks.look_at(pair_count)
        shown = self._compare(self.looks.next_look(pair_count))
        if self.progress is not None:
            self.progress.advanced(STAGE_AB, pair_count, _progress_detail(shown))
        if index is None or shown is None or self.outcome.complete_pairs < 2:
            return False
        if all_decided(shown, self.spec.min_effect):
            self.outcome.stopped_because = "every hypothesis decided"
            self.outcome.report = self._compare(index, self.outcome.stopped_because)
            return True
        return False

    def run(self) -> AbOutcome:
        start = self.clock()
        runners: dict[str, SideRunner] = {}
        if self.progress is not None:
            self.progress.stage_started(STAGE_AB, self.spec.max_pairs)
        try:
            if self.duet:
                self._duet = duet_pair_runner(self.spec)
            else:
                for side in (self.spec.a, self.spec.b):
                    runners[side.name] = self.runners(side)
            self._loop(runners, start)
        except KeyboardInterrupt:
            self.outcome.interrupted = True
            self.outcome.stopped_because = "interrupted"
        finally:
            for runner in runners.values():
                runner.close()
            if self._duet is not None:
                self._duet.close()
            if self.progress is not None:
                self.progress.stage_finished(STAGE_AB)
        self.outcome.elapsed_s = self.clock() - start
        if self.outcome.report is None:  # ended between looks: the next planned look's alpha is unspent
            look = self.looks.next_look(max(self.outcome.complete_pairs, 1))
            self.outcome.report = self._compare(look, self.outcome.stopped_because)
        return self.outcome

    def _loop(self, runners: dict[str, SideRunner], start: float) -> None:
        for pair in range(self.spec.max_pairs):
            if self.spec.budget_s is not None and self.clock() - start >= self.spec.budget_s:
                self.outcome.stopped_because = f"budget of {self.spec.budget_s:g} s spent"
                return
            self._pair(runners, pair)
            failing = self._failing_side()
            if failing is not None:
                self.outcome.stopped_because = failing
                return
            if self._look(pair + 1):
                return
        self.outcome.stopped_because = f"--max-pairs {self.spec.max_pairs} reached"


def run_ab(
    spec: AbSpec, store: ResultStore, *, progress: ProgressHook | None = None, runners: SideRunners | None = None
) -> AbOutcome:
    """The Python API of ``tokbench ab``: run the pairs into ``store`` and return the outcome (its report is
    ``compare``'s, paired, at the alpha of the look where it stopped); ``runners`` makes each side's runner
    (default: ``ProcessSideRunner``)."""
    try:
        return AbRunner(spec, store, progress=progress, runners=runners).run()
    except ComparisonRefused as error:
        raise AbRefused(str(error)) from error
