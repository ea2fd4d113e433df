"""Sweep planning (expansion, levels, up-front skips, dedupe, ordering) and repeat variation: no child processes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tokbench.analysis.stats import Summary
from tokbench.analysis.variation import repeat_variation
from tokbench.config import BenchmarkConfig
from tokbench.errors import ConfigError
from tokbench.schema.results import BenchmarkResult
from tokbench.sweep.plan import (
    level_combinations,
    load_sweep_file,
)

TINY = {"model": "tiny-llama", "sequence_length": 8, "new_tokens": 4, "device": "cpu"}


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
