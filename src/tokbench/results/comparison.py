"""``tokbench compare``: match two sets of results by workload and decide, per metric, what changed.

Each result is one process. Statistics (``analysis.compare``): every process contributes one value per metric
(the log of its median over its calls), with equal weight; contender ÷ baseline is the ratio of the sides'
geometric means, with a t interval and test on those values (paired for the pairs of one ``tokbench ab``,
Welch otherwise; for duet pairs, whose rounds the stored call timestamps confirm, each pair's median over
its rounds of log(B call ÷ A call)); Holm's correction over every (workload, hypothesis) of the comparison, a
latency and its reciprocal throughput being one hypothesis; a verdict needs significance AND a change beyond
``min_effect``.
A side of one process has no spread of its own: no verdict, unless the machine's between-process variance
of the workload is known from stored repeats (``results.repeats.StoredRepeats``). Comparisons that mean nothing
(different shapes or devices, a failed or skipped side) are refused with ``ComparisonRefused``.

The steps of ``compare``: check the options, keep each side's usable results, match workloads, measure every
metric of every workload (``_measure_workload``, ``measure_metric``), correct over the family
(``holm_over_hypotheses``), decide and record each metric (``_metric_record``) and workload
(``_workload_record``), and the geometric means.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

import numpy as np

from tokbench.analysis import compare as stats
from tokbench.analysis.metrics import METRIC_UNITS
from tokbench.config import FIELD_SPECS, BenchmarkConfig
from tokbench.errors import TokbenchError
from tokbench.fields import identity_role
from tokbench.results.repeats import machine_of, run_identity
from tokbench.results.selectors import SelectedRun, device_type_of, distinct_sides, workload_key_of
from tokbench.schema.comparison import (
    ComparisonReport,
    EnvironmentDifference,
    GeometricMeanSummary,
    MetricComparison,
    OutputFingerprint,
    ProcessTestRecord,
    SequentialLook,
    StatisticRatio,
    UnmatchedRun,
    WorkloadComparison,
)
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.interference import flag_detail
from tokbench.schema.results import STATUS_OK, BenchmarkResult

# What a workload is: these never differ between compared runs, --ignore or not.
SHAPE_FIELDS = ("model", "batch_size", "sequence_length", "new_tokens")
NEVER_IGNORED = (*SHAPE_FIELDS, "device")
# The sweep ids of a ``tokbench ab`` run's two sides: AB_PREFIX + id + "-a" / "-b"; the pair is the repeat index.
AB_PREFIX = "ab-"
DESIGN_PAIRED = "paired"
DESIGN_DUET = "duet pairs"  # pairs of ``tokbench ab --duet``: their rounds rebuilt from the stored call timestamps
DESIGN_INDEPENDENT = "independent"
ONE_PROCESS_WARNING = (
    "a side is one process: two processes of one workload differ by more than calls within one can show, so "
    "no verdict without the machine's between-process variance (stored repeats of this workload)"
)
UNDECIDED_HINT = (
    "decide it with `tokbench ab` (interleaved processes a side), or store repeats of this workload "
    "(`tokbench sweep --repeat 5`) and compare again with --db"
)


class ComparisonRefused(TokbenchError):
    """A comparison that would mean nothing (a usage error: exit code 2)."""


def fingerprint_of(result: BenchmarkResult) -> OutputFingerprint | None:
    """The result's output fingerprint; for results written before it existed, from the validation call's ids."""
    if result.output_fingerprint is not None:
        return result.output_fingerprint
    cold = result.phases.cold_call
    return OutputFingerprint.of(cold.sample_token_ids) if cold is not None and cold.sample_token_ids else None


def check_ignorable(ignore: Sequence[str]) -> tuple[str, ...]:
    known = {f.name for f in fields(BenchmarkConfig)}
    for name in ignore:
        if name not in known:
            raise ComparisonRefused(f"--ignore {name}: not a config field; use one of {', '.join(sorted(known))}")
        if name in NEVER_IGNORED:
            raise ComparisonRefused(
                f"--ignore {name}: runs of different {name} are different workloads and are never compared"
            )
    return tuple(sorted(set(ignore)))


# --- environment ------------------------------------------------------------------------------------

_ENVIRONMENT_KEYS = (
    "python", "tokbench", "torch", "transformers", "cuda", "hip", "gpu_driver", "cpu", "cpu_count",
    "torch_threads", "torch_interop_threads", "cpu_governors", "memory_bytes",
)  # fmt: skip
_VOLATILE = ("temperature_c", "current", "status", "uuid", "torch_index", "nvml_index")
# Set by the process launcher to a fresh folder per child: always different, never a difference that matters.
_PER_PROCESS_VARIABLES = ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")


def _flatten(prefix: str, value: Any, into: dict[str, str]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key not in _VOLATILE:
                _flatten(f"{prefix}.{key}", item, into)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _flatten(f"{prefix}[{index}]", item, into)
    elif value is not None:
        into[prefix] = str(value)


def environment_facts(record: EnvironmentRecord) -> dict[str, str]:
    """The environment fields that can change a measurement, flattened to ``name -> text``."""
    environment = record.to_dict()
    facts: dict[str, str] = {}
    for key in _ENVIRONMENT_KEYS:
        _flatten(key, environment.get(key), facts)
    for key in ("git", "tokbench_git"):
        state = environment.get(key) or {}
        if isinstance(state, dict):
            _flatten(key, {"commit": state.get("commit"), "dirty": state.get("dirty")}, facts)
    _flatten("cpu_frequency_mhz", {"max": (environment.get("cpu_frequency_mhz") or {}).get("max")}, facts)
    _flatten("gpus", [{"name": gpu.get("name")} for gpu in environment.get("gpus") or [] if isinstance(gpu, dict)],
             facts)  # fmt: skip
    _flatten("nvml", environment.get("nvml"), facts)
    variables = environment.get("env") or {}
    _flatten("env", {k: v for k, v in variables.items() if k not in _PER_PROCESS_VARIABLES}, facts)
    return facts


def environment_differences(
    baseline: EnvironmentRecord, contender: EnvironmentRecord
) -> list[EnvironmentDifference]:
    before, after = environment_facts(baseline), environment_facts(contender)
    return [
        EnvironmentDifference(field=name, baseline=before.get(name, "-"), contender=after.get(name, "-"))
        for name in sorted(set(before) | set(after))
        if before.get(name) != after.get(name)
    ]


# --- matching ---------------------------------------------------------------------------------------


def _config_differences(first: BenchmarkConfig, second: BenchmarkConfig, skip: Sequence[str] = ()) -> list[str]:
    """The workload fields that differ: what was measured. Policy fields (how: iterations, budgets, monitoring,
    seed) and labels (name, profile_tokens, tune_budget_s) are never a difference, as in the workload key."""
    one, two = first.to_dict(), second.to_dict()
    return [
        f"{name} {one[name]!r} vs {two[name]!r}"
        for name in one
        if identity_role(FIELD_SPECS[name]) == "workload" and name not in skip and one[name] != two[name]
    ]


def _unusable(run: SelectedRun, side: str, ignore: tuple[str, ...]) -> UnmatchedRun | None:
    result = run.result
    if result.status != STATUS_OK:
        why = f"{result.status}: {result.reason}"
    elif not result.iterations:
        why = "no measured iterations"
    elif result.serving is not None and not result.serving.valid:  # its client fell behind: never compared
        why = f"invalid serving run: {result.serving.invalid_reason}"
    else:
        return None
    return UnmatchedRun(side=side, origin=run.origin, name=result.config.name,
                        workload_key=workload_key_of(result, ignore), status=result.status, why=why)  # fmt: skip


def _group(runs: Sequence[SelectedRun], ignore: tuple[str, ...]) -> dict[str, list[SelectedRun]]:
    groups: dict[str, list[SelectedRun]] = {}
    for run in runs:
        groups.setdefault(workload_key_of(run.result, ignore), []).append(run)
    return groups


def _refuse_single(baseline: SelectedRun, contender: SelectedRun, ignore: tuple[str, ...]) -> ComparisonRefused:
    first, second = baseline.result, contender.result
    device_one, device_two = device_type_of(first), device_type_of(second)
    differences = _config_differences(first.config, second.config, skip=ignore)
    if device_one != device_two:
        kind = f"different devices ({device_one} vs {device_two})"
    elif any(difference.split()[0] in SHAPE_FIELDS for difference in differences):
        kind = "different workloads (shape or model)"
    else:
        kind = "different settings"
    detail = "; ".join(differences) or "device"
    fix = "" if kind != "different settings" else " (to compare a setting, pass --ignore FIELD, e.g. --ignore dtype)"
    return ComparisonRefused(f"refusing to compare {kind}: {detail}{fix}")


# --- comparing ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side's processes of one workload: each process's calls of each metric, where each came from, and
    the machine it ran on (for stored repeats). ``of`` reads them from results; the calibration suite builds
    them from synthetic calls."""

    calls: tuple[dict[str, list[np.ndarray]], ...]  # per process: metric -> its calls
    identities: tuple[str, ...] = ()  # run_identity of each process: kept out of its own stored repeats
    machine: str = ""

    @classmethod
    def of(cls, runs: Sequence[SelectedRun]) -> Side:
        calls = tuple(stats.per_call_samples(run.result.iterations) for run in runs)
        return cls(calls, tuple(run_identity(run.result) for run in runs), machine_of(runs[0].result.environment))

    def values(self, metric: str) -> list[stats.ProcessValue]:
        return [stats.ProcessValue.of(calls[metric]) for calls in self.calls if calls.get(metric)]

    def call_count(self, metric: str) -> int:
        return sum(len(calls.get(metric, ())) for calls in self.calls)

    def pooled_call_values(self, metric: str) -> list[float]:
        return [value for calls in self.calls for value in stats.call_values(calls.get(metric, []))]

    def pooled_values(self, metric: str) -> list[float]:
        return [float(value) for calls in self.calls for call in calls.get(metric, []) for value in call]


