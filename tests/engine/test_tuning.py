"""The int4 kernel autotuner: timing logic on synthetic timings, the cache, and tune_model end to end."""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
from rich.console import Console
from rich.table import Table
from torch import nn

import tokbench.hardware.warmup
from tokbench.clock import FakeClock
from tokbench.hardware.interference import HostReading, InterferenceWatch
from tokbench.quant import KernelChoice, QuantizedLinear, quantize_model
from tokbench.quant import kernels as kernels_module
from tokbench.quant.tune import (
    CACHE_SCHEMA_VERSION,
    CACHE_USE,
    RETUNE_ENV,
    CandidateRejectedWarning,
    ClockTimer,
    HighDispersionWarning,
    PickNotCachedWarning,
    TuningCache,
    TuningCacheWarning,
    TuningError,
    cache_key,
    candidate_timing,
    default_cache_dir,
    is_near_tie,
    measure_round_robin,
    pick_winner,
    plan_rounds,
    round_robin_order,
    tune_model,
    tuned_ms,
    warn_dispersion,
)
from tokbench.report.tuning import render_tuning_table
from tokbench.schema.quant import CandidateTiming, TuningReport

CPU = torch.device("cpu")
NATIVE = KernelChoice("native")
SPLITK1 = KernelChoice("splitk", 1)
SPLITK2 = KernelChoice("splitk", 2)
SPLITK4 = KernelChoice("splitk", 4)


def _timing(choice: KernelChoice, samples: Sequence[int]) -> CandidateTiming:
    return candidate_timing(choice, samples)


class ScriptedTimer:
    """A RoundTimer returning scripted durations per call index; records every round's call order."""

    def __init__(self, durations: Callable[[int, int], int], labels: Sequence[str]) -> None:
        self.durations = durations  # (candidate index, how many times it was timed) -> ns
        self.labels = list(labels)
        self.rounds: list[list[str]] = []
        self.counts = [0] * len(labels)

    def time_round(self, calls: Sequence[Callable[[], object]]) -> list[int]:
        order = [int(call()) for call in calls]  # each fake call returns its candidate index
        self.rounds.append([self.labels[i] for i in order])
        result = []
        for index in order:
            result.append(self.durations(index, self.counts[index]))
            self.counts[index] += 1
        return result


# --- round-robin measurement ----------------------------------------------------------------------------


def test_round_robin_order_rotates_the_first_candidate() -> None:
    assert round_robin_order(3, 0) == [0, 1, 2]
    assert round_robin_order(3, 1) == [1, 2, 0]
    assert round_robin_order(3, 4) == [1, 2, 0]


def test_measurement_interleaves_candidates_and_plans_from_the_budget() -> None:
    calls = [lambda i=i: i for i in range(3)]  # type: ignore[misc]
    timer = ScriptedTimer(lambda index, _: 1_000 * (index + 1), ["a", "b", "c"])
    samples, plan = measure_round_robin(calls, timer, budget_ns=66_000, min_rounds=2, max_rounds=100)
    # Estimate round costs 6 us; 60 us left affords 10 rounds: 1 warmup + 9 timed.
    assert plan.estimate_round_ns == 6_000 and plan.warmup_rounds == 1 and plan.timed_rounds == 9
    assert timer.rounds[0] == ["a", "b", "c"]  # the estimate round
    timed_rounds = timer.rounds[1 + plan.warmup_rounds :]
    assert timed_rounds[:4] == [["a", "b", "c"], ["b", "c", "a"], ["c", "a", "b"], ["a", "b", "c"]]
    assert [len(s) for s in samples] == [9, 9, 9]
    assert samples[1] == [2_000] * 9  # samples come back in candidate order, not call order


def test_plan_respects_min_and_max_rounds() -> None:
    assert plan_rounds(10**9, 10**6, min_rounds=5).timed_rounds == 5  # budget too small: still 5
    assert plan_rounds(1, 10**9, max_rounds=50).timed_rounds == 50
    assert plan_rounds(1_000, 100_000).warmup_rounds == 10


def test_clock_timer_uses_the_injected_clock() -> None:
    clock = FakeClock(ticks=[0, 700, 1_000, 1_250])
    assert ClockTimer(CPU, clock).time_round([lambda: None, lambda: None]) == [700, 250]


