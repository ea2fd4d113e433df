"""Sweep planning (expansion, levels, up-front skips, dedupe, ordering) and repeat variation: no child processes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tokbench.analysis.stats import Summary
from tokbench.config import BenchmarkConfig
from tokbench.errors import ConfigError
from tokbench.schema.results import BenchmarkResult
from tokbench.sweep.plan import (
    LEVELS,
    SweepSpec,
    level_combinations,
    load_sweep_file,
    plan_sweep,
)
from tokbench.sweep.runner import repeat_variation

TINY = {"model": "tiny-llama", "sequence_length": 8, "new_tokens": 4, "device": "cpu"}


def test_lists_expand_to_the_cross_product() -> None:
    plan = plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": [1, 2, 4], "dtype": ["bfloat16", "float32"]}))
    pairs = {(config.batch_size, config.dtype) for config in plan.configs}
    assert pairs == {(b, d) for b in (1, 2, 4) for d in ("bfloat16", "float32")}
    assert len(plan.configs) == 6 and plan.duplicates == 0 and not plan.skipped


def test_groups_overlay_the_common_fields_and_carry_their_own_timeout() -> None:
    spec = SweepSpec.from_dict(
        {**TINY, "timeout_s": 100, "configs": [{"batch_size": [1, 2]}, {"model": "small-llama", "timeout_s": 5}]}
    )
    plan = plan_sweep(spec)
    assert [(p.config.model, p.config.batch_size, p.timeout_s) for p in plan.runnable] == [
        ("tiny-llama", 1, 100),
        ("tiny-llama", 2, 100),
        ("small-llama", 1, 5),
    ]


def test_duplicates_collapse_by_config_hash() -> None:
    # compile forces the static cache on, so static_cache false/true give one config when compiled.
    spec = SweepSpec.from_dict({**TINY, "compile_mode": "default", "static_cache": [False, True], "name": ["a", "b"]})
    plan = plan_sweep(spec)
    assert len(plan.runnable) == 1
    assert plan.duplicates == 3
    assert plan.runnable[0].config.name == "a"  # the first one wins


def test_configs_this_machine_cannot_run_are_listed_with_their_reason() -> None:
    plan = plan_sweep(SweepSpec.from_dict({**TINY, "attn_implementation": ["sdpa", "flash_attention_2"]}))
    assert [config.attn_implementation for config in plan.configs] == ["sdpa"]
    (skipped,) = plan.skipped
    assert skipped.config.attn_implementation == "flash_attention_2"
    assert "flash" in skipped.reason


def test_invalid_combinations_are_listed_and_unknown_fields_refused() -> None:
    plan = plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": [1, 0]}))
    assert [config.batch_size for config in plan.configs] == [1]
    (invalid,) = plan.invalid
    assert invalid.fields["batch_size"] == 0 and "batch_size" in invalid.reason
    with pytest.raises(ConfigError, match="batch_sise"):
        plan_sweep(SweepSpec.from_dict({**TINY, "batch_sise": [1, 2]}))
    with pytest.raises(ConfigError, match="empty list"):
        plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": []}))
    with pytest.raises(ConfigError, match="level"):
        SweepSpec.from_dict({**TINY, "level": "huge"})


def test_same_model_adjacent_and_compiled_configs_together_at_the_end_of_their_model() -> None:
    spec = SweepSpec.from_dict(
        {
            **TINY,
            "configs": [
                {"model": "tiny-llama", "compile_mode": "default"},
                {"model": "small-llama"},
                {"model": "tiny-llama", "batch_size": 2},
                {"model": "small-llama", "compile_mode": "default"},
                {"model": "tiny-llama", "compile_mode": "max-autotune-no-cudagraphs"},
                {"model": "tiny-llama", "compile_mode": "default", "batch_size": 2},
            ],
        }
    )
    order = [(c.model, c.compile_mode, c.batch_size) for c in plan_sweep(spec).configs]
    assert order == [
        ("tiny-llama", None, 2),
        ("tiny-llama", "default", 1),
        ("tiny-llama", "default", 2),
        ("tiny-llama", "max-autotune-no-cudagraphs", 1),
        ("small-llama", None, 1),
        ("small-llama", "default", 1),
    ]


def test_levels_grow_and_a_listed_value_restricts_them() -> None:
    sizes = {level: len(plan_sweep(SweepSpec.from_dict({**TINY, "level": level})).runnable) for level in LEVELS}
    totals = {
        level: len((plan := plan_sweep(SweepSpec.from_dict({**TINY, "level": level}))).runnable) + len(plan.skipped)
        for level in LEVELS
    }
    assert 0 < sizes["small"] <= sizes["thorough"] <= sizes["everything"]
    assert totals["small"] < totals["thorough"] < totals["everything"]
    only_eager = plan_sweep(SweepSpec.from_dict({**TINY, "level": "thorough", "attn_implementation": "eager"}))
    assert {config.attn_implementation for config in only_eager.configs} == {"eager"}
    assert {config.compile_mode for config in only_eager.configs} == {None, "default"}


def test_a_level_dimension_this_version_lacks_is_left_out_with_a_note() -> None:
    fields = [f.name for f in dataclasses.fields(BenchmarkConfig)]
    without = [name for name in fields if name != "continuous_batching"]
    combinations, notes = level_combinations("small", without)
    assert all("continuous_batching" not in combination for combination in combinations)
    assert len(combinations) == 2  # sdpa and sdpa + compile; the batching entry needs the absent field
    assert notes and "continuous_batching" in notes[0]
    with_it, no_notes = level_combinations("small", [*without, "continuous_batching"])
    assert len(with_it) == 3 and not no_notes
    assert {combination["continuous_batching"] for combination in with_it} == {False, True}


def test_sweep_id_is_the_set_of_configs() -> None:
    one = plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": [1, 2]}))
    reordered = plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": [2, 1, 2], "timeout_s": 9}))
    other = plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": [1, 3]}))
    assert one.sweep_id == reordered.sweep_id != other.sweep_id


def test_a_sweep_file_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "sweep.yaml"
    path.write_text("model: tiny-llama\nbatch_size: [1, 2]\nrepeat: 3\ncompile_cache: shared\n", encoding="utf-8")
    spec = load_sweep_file(path)
    assert spec.repeat == 3 and spec.compile_cache == "shared" and spec.launcher == "process"
    assert spec.with_options(repeat=None, launcher="inline").launcher == "inline"
    assert spec.with_options(repeat=None).repeat == 3
    assert spec.start_method is None and spec.with_options(start_method="spawn").start_method == "spawn"
    with pytest.raises(ConfigError, match="start_method"):
        spec.with_options(start_method="vfork")


def _result_with(medians: list[float], stds: list[float], means: list[float]) -> list[BenchmarkResult]:
    config = BenchmarkConfig(**TINY)
    return [
        BenchmarkResult(
            config=config,
            status="ok",
            summary={
                "e2e_latency_ms": Summary(
                    unit="ms", count=5, mean=mean, median=median, std=std, min=0.0, max=0.0, p90=0.0, p95=0.0, p99=0.0
                )
            },
        )
        for median, std, mean in zip(medians, stds, means, strict=True)
    ]


def test_repeat_variation_between_and_within_processes() -> None:
    # Per-process medians 9, 10, 11: mean 10, sample std 1 → between CV 10%.
    # Within: std/mean = 0.2/10, 0.4/10, 0.6/10 → mean 4%.
    results = _result_with([9.0, 10.0, 11.0], [0.2, 0.4, 0.6], [10.0, 10.0, 10.0])
    variation = repeat_variation(results)
    assert variation is not None
    assert variation.processes == 3
    assert variation.mean_of_medians == pytest.approx(10.0)
    assert variation.between_cv == pytest.approx(0.1)
    assert variation.within_cv == pytest.approx(0.04)
    failed = dataclasses.replace(results[0], status="failed", summary={})
    assert repeat_variation([results[0], failed]) is None  # one ok process: no between-process figure