@dataclass(frozen=True)
class _Measured:
    """One workload × metric before the family-wide correction: its test and the figures beside it."""

    key: str
    metric: str
    test: stats.ProcessTest
    baseline_calls: int
    contender_calls: int
    baseline_median: float
    contender_median: float
    tails: tuple[stats.TailRatio, ...]


def _run_warnings(side: str, runs: Sequence[SelectedRun]) -> list[str]:
    warnings = []
    for run in runs:
        for flag in run.result.flags:
            warnings.append(f"{side} {run.origin}: {flag}{flag_detail(run.result.interference, flag)}")
    prints = {fp.sha256 for run in runs if (fp := fingerprint_of(run.result)) is not None}
    if len(prints) > 1:
        warnings.append(f"{side}: its {len(runs)} runs generated different outputs")
    return warnings


def _check_options(min_effect: float, alpha: float, power_target: float | None) -> None:
    if not 0 <= min_effect < 1:
        raise ComparisonRefused(f"--min-effect {min_effect} must be a fraction in [0, 1), e.g. 0.02 for 2%")
    if not 0 < alpha < 1:
        raise ComparisonRefused(f"--alpha {alpha} must lie in (0, 1)")
    if power_target is not None and not 0 < power_target < 10:
        raise ComparisonRefused(f"power target {power_target} must be a fraction > 0, e.g. 0.05 for 5%")