def test_clock_timer_runs_before_call_outside_the_timed_window() -> None:
    events: list[str] = []

    def clock() -> int:
        events.append("clock")
        return 10 * len(events)

    timer = ClockTimer(CPU, clock, before_call=lambda: events.append("flush"))
    timer.time_round([lambda: events.append("call")])
    assert events == ["flush", "clock", "call", "clock"]


# --- winner selection ----------------------------------------------------------------------------------


def test_lowest_median_wins_when_clearly_faster() -> None:
    timings = [
        _timing(NATIVE, [1_300, 1_310, 1_290, 1_305, 1_295] * 4),
        _timing(SPLITK1, [1_000, 1_010, 990, 1_005, 995] * 4),
        _timing(SPLITK4, [1_150, 1_140, 1_160, 1_150, 1_155] * 4),
    ]
    winner, tie_break = pick_winner(timings)
    assert winner == SPLITK1 and not tie_break


def test_near_tie_goes_to_the_simpler_candidate() -> None:
    # splitk/4 is 0.5 % faster than splitk/1: within the 1 % tie threshold, so the simpler one wins.
    timings = [
        _timing(SPLITK4, [995] * 20),
        _timing(SPLITK1, [1_000] * 20),
        _timing(SPLITK2, [1_200] * 20),
    ]
    winner, tie_break = pick_winner(timings)
    assert winner == SPLITK1 and tie_break
    # Noise widens the tie: 5 % apart but with a wide spread over few samples is still a tie...
    noisy_fast = _timing(SPLITK4, [800, 900, 950, 1_000, 1_100, 1_200])
    noisy_slow = _timing(SPLITK1, [850, 950, 1_000, 1_050, 1_150, 1_250])
    assert is_near_tie(noisy_fast, noisy_slow)
    assert pick_winner([noisy_fast, noisy_slow]) == (SPLITK1, True)
    # ...while the same 5 % gap measured tightly is not.
    assert pick_winner([_timing(SPLITK4, [950] * 50), _timing(SPLITK1, [1_000] * 50)]) == (SPLITK4, False)


def test_high_dispersion_warns() -> None:
    steady = _timing(NATIVE, [1_000, 1_001, 999, 1_000])
    noisy = _timing(SPLITK1, [1_000, 1_500, 700, 1_300, 900])
    assert noisy.dispersion > 0.1 >= steady.dispersion
    with pytest.warns(HighDispersionWarning, match="splitk/1"):
        assert warn_dispersion([steady, noisy], "test")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not warn_dispersion([steady], "test")


def test_candidate_timing_statistics_and_roundtrip() -> None:
    timing = _timing(SPLITK2, [10, 20, 30, 40, 50])
    assert (timing.median_ns, timing.iqr_ns) == (30, 20)
    assert CandidateTiming.from_dict(json.loads(json.dumps(timing.to_dict()))) == timing


# --- cache -------------------------------------------------------------------------------------------------


def _key(**overrides: object) -> dict[str, object]:
    key = cache_key(
        device=CPU,
        dtype=torch.bfloat16,
        group_size=128,
        in_features=256,
        out_features=512,
        m=8,
        candidates=[NATIVE, SPLITK1],
    )
    key.update(overrides)
    return key


def test_cache_roundtrip_is_atomic_and_keyed(tmp_path: Path) -> None:
    cache = TuningCache(tmp_path)
    key = _key()
    payload = {"winner": NATIVE.to_dict(), "tie_break": False, "candidates": [_timing(NATIVE, [5]).to_dict()]}
    path = cache.store(key, payload)
    assert path is not None and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp file left behind
    assert cache.load(key)["winner"] == NATIVE.to_dict()  # type: ignore[index]
    assert cache.load(_key(m=9)) is None  # a different key is a different file
    assert key["torch"] == torch.__version__ and key["threads"] == torch.get_num_threads()
    assert key["candidates"] == ["native", "splitk/1"]


