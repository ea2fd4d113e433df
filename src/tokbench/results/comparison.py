"""``tokbench compare``: match two sets of results by workload and decide, per metric, what changed.

Statistics (``analysis.compare``): contender ÷ baseline of each metric's median (and p90 / p99) with a 95%
bootstrap CI that resamples whole calls from both sides; a Mann-Whitney U test on one value per call; Holm's
correction over every (workload, metric) test of the comparison; a verdict that needs significance AND a change
beyond ``min_effect``. Comparisons that mean nothing (different shapes or devices, a failed or skipped side)
are refused with ``ComparisonRefused``; several runs of one workload on a side are pooled (their calls).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import fields
from typing import Any

from tokbench.analysis import compare as stats
from tokbench.analysis.metrics import METRIC_UNITS
from tokbench.config import BenchmarkConfig
from tokbench.errors import TokbenchError
from tokbench.results.selectors import SelectedRun, device_type_of, workload_key_of
from tokbench.schema.comparison import (
    ComparisonReport,
    EnvironmentDifference,
    GeometricMeanSummary,
    MetricComparison,
    OutputFingerprint,
    StatisticRatio,
    UnmatchedRun,
    WorkloadComparison,
)
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.results import STATUS_OK, BenchmarkResult

# What a workload is: these never differ between compared runs, --ignore or not.
SHAPE_FIELDS = ("model", "batch_size", "sequence_length", "new_tokens")
NEVER_IGNORED = (*SHAPE_FIELDS, "device")


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
    policy = {"name", "warmup_iterations", "measurement_iterations", "monitor", "monitor_interval_ms"}
    one, two = first.to_dict(), second.to_dict()
    return [
        f"{name} {one[name]!r} vs {two[name]!r}"
        for name in one
        if name not in policy
        and name not in skip
        and one[name] != two[name]
        and not name.startswith(("warmup_", "measurement_", "target_"))
    ]


def _unusable(run: SelectedRun, side: str, ignore: tuple[str, ...]) -> UnmatchedRun | None:
    result = run.result
    if result.status != STATUS_OK:
        why = f"{result.status}: {result.reason}"
    elif not result.iterations:
        why = "no measured iterations"
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


def _pooled_calls(runs: Sequence[SelectedRun]) -> tuple[dict[str, list[Any]], dict[str, list[int]]]:
    """Every metric's calls over ``runs``, and the run each call came from (for the two-level bootstrap)."""
    pooled: dict[str, list[Any]] = {name: [] for name in METRIC_UNITS}
    run_of_call: dict[str, list[int]] = {name: [] for name in METRIC_UNITS}
    for index, run in enumerate(runs):
        for name, calls in stats.per_call_samples(run.result.iterations).items():
            pooled[name].extend(calls)
            run_of_call[name].extend([index] * len(calls))
    return pooled, run_of_call


def _run_warnings(side: str, runs: Sequence[SelectedRun]) -> list[str]:
    warnings = []
    for run in runs:
        for flag in run.result.flags:
            warnings.append(f"{side} {run.origin}: {flag}")
    prints = {fp.sha256 for run in runs if (fp := fingerprint_of(run.result)) is not None}
    if len(prints) > 1:
        warnings.append(f"{side}: its {len(runs)} pooled runs generated different outputs")
    return warnings