def _usable_sides(
    baseline: Sequence[SelectedRun], contender: Sequence[SelectedRun], ignored: tuple[str, ...]
) -> tuple[dict[str, list[SelectedRun]], list[UnmatchedRun]]:
    """Each side's ok results with measured calls; the rest listed as unmatched (refused if a side has none)."""
    unmatched: list[UnmatchedRun] = []
    usable: dict[str, list[SelectedRun]] = {}
    for side, runs in (("baseline", baseline), ("contender", contender)):
        usable[side] = []
        for run in runs:
            problem = _unusable(run, side, ignored)
            if problem is None:
                usable[side].append(run)
            else:
                unmatched.append(problem)
        if not usable[side]:
            reasons = "; ".join(f"{u.origin} {u.why}" for u in unmatched if u.side == side)
            raise ComparisonRefused(f"the {side} has no ok result to compare ({reasons})")
    return usable, unmatched


def _match_workloads(
    usable: dict[str, list[SelectedRun]], ignored: tuple[str, ...], unmatched: list[UnmatchedRun]
) -> tuple[dict[str, dict[str, list[SelectedRun]]], list[str]]:
    """Group each side by workload key; the keys both sides ran (refused if none); the rest unmatched."""
    groups = {side: _group(usable[side], ignored) for side in usable}
    common = [key for key in groups["baseline"] if key in groups["contender"]]
    if not common:
        if len(groups["baseline"]) == 1 and len(groups["contender"]) == 1:
            raise _refuse_single(usable["baseline"][0], usable["contender"][0], ignored)
        raise ComparisonRefused(
            f"no workload in common: {len(groups['baseline'])} baseline and {len(groups['contender'])} contender "
            "workloads, none with the same workload key (shape, model, settings, device)"
        )
    for side in ("baseline", "contender"):
        for key, runs in groups[side].items():
            if key not in common:
                unmatched.extend(
                    UnmatchedRun(side=side, origin=run.origin, name=run.result.config.name, workload_key=key,
                                 status=run.result.status, why="no run of this workload on the other side")
                    for run in runs
                )  # fmt: skip
    return groups, common