def test_corrupted_or_mismatched_cache_entries_are_ignored_with_a_warning(tmp_path: Path) -> None:
    cache = TuningCache(tmp_path)
    key = _key()
    path = cache.path_for(key)
    path.write_text("{not json", encoding="utf-8")
    with pytest.warns(TuningCacheWarning, match="unreadable"):
        assert cache.load(key) is None
    path.write_text(
        json.dumps(
            {"schema": CACHE_SCHEMA_VERSION, "key": _key(torch="1.0"), "winner": NATIVE.to_dict(), "candidates": []}
        ),
        encoding="utf-8",
    )
    with pytest.warns(TuningCacheWarning, match="different key"):
        assert cache.load(key) is None
    path.write_text(
        # split_k has a default (may be absent); a winner without its kernel is corrupt
        json.dumps({"schema": CACHE_SCHEMA_VERSION, "key": key, "winner": {"split_k": 1}, "candidates": []}),
        encoding="utf-8",
    )
    with pytest.warns(TuningCacheWarning, match="unreadable"):
        assert cache.load(key) is None


def test_cache_dir_default_and_environment_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("TOKBENCH_CACHE_DIR", raising=False)
    assert default_cache_dir() == Path.home() / ".cache" / "tokbench" / "tuning"
    monkeypatch.setenv("TOKBENCH_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "tuning"
    assert TuningCache().directory == tmp_path / "tuning"


def test_unwritable_cache_warns_instead_of_failing(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.warns(TuningCacheWarning, match="could not write"):
        assert TuningCache(blocker / "sub").store(_key(), {"winner": NATIVE.to_dict(), "candidates": []}) is None


# --- tune_model ------------------------------------------------------------------------------------------


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(), nn.Linear(256, 512))
    quantize_model(model, group_size=64)
    return model


class KernelScriptedTimer:
    """Runs each call (so the real kernels run) and reports a synthetic duration per kernel choice."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, durations: Callable[[KernelChoice, int], int]) -> None:
        self.durations = durations
        self.rounds = 0
        self._seen: list[tuple[KernelChoice, int]] = []
        original = kernels_module.run_kernel

        def spy(layer: QuantizedLinear, x2d: torch.Tensor, choice: KernelChoice) -> torch.Tensor:
            self._seen.append((choice, x2d.shape[0]))
            return original(layer, x2d, choice)

        monkeypatch.setattr("tokbench.quant.tune.orchestration.run_kernel", spy)

    def time_round(self, calls: Sequence[Callable[[], object]]) -> list[int]:
        self.rounds += 1
        result = []
        for call in calls:
            call()
            choice, m = self._seen[-1]
            result.append(self.durations(choice, m))
        return result


# A scripted timer's durations cannot be disturbed by other processes (no interference watch), and 12 paired
# rounds let a clear winner pass the sign test (p = 2 / 4096), so its pick is cached.
SCRIPTED: dict[str, Any] = {"min_rounds": 12, "max_rounds": 12, "interference": None}


def _synthetic(choice: KernelChoice, m: int) -> int:
    # Decode: native fastest. Prefill: splitk/4 fastest, but splitk/2 is within 0.5 % of it: a near-tie,
    # so the simpler splitk/2 must win.
    if m <= 2:
        return 1_000 if choice == NATIVE else 5_000 + 100 * choice.split_k
    table = {NATIVE: 9_000, SPLITK1: 6_000, SPLITK2: 4_020, SPLITK4: 4_000}
    return table.get(choice, 7_000)


@pytest.fixture
def no_device_warmup(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    budgets: list[float] = []
    original = tokbench.hardware.warmup.device_warmup

    def counting(device: torch.device, budget_s: float = 0.5, **kwargs: object) -> object:
        budgets.append(budget_s)
        return original(device, 0.0, matrix_size=8)

    monkeypatch.setattr(tokbench.hardware.warmup, "device_warmup", counting)
    return budgets


def test_tune_model_applies_winners_and_second_run_uses_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_device_warmup: list[float]
) -> None:
    model = _model()
    timer = KernelScriptedTimer(monkeypatch, _synthetic)
    report = tune_model(model, 2, 16, cache_dir=tmp_path, budget_s_per_shape=0.002, timer=timer, **SCRIPTED)
    assert no_device_warmup == [0.5]  # warmed once, before anything was timed
    assert {(e.in_features, e.out_features, e.m) for e in report.entries} == {
        (256, 512, 2),
        (256, 512, 32),
        (512, 256, 2),
        (512, 256, 32),
    }
    for entry in report.entries:
        assert not entry.from_cache and entry.plan is not None
        if entry.m == 2:
            assert entry.phase == "decode" and entry.winner == NATIVE and entry.default == NATIVE
            assert entry.speedup_vs_default == pytest.approx(1.0)
        else:
            assert entry.phase == "prefill" and entry.winner == SPLITK2 and entry.tie_break
            assert entry.default == SPLITK1 and entry.speedup_vs_default == pytest.approx(6_000 / 4_020)
    first, third = model[0], model[4]  # same shape: both get the winners
    for layer in (first, third):
        assert layer.dispatch == {2: NATIVE, 32: SPLITK2}
    assert TuningReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report

    rounds_before = timer.rounds
    again = _model()
    second = tune_model(again, 2, 16, cache_dir=tmp_path, budget_s_per_shape=0.002, timer=timer, **SCRIPTED)
    assert timer.rounds == rounds_before  # nothing timed
    assert no_device_warmup == [0.5]  # and no warmup either
    assert all(e.from_cache for e in second.entries) and second.cache_hits == 4
    # (nothing timed, no warmup: how long reading the cache took is the machine's business, not checked here)
    assert again[0].dispatch == {2: NATIVE, 32: SPLITK2}

    table = render_tuning_table(second)
    assert isinstance(table, Table) and table.row_count == sum(len(e.candidates) for e in second.entries)
    console = Console(width=160, record=True)
    console.print(table)
    text = console.export_text()
    assert "WINNER (tie->simpler)" in text and "splitk/2" in text


def test_tune_model_warns_on_noisy_timings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_device_warmup: list[float]
) -> None:
    model = _model()

    def noisy(choice: KernelChoice, m: int) -> int:
        noisy.calls += 1  # type: ignore[attr-defined]
        return 1_000 + (600 if noisy.calls % 2 else 0)  # type: ignore[attr-defined]

    noisy.calls = 0  # type: ignore[attr-defined]
    timer = KernelScriptedTimer(monkeypatch, noisy)
    with pytest.warns(HighDispersionWarning):
        report = tune_model(
            model, 1, 4, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, **{**SCRIPTED, "max_rounds": 4}
        )
    assert any(e.high_dispersion for e in report.entries)


@pytest.mark.filterwarnings("ignore::tokbench.quant.tune.HighDispersionWarning")  # busy 2-core hosts
def test_tune_model_with_the_real_clock(tmp_path: Path, no_device_warmup: list[float]) -> None:
    model = _model()
    report = tune_model(model, 1, 8, cache_dir=tmp_path, budget_s_per_shape=0.2, min_rounds=3, max_rounds=20)
    for entry in report.entries:
        assert entry.winner in {t.choice for t in entry.candidates}
        assert all(t.median_ns > 0 and len(t.samples) >= 3 for t in entry.candidates)
    with torch.no_grad():
        out = model(torch.randn(1, 8, 256))
    assert out.shape == (1, 8, 512)
    assert report.total_tuning_ns > 0
    # cached exactly when some pick was separated from noise (on a busy machine none may be: that is the point)
    cacheable = [e.confidence is not None and e.confidence.cacheable for e in report.entries]
    assert bool(os.listdir(tmp_path)) == any(cacheable)


def test_tune_model_needs_quantized_layers_and_valid_sizes() -> None:
    with pytest.raises(TuningError, match="quantize_model"):
        tune_model(nn.Linear(4, 4), 1, 1)
    with pytest.raises(TuningError):
        tuned_ms(0, 4)
    assert tuned_ms(4, 1) == {4: "prefill+decode"}
    assert tuned_ms(2, 8) == {2: "decode", 16: "prefill"}


def test_tuner_times_with_the_runtime_dtype_after_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_device_warmup: list[float]
) -> None:
    model = _model().to(torch.bfloat16)
    dtypes: list[torch.dtype] = []
    original = kernels_module.bind_kernel

    def spy(layer: QuantizedLinear, choice: KernelChoice, device: torch.device, dtype: torch.dtype) -> object:
        dtypes.append(dtype)
        return original(layer, choice, device, dtype)

    monkeypatch.setattr(kernels_module, "bind_kernel", spy)
    timer = KernelScriptedTimer(monkeypatch, _synthetic)
    report = tune_model(model, 1, 4, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, **SCRIPTED)
    assert report.dtype == "bfloat16" and set(dtypes) == {torch.bfloat16}
    assert all(json.loads(p.read_text())["key"]["dtype"] == "bfloat16" for p in tmp_path.glob("*.json"))
    with torch.no_grad():
        assert model(torch.randn(4, 256, dtype=torch.bfloat16)).dtype == torch.bfloat16


def _single_layer_model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 64))
    quantize_model(model, group_size=128)  # 2 groups: splitk/1..2 only
    return model


def test_cached_winner_that_cannot_run_is_rejected(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_device_warmup: list[float]
) -> None:
    model = _single_layer_model()
    layer = model[0]
    candidates = kernels_module.candidate_choices(layer, CPU, torch.float32)
    key = cache_key(
        device=CPU, dtype=torch.float32, group_size=128, in_features=256, out_features=64, m=1, candidates=candidates
    )
    bad = KernelChoice("splitk", 32)
    timings = [_timing(c, [100]).to_dict() for c in [*candidates, bad] if c != SPLITK2]
    TuningCache(tmp_path).store(key, {"winner": bad.to_dict(), "tie_break": False, "candidates": timings})
    timer = KernelScriptedTimer(monkeypatch, _synthetic)
    with pytest.warns(TuningCacheWarning, match="invalid"):
        report = tune_model(model, 1, 1, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, **SCRIPTED)
    assert not report.entries[0].from_cache and layer.dispatch[1] in candidates
    with torch.no_grad():
        layer(torch.randn(1, 256))
    # Right labels but a winner that is not a candidate: also rejected.
    timings = [_timing(c, [100]).to_dict() for c in candidates]
    TuningCache(tmp_path).store(key, {"winner": bad.to_dict(), "tie_break": False, "candidates": timings})
    with pytest.warns(TuningCacheWarning, match="not among the current candidates"):
        tune_model(model, 1, 1, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, **SCRIPTED)


def test_a_failing_candidate_is_dropped_and_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_device_warmup: list[float]
) -> None:
    model = _model()
    original = kernels_module.splitk_matmul

    def broken(layer: QuantizedLinear, x2d: torch.Tensor, split_k: int) -> torch.Tensor:
        if split_k == 2:
            raise RuntimeError("boom")
        return original(layer, x2d, split_k)

    monkeypatch.setattr(kernels_module, "splitk_matmul", broken)
    timer = KernelScriptedTimer(monkeypatch, _synthetic)
    with pytest.warns(CandidateRejectedWarning, match="splitk/2"):
        report = tune_model(model, 2, 16, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, **SCRIPTED)
    for entry in report.entries:
        assert entry.rejected == (("splitk/2", "RuntimeError: boom"),)
        assert SPLITK2 not in {t.choice for t in entry.candidates} and entry.winner != SPLITK2
    assert TuningReport.from_dict(json.loads(json.dumps(report.to_dict()))) == report
    again = tune_model(_model(), 2, 16, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, **SCRIPTED)
    assert all(e.from_cache and e.rejected == (("splitk/2", "RuntimeError: boom"),) for e in again.entries)


def test_default_is_timed_as_a_baseline_and_the_report_is_strict_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_device_warmup: list[float]
) -> None:
    model = _model()
    timer = KernelScriptedTimer(monkeypatch, _synthetic)
    report = tune_model(
        model, 2, 16, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, kernels=("splitk",), **SCRIPTED
    )
    for entry in report.entries:
        if entry.m == 2:  # the default (native) is not a candidate: timed, but it cannot win
            assert entry.default == NATIVE and entry.timing_of(NATIVE) is not None and entry.winner != NATIVE
            assert entry.speedup_vs_default == pytest.approx(1_000 / 5_100)
        assert entry.speedup_vs_default is not None and math.isfinite(entry.speedup_vs_default)
    text = json.dumps(report.to_dict(), allow_nan=False)
    assert TuningReport.from_dict(json.loads(text)) == report


def test_kernel_revision_is_part_of_the_cache_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_device_warmup: list[float]
) -> None:
    timer = KernelScriptedTimer(monkeypatch, _synthetic)
    tune_model(_single_layer_model(), 1, 1, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, **SCRIPTED)
    hit = tune_model(_single_layer_model(), 1, 1, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, **SCRIPTED)
    assert hit.entries[0].from_cache
    assert _key()["kernel_revision"] == kernels_module.KERNEL_REVISION
    monkeypatch.setattr(kernels_module, "KERNEL_REVISION", kernels_module.KERNEL_REVISION + 1)
    miss = tune_model(_single_layer_model(), 1, 1, cache_dir=tmp_path, budget_s_per_shape=1e-3, timer=timer, **SCRIPTED)
    assert not miss.entries[0].from_cache


# --- confidence, noise never cached, re-tuning ------------------------------------------------------------


def test_every_pick_says_how_sure_it_is_and_noise_is_never_cached(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_device_warmup: list[float]
) -> None:
    timer = KernelScriptedTimer(monkeypatch, _synthetic)
    report = tune_model(_model(), 2, 16, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, **SCRIPTED)
    levels = {(e.in_features, e.m): e.confidence.level for e in report.entries if e.confidence is not None}
    assert set(levels.values()) == {"clear", "tie"} and len(levels) == 4  # decode native: clear; prefill: a tie
    assert len(list(tmp_path.glob("*.json"))) == 4

    def coin(choice: KernelChoice, m: int) -> int:  # every candidate the same, give or take 60%
        coin.calls += 1  # type: ignore[attr-defined]
        return 1_000 + (600 if coin.calls % 3 else 0)  # type: ignore[attr-defined]

    coin.calls = 0  # type: ignore[attr-defined]
    noisy_dir = tmp_path / "noisy"
    with pytest.warns(PickNotCachedWarning, match="not cached"):
        noisy = tune_model(_model(), 2, 16, cache_dir=noisy_dir, budget_s_per_shape=0.001,
                           timer=KernelScriptedTimer(monkeypatch, coin), **SCRIPTED)  # fmt: skip
    assert all(e.confidence is not None and e.confidence.level == "noise" for e in noisy.entries)
    assert not list(noisy_dir.glob("*.json"))  # used for the run, never kept


def test_a_busy_machine_while_timing_makes_the_pick_noise(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_device_warmup: list[float]
) -> None:
    readings = iter([HostReading(0, 0.0, 0.0, 0.0), HostReading(10**9, 2.0, 0.0, 0.5)] * 8)  # others: 1.5 CPUs

    def busy_watch() -> InterferenceWatch:
        return InterferenceWatch(read=lambda: next(readings), now=lambda: 0)

    timer = KernelScriptedTimer(monkeypatch, _synthetic)
    options = {**SCRIPTED, "interference": busy_watch}
    with pytest.warns(PickNotCachedWarning, match="busy"):
        report = tune_model(_single_layer_model(), 1, 1, cache_dir=tmp_path, budget_s_per_shape=0.001,
                            timer=timer, **options)  # fmt: skip
    assert report.entries[0].confidence is not None and "busy" in report.entries[0].confidence.reason
    assert not list(tmp_path.glob("*.json"))


def test_retune_times_again_and_replaces_the_cached_pick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_device_warmup: list[float]
) -> None:
    timer = KernelScriptedTimer(monkeypatch, _synthetic)
    tune_model(_single_layer_model(), 1, 1, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=timer, **SCRIPTED)
    (entry_file,) = tmp_path.glob("*.json")
    assert json.loads(entry_file.read_text())["winner"] == NATIVE.to_dict()

    def splitk_now_wins(choice: KernelChoice, m: int) -> int:
        return 500 if choice == SPLITK1 else 5_000

    rounds = timer.rounds
    faster = KernelScriptedTimer(monkeypatch, splitk_now_wins)
    monkeypatch.setenv(RETUNE_ENV, "1")  # what `tokbench run --retune` sets
    retuned = tune_model(_single_layer_model(), 1, 1, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=faster,
                         **SCRIPTED)  # fmt: skip
    assert not retuned.entries[0].from_cache and faster.rounds > 0 and timer.rounds == rounds
    assert json.loads(entry_file.read_text())["winner"] == SPLITK1.to_dict()  # the entry was replaced
    monkeypatch.delenv(RETUNE_ENV)
    cached = tune_model(_single_layer_model(), 1, 1, cache_dir=tmp_path, budget_s_per_shape=0.001, timer=faster,
                        cache_mode=CACHE_USE, **SCRIPTED)  # fmt: skip
    assert cached.entries[0].from_cache and cached.entries[0].winner == SPLITK1
    assert cached.entries[0].confidence is not None and cached.entries[0].confidence.level == "clear"
    console = Console(width=200, record=True)
    console.print(render_tuning_table(cached))
    assert "clear" in console.export_text()