def compare(
    baseline: Sequence[SelectedRun],
    contender: Sequence[SelectedRun],
    *,
    baseline_source: str = "baseline",
    contender_source: str = "contender",
    min_effect: float = stats.DEFAULT_MIN_EFFECT,
    alpha: float = stats.DEFAULT_ALPHA,
    resamples: int = stats.DEFAULT_RESAMPLES,
    seed: int = 0,
    ignore: Sequence[str] = (),
) -> ComparisonReport:
    """Compare every workload both sides ran; raises ``ComparisonRefused`` when nothing can be compared."""
    if not 0 <= min_effect < 1:
        raise ComparisonRefused(f"--min-effect {min_effect} must be a fraction in [0, 1), e.g. 0.02 for 2%")
    if not 0 < alpha < 1:
        raise ComparisonRefused(f"--alpha {alpha} must lie in (0, 1)")
    ignored = check_ignorable(ignore)
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

    # First pass: ratios and raw p-values of every (workload, metric); Holm needs them all before any verdict.
    raw: list[tuple[str, str, list[stats.RatioEstimate], float, int, int]] = []
    for key in common:
        base_calls, base_runs = _pooled_calls(groups["baseline"][key])
        cont_calls, cont_runs = _pooled_calls(groups["contender"][key])
        for metric in METRIC_UNITS:
            before, after = base_calls[metric], cont_calls[metric]
            if not before or not after:
                continue
            ratios = stats.bootstrap_ratios(
                before,
                after,
                resamples=resamples,
                seed=seed,
                baseline_runs=base_runs[metric],
                contender_runs=cont_runs[metric],
            )
            rank = stats.mann_whitney_u(stats.call_values(before), stats.call_values(after))
            raw.append((key, metric, ratios, rank.p_value, len(before), len(after)))
    adjusted = stats.holm_adjust([entry[3] for entry in raw])

    per_workload: dict[str, list[MetricComparison]] = {key: [] for key in common}
    for (key, metric, ratios, p_value, n_base, n_cont), p_adjusted in zip(raw, adjusted, strict=True):
        higher_is_better = metric in stats.HIGHER_IS_BETTER
        median = ratios[0]
        verdict, why = stats.decide(
            median, p_adjusted, higher_is_better, n_base, n_cont, min_effect=min_effect, alpha=alpha
        )
        power = stats.detectability(median.log_ratio_se, n_base, n_cont, alpha=alpha)
        per_workload[key].append(
            MetricComparison(
                metric=metric,
                unit=METRIC_UNITS[metric],
                higher_is_better=higher_is_better,
                baseline_calls=n_base,
                contender_calls=n_cont,
                median=_ratio_record(median),
                tails=tuple(_ratio_record(ratio) for ratio in ratios[1:]),
                p_value=p_value,
                p_adjusted=p_adjusted,
                verdict=verdict,
                verdict_reason=why,
                detectable_change=power.detectable_change,
                calls_for_1pct=power.calls_for_target,
            )
        )

    workloads = []
    for key in common:
        base_runs, cont_runs = groups["baseline"][key], groups["contender"][key]
        first_base, first_cont = base_runs[0].result, cont_runs[0].result
        base_prints = {fp.sha256 for run in base_runs if (fp := fingerprint_of(run.result)) is not None}
        cont_prints = {fp.sha256 for run in cont_runs if (fp := fingerprint_of(run.result)) is not None}
        outputs_changed = None if not base_prints or not cont_prints else base_prints != cont_prints
        warnings = _run_warnings("baseline", base_runs) + _run_warnings("contender", cont_runs)
        if len(base_runs) == 1 or len(cont_runs) == 1:
            warnings.append(
                "a side is one process: its CI holds call-to-call noise only, not process-to-process or "
                "machine-load drift; store several runs (sweep --repeat K) to pool them"
            )
        if outputs_changed:
            warnings.append("OUTPUTS CHANGED: the contender generated different tokens; a speedup is not a plain win")
        differences = _config_differences(first_base.config, first_cont.config)
        workloads.append(
            WorkloadComparison(
                workload_key=key,
                name=first_base.config.name,
                device=device_type_of(first_base) or str(first_base.config.device),
                baseline_runs=tuple(run.origin for run in base_runs),
                contender_runs=tuple(run.origin for run in cont_runs),
                metrics=tuple(per_workload[key]),
                outputs_changed=outputs_changed,
                environment_differences=tuple(environment_differences(first_base.environment, first_cont.environment)),
                warnings=tuple(warnings),
                ignored_fields=tuple(differences) if ignored else (),
            )
        )

    geometric = []
    for metric in METRIC_UNITS:
        ratios = [m.median.ratio for w in workloads for m in w.metrics if m.metric == metric]
        if ratios:
            geometric.append(
                GeometricMeanSummary(metric=metric, workloads=len(ratios), ratio=stats.geometric_mean(ratios))
            )
    report_warnings = []
    gpu_names = {
        side: {gpu.name for run in usable[side] for gpu in run.result.environment.gpus}
        for side in usable
    }
    if gpu_names["baseline"] != gpu_names["contender"]:
        report_warnings.append(
            f"DIFFERENT GPUS: baseline {sorted(gpu_names['baseline']) or ['none']} vs contender "
            f"{sorted(gpu_names['contender']) or ['none']}"
        )
    return ComparisonReport(
        baseline_source=baseline_source,
        contender_source=contender_source,
        min_effect=min_effect,
        alpha=alpha,
        correction="holm",
        resamples=resamples,
        seed=seed,
        workloads=tuple(workloads),
        unmatched=tuple(unmatched),
        geometric_means=tuple(geometric),
        warnings=tuple(report_warnings),
    )


def _ratio_record(ratio: stats.RatioEstimate) -> StatisticRatio:
    return StatisticRatio(
        statistic=ratio.statistic,
        baseline=ratio.baseline,
        contender=ratio.contender,
        ratio=ratio.ratio,
        ci_low=ratio.ci_low,
        ci_high=ratio.ci_high,
    )


def change_percent(ratio: float) -> float:
    return (ratio - 1.0) * 100.0 if math.isfinite(ratio) else math.nan