def ab_pairs(baseline: Sequence[SelectedRun], contender: Sequence[SelectedRun]) -> list[tuple[int, int]] | None:
    """The (baseline, contender) index pairs when both sides are the two sides of one ``tokbench ab`` run
    (sweep ids ``AB-a`` / ``AB-b``, the pair in the repeat index), pairs with a result on both sides only;
    None when the runs are not such pairs."""

    def by_pair(runs: Sequence[SelectedRun], suffix: str) -> tuple[str, dict[int, int]] | None:
        ids = {run.result.launch.sweep_id for run in runs}
        if len(ids) != 1:
            return None
        (sweep_id,) = ids
        if not sweep_id or not sweep_id.startswith(AB_PREFIX) or not sweep_id.endswith(suffix):
            return None
        pairs = {run.result.launch.repeat_index: index for index, run in enumerate(runs)}
        if None in pairs or len(pairs) != len(runs):
            return None
        return sweep_id[: -len(suffix)], pairs  # type: ignore[return-value]

    first, second = by_pair(baseline, "-a"), by_pair(contender, "-b")
    if first is None or second is None or first[0] != second[0]:
        return None
    common = sorted(set(first[1]) & set(second[1]))
    return [(first[1][pair], second[1][pair]) for pair in common]


def duet_problem(baseline: SelectedRun, contender: SelectedRun) -> str | None:
    """None when the two results are one duet pair whose rounds the stored calls confirm: partners of each other,
    the same number of measured calls, and in time order, round by round, the recorded first side's call ended
    before the other's began, which ended before the next round began (the rounds are causal); else why not."""
    first, second = baseline.result, contender.result
    turns_a, turns_b = first.launch.duet, second.launch.duet
    if turns_a is None or turns_b is None:
        return "not a duet pair"
    if turns_a.partner_pid != second.launch.pid or turns_b.partner_pid != first.launch.pid:
        return "the two processes were not each other's partners"
    calls_a, calls_b = first.iterations, second.iterations
    rounds = len(turns_a.first)
    if not calls_a or not len(calls_a) == len(calls_b) == rounds or turns_a.first != turns_b.first:
        return f"{len(calls_a)} vs {len(calls_b)} measured calls for {rounds} recorded rounds"
    timeline = []
    for call_a, call_b, went_first in zip(calls_a, calls_b, turns_a.first, strict=True):
        timeline.extend((call_a, call_b) if went_first == "a" else (call_b, call_a))
    if any(earlier.end_ns > later.t0_ns for earlier, later in itertools.pairwise(timeline)):
        return "the calls' timestamps do not take turns as recorded"
    return None


def _design(
    base_runs: list[SelectedRun], cont_runs: list[SelectedRun], pairs: list[tuple[int, int]] | None
) -> tuple[str, list[SelectedRun], list[SelectedRun], list[str]]:
    """Duet pairs (every pair's rounds confirmed), pairs of one ``tokbench ab``, or independent processes; the
    runs in pair order when paired; a note when duet pairs fall back to process medians."""
    if pairs is None or len(pairs) < 2:
        return DESIGN_INDEPENDENT, base_runs, cont_runs, []
    base_runs = [base_runs[first] for first, _ in pairs]
    cont_runs = [cont_runs[second] for _, second in pairs]
    problems = [duet_problem(first, second) for first, second in zip(base_runs, cont_runs, strict=True)]
    if all(problem is None for problem in problems):
        return DESIGN_DUET, base_runs, cont_runs, []
    duets = sum(run.result.launch.duet is not None for run in base_runs)
    if not duets:
        return DESIGN_PAIRED, base_runs, cont_runs, []
    why = next(problem for problem in problems if problem is not None)
    return DESIGN_PAIRED, base_runs, cont_runs, [f"duet rounds not used ({why}): paired on process medians"]


class VarianceLookup(Protocol):
    """Where a side of one process finds the machine's between-process variance (``StoredRepeats``)."""

    def variance(
        self, workload_key: str, machine: str, metric: str, exclude: set[str] | None = None
    ) -> stats.StoredVariance | None: ...


def measure_metric(
    key: str,
    metric: str,
    base: Side,
    cont: Side,
    *,
    paired: bool,
    stored: VarianceLookup | None,
    tails: bool = True,
    duet: bool = False,
) -> _Measured:
    """One metric of one workload: its process-level test and, with ``tails``, the p90 / p99 ratios. ``duet``:
    the sides' processes are duet pairs, in pair order (``round_log_ratio`` of each)."""
    before, after = base.values(metric), cont.values(metric)
    known = None
    if not paired and min(len(before), len(after)) < 2 and stored is not None:
        known = stored.variance(key, base.machine, metric, {*base.identities, *cont.identities})
    rounds = None
    if duet:
        rounds = [stats.round_log_ratio(first[metric], second[metric])
                  for first, second in zip(base.calls, cont.calls, strict=True)]  # fmt: skip
    test = stats.process_test(before, after, paired=paired, stored=known, duet=rounds)
    independent = metric not in stats.CLUSTERED_METRICS
    pick = (lambda side: side.pooled_call_values(metric)) if independent else (
        lambda side: side.pooled_values(metric))  # fmt: skip
    tail_ratios = tuple(
        stats.tail_ratio(name, q, pick(base), pick(cont), independent=independent)
        for name, q in (stats.TAIL_QUANTILES if tails else ())
    )
    return _Measured(
        key=key,
        metric=metric,
        test=test,
        baseline_calls=base.call_count(metric),
        contender_calls=cont.call_count(metric),
        baseline_median=math.exp(float(np.mean([v.log_median for v in before]))),
        contender_median=math.exp(float(np.mean([v.log_median for v in after]))),
        tails=tail_ratios,
    )


def _measure_workload(
    key: str, base_runs: Sequence[SelectedRun], cont_runs: Sequence[SelectedRun], stored: VarianceLookup | None
) -> tuple[list[_Measured], str, list[SelectedRun], list[SelectedRun], list[str]]:
    """Every metric of one workload; paired when the sides are the pairs of one ``tokbench ab`` (duet pairs when
    their rounds are confirmed)."""
    pairs = ab_pairs(base_runs, cont_runs)
    design, base_runs, cont_runs, not_compared = _design(list(base_runs), list(cont_runs), pairs)
    base, cont = Side.of(base_runs), Side.of(cont_runs)
    measured = []
    paired, duet = design in (DESIGN_PAIRED, DESIGN_DUET), design == DESIGN_DUET
    for metric in METRIC_UNITS:
        try:
            if base.values(metric) and cont.values(metric):
                measured.append(measure_metric(key, metric, base, cont, paired=paired, stored=stored, duet=duet))
        except ValueError as error:  # a zero timing (a served ITL when one SSE event carries several tokens)
            not_compared.append(f"{metric} not compared: {error}")
    if not measured and not_compared:
        raise ComparisonRefused(f"workload {key} cannot be compared: {'; '.join(not_compared)}")
    return measured, design, list(base_runs), list(cont_runs), not_compared


def holm_over_hypotheses(measured: Sequence[_Measured]) -> tuple[dict[tuple[str, str], tuple[float, float]], int]:
    """(workload, metric) -> (the hypothesis' p, its Holm-adjusted p); and the family size (tested hypotheses)."""
    grouped: dict[tuple[str, str], list[_Measured]] = {}
    for entry in measured:
        grouped.setdefault((entry.key, stats.hypothesis_of(entry.metric)), []).append(entry)
    names = list(grouped)
    raw = [stats.hypothesis_p_value([entry.test for entry in grouped[name]]) for name in names]
    adjusted = stats.holm_adjust(raw)
    by_metric = {}
    for name, p_value, p_adjusted in zip(names, raw, adjusted, strict=True):
        for entry in grouped[name]:
            by_metric[(entry.key, entry.metric)] = (p_value, p_adjusted)
    return by_metric, sum(1 for value in raw if not math.isnan(value))


@dataclass(frozen=True)
class _Rule:
    """The decision rule's settings, as every metric of one comparison uses them."""

    min_effect: float
    alpha: float
    family: int  # hypotheses in Holm's family
    power_target: float
    undecided: str  # what would decide a metric without a test


def _metric_record(entry: _Measured, p_value: float, p_adjusted: float, rule: _Rule) -> MetricComparison:
    higher_is_better = entry.metric in stats.HIGHER_IS_BETTER
    test = entry.test
    verdict, why = stats.decide(test, p_adjusted, higher_is_better, min_effect=rule.min_effect, alpha=rule.alpha,
                                undecided=rule.undecided)  # fmt: skip
    low, high = test.interval(1 - rule.alpha) or (None, None)
    family = max(rule.family, 1)
    power_options = {"alpha": rule.alpha, "min_effect": rule.min_effect}
    detectable = stats.detectable_change(test.se, test.df, family, **power_options) if test.tested else math.nan
    needed = stats.processes_for_change(stats.spread_of(test), rule.power_target, family, **power_options)
    return MetricComparison(
        metric=entry.metric,
        unit=METRIC_UNITS[entry.metric],
        higher_is_better=higher_is_better,
        baseline_calls=entry.baseline_calls,
        contender_calls=entry.contender_calls,
        median=StatisticRatio("median", entry.baseline_median, entry.contender_median, test.ratio, low, high),
        tails=tuple(_tail_record(tail) for tail in entry.tails),
        p_value=_finite(p_value),
        p_adjusted=_finite(p_adjusted),
        verdict=verdict,
        verdict_reason=why,
        detectable_change=_finite(detectable),
        hypothesis=stats.hypothesis_of(entry.metric),
        test=ProcessTestRecord(
            method=test.method,
            baseline_processes=test.baseline_processes,
            contender_processes=test.contender_processes,
            df=_finite(test.df),
            se_log=_finite(test.se),
            variance_source=test.reason,
        ),
        processes_for_target=needed,
    )


def _tail_record(tail: stats.TailRatio) -> StatisticRatio:
    low, high = tail.interval if tail.interval is not None else (None, None)
    return StatisticRatio(tail.statistic, tail.baseline, tail.contender, tail.ratio, low, high)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _workload_record(
    key: str,
    base_runs: Sequence[SelectedRun],
    cont_runs: Sequence[SelectedRun],
    metrics: Sequence[MetricComparison],
    design: str,
    ignored: tuple[str, ...],
    not_compared: Sequence[str] = (),
) -> WorkloadComparison:
    first_base, first_cont = base_runs[0].result, cont_runs[0].result
    base_prints = {fp.sha256 for run in base_runs if (fp := fingerprint_of(run.result)) is not None}
    cont_prints = {fp.sha256 for run in cont_runs if (fp := fingerprint_of(run.result)) is not None}
    outputs_changed = None if not base_prints or not cont_prints else base_prints != cont_prints
    warnings = _run_warnings("baseline", base_runs) + _run_warnings("contender", cont_runs) + list(not_compared)
    if len(base_runs) == 1 or len(cont_runs) == 1:
        warnings.append(ONE_PROCESS_WARNING)
    if outputs_changed:
        warnings.append("OUTPUTS CHANGED: the contender generated different tokens; a speedup is not a plain win")
    differences = _config_differences(first_base.config, first_cont.config)
    return WorkloadComparison(
        workload_key=key,
        name=first_base.config.name,
        device=device_type_of(first_base) or str(first_base.config.device),
        baseline_runs=tuple(run.origin for run in base_runs),
        contender_runs=tuple(run.origin for run in cont_runs),
        metrics=tuple(metrics),
        outputs_changed=outputs_changed,
        environment_differences=tuple(environment_differences(first_base.environment, first_cont.environment)),
        warnings=tuple(warnings),
        ignored_fields=tuple(differences) if ignored else (),
        design=design,
    )


def _geometric_means(measured: Sequence[_Measured], alpha: float) -> list[GeometricMeanSummary]:
    summaries = []
    for metric in METRIC_UNITS:
        tests = [entry.test for entry in measured if entry.metric == metric]
        if tests:
            mean = stats.geometric_mean_of(tests, confidence=1 - alpha)
            low, high = mean.interval if mean.interval is not None else (None, None)
            summaries.append(GeometricMeanSummary(metric, mean.workloads, mean.ratio, low, high))
    return summaries


def _gpu_warning(usable: dict[str, list[SelectedRun]]) -> list[str]:
    gpu_names = {
        side: {gpu.name for run in usable[side] for gpu in run.result.environment.gpus}
        for side in usable
    }
    if gpu_names["baseline"] == gpu_names["contender"]:
        return []
    return [
        f"DIFFERENT GPUS: baseline {sorted(gpu_names['baseline']) or ['none']} vs contender "
        f"{sorted(gpu_names['contender']) or ['none']}"
    ]


def compare(
    baseline: Sequence[SelectedRun],
    contender: Sequence[SelectedRun],
    *,
    baseline_source: str = "baseline",
    contender_source: str = "contender",
    min_effect: float = stats.DEFAULT_MIN_EFFECT,
    alpha: float = stats.DEFAULT_ALPHA,
    ignore: Sequence[str] = (),
    stored: VarianceLookup | None = None,
    power_target: float | None = None,
    undecided: str = UNDECIDED_HINT,
    sequential: SequentialLook | None = None,
) -> ComparisonReport:
    """Compare every workload both sides ran; raises ``ComparisonRefused`` when nothing can be compared.

    ``stored``: where to look up the machine's between-process variance for a side of one process;
    ``power_target``: the change "processes a side needed" is computed for (default 2 × min_effect);
    ``undecided``: the command that would decide a metric without a test.
    """
    _check_options(min_effect, alpha, power_target)
    ignored = check_ignorable(ignore)
    baseline, contender, copy_notes = distinct_sides(baseline, contender)  # copies once; none on both sides
    usable, unmatched = _usable_sides(baseline, contender, ignored)
    groups, common = _match_workloads(usable, ignored, unmatched)
    workloads_measured = {
        key: _measure_workload(key, groups["baseline"][key], groups["contender"][key], stored) for key in common
    }
    measured = [entry for key in common for entry in workloads_measured[key][0]]
    p_values, family = holm_over_hypotheses(measured)
    target = power_target if power_target is not None else default_power_target(min_effect)
    rule = _Rule(min_effect, alpha, family, target, undecided)
    workloads = []
    for key in common:
        entries, design, base_runs, cont_runs, not_compared = workloads_measured[key]
        metrics = [_metric_record(entry, *p_values[(key, entry.metric)], rule) for entry in entries]
        workloads.append(_workload_record(key, base_runs, cont_runs, metrics, design, ignored, not_compared))
    return ComparisonReport(
        baseline_source=baseline_source,
        contender_source=contender_source,
        min_effect=min_effect,
        alpha=alpha,
        correction="holm",
        resamples=0,
        seed=0,
        workloads=tuple(workloads),
        unmatched=tuple(unmatched),
        geometric_means=tuple(_geometric_means(measured, alpha)),
        warnings=tuple(copy_notes) + tuple(_gpu_warning(usable)),
        hypotheses=family,
        power_target=target,
        sequential=sequential,
    )


def default_power_target(min_effect: float) -> float:
    """The change "processes a side needed" is computed for: twice min_effect (a change of exactly
    min_effect is detected at most half the time, since the estimate must pass it), at least 1%."""
    return max(2 * min_effect, 0.01)


def change_percent(ratio: float) -> float:
    return (ratio - 1.0) * 100.0 if math.isfinite(ratio) else math.nan
