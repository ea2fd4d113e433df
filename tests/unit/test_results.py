"""Result files: exact round trips, atomic writes, clear errors on bad files."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from tokbench.analysis.summarize import recompute_summary, summarize_traces
from tokbench.config import BenchmarkConfig
from tokbench.errors import ResultFormatError
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.policy import MeasurementRecord, WarmupRecord
from tokbench.schema.quant import QuantizationRecord
from tokbench.schema.records import DeviceWarmupReport, EffectiveSettings, GenerationTrace, LoadTimings, ModelSource
from tokbench.schema.results import (
    SCHEMA_VERSION,
    BenchmarkResult,
    CompileRecord,
    StageRecords,
    load_result,
    save_result,
)


def _result() -> BenchmarkResult:
    big = 10**15  # absolute perf_counter_ns instants are large integers; JSON keeps them exact
    traces = tuple(
        GenerationTrace(
            t0_ns=big + i,
            end_ns=big + i + 9_000_001,
            token_timestamps_ns=((big + i + 1_000_003, big + i + 5_000_007, big + i + 8_999_999),),
            prompt_tokens=(16,),
            generated_tokens=(3,),
            output_shape=(1, 19),
        )
        for i in range(3)
    )
    return BenchmarkResult(
        config=BenchmarkConfig(new_tokens=3, sequence_length=16, compile_mode="default"),
        status="ok",
        environment=EnvironmentRecord(torch="x"),
        phases=StageRecords(
            load=LoadTimings(tokenizer_ns=1, weights_ns=2, to_device_ns=3),
            device_warmup=DeviceWarmupReport("cpu", 512, 10, 123),
            cold_call=traces[0],
            warmup_curve_ns=(5, 4),
            measurement_wall_ns=77,
            compile=CompileRecord(True, True, 0, 1, 1, 1),
            warmup=WarmupRecord("auto", 2, "steady state", True, window=1, shift=0.2, allowed_shift=0.25),
            measurement=MeasurementRecord("auto", 3, "max iterations", 0.04, 0.01),
        ),
        iterations=traces,
        summary=summarize_traces(traces),
        effective_settings=EffectiveSettings(dtype="bfloat16"),
        model_source=ModelSource("preset", "tiny-llama"),
        started_at="2026-11-23T00:00:00+00:00",
        notes=("monitor: not implemented",),
    )


def test_round_trip_is_exact(tmp_path: Path) -> None:
    result = _result()
    path = save_result(result, tmp_path / "sub" / "r.json")
    assert load_result(path) == result
    data = json.loads(path.read_text())
    assert data["schema_version"] == SCHEMA_VERSION
    assert data["config_hash"] == result.config.config_hash
    assert data["iterations"][0]["token_timestamps_ns"][0][0] == 10**15 + 1_000_003
    assert data["phases"]["compile"]["compiled"] is True


def test_results_written_before_monitoring_existed_still_load(tmp_path: Path) -> None:
    data = _result().to_dict()
    for key in ("monitor", "memory_peaks", "efficiency"):
        del data[key]
    result = BenchmarkResult.from_dict(data)
    assert (result.monitor, result.memory_peaks, result.efficiency) == (None, (), None)


def test_atomic_write_leaves_no_temporary_files_and_replaces_whole(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    path.write_text("old")
    save_result(_result(), path)
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]
    assert load_result(path).status == "ok"


def test_unreadable_files_give_clear_errors(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    data = _result().to_dict()
    path.write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(ResultFormatError, match="schema_version 99"):
        load_result(path)
    path.write_text(json.dumps({**data, "config_hash": "0" * 16}))
    with pytest.raises(ResultFormatError, match="does not match"):
        load_result(path)
    path.write_text('{"schema_version": 1')
    with pytest.raises(ResultFormatError, match="not valid JSON"):
        load_result(path)
    path.write_text(json.dumps({"schema_version": SCHEMA_VERSION, "status": "ok"}))
    with pytest.raises(ResultFormatError, match="missing"):
        load_result(path)


def test_result_files_get_ordinary_permissions_not_owner_only(tmp_path: Path) -> None:
    previous = os.umask(0o022)
    try:
        path = save_result(_result(), tmp_path / "r.json")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644  # what open(path, "w") gives under umask 022


def test_status_must_be_known() -> None:
    with pytest.raises(ValueError, match="status"):
        BenchmarkResult(config=BenchmarkConfig(), status="great")


def test_an_interrupted_write_keeps_the_old_file_whole(tmp_path: Path) -> None:
    from tokbench.fileio import atomic_write_text

    path = tmp_path / "r.json"
    atomic_write_text(path, '{"old": true}')
    with pytest.raises(UnicodeEncodeError):
        atomic_write_text(path, '{"new": "' + "x" * 100_000 + '\ud800"}')  # fails while writing
    assert path.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_result_written_by_schema_1_still_loads_with_its_hash(tmp_path: Path) -> None:
    # tests/data/result-v1.json was written by `tokbench run` at commit c216dfb (schema 1), unedited.
    path = Path(__file__).parents[1] / "data" / "result-v1.json"
    stored = json.loads(path.read_text())
    assert stored["schema_version"] == 1
    result = load_result(path)  # also checks the stored config_hash against the config
    assert result.config_hash == stored["config_hash"] and result.status == "ok"
    assert result.quantization == QuantizationRecord() and result.config.quantization is None
    recomputed = recompute_summary(result)  # the raw stamps give today's fuller summary, same figures
    for name, stored_summary in result.summary.items():
        fresh = recomputed[name]
        assert (stored_summary.count, stored_summary.median, stored_summary.p99) == (
            fresh.count,
            fresh.median,
            fresh.p99,
        )
        assert stored_summary.median_ci is None and fresh.median_ci is not None
    upgraded = load_result(save_result(result, tmp_path / "r.json"))
    assert upgraded == result and json.loads((tmp_path / "r.json").read_text())["schema_version"] == SCHEMA_VERSION


def test_results_written_before_the_policy_records_still_load(tmp_path: Path) -> None:
    data = _result().to_dict()
    for key in ("warmup", "measurement"):
        del data["phases"][key]
    for summary in data["summary"].values():
        for key in ("median_ci", "p90_ci", "p95_ci", "p99_ci", "cv", "iqr", "outliers", "trend_p_value", "flags"):
            del summary[key]
    del data["flags"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(data))
    old = load_result(path)
    assert old.phases.warmup is None and old.phases.measurement is None
    assert old.summary["e2e_latency_ms"].median_ci is None
    assert old.flags == ()


def test_run_flags_say_what_the_policies_could_not_do() -> None:
    result = _result()
    assert result.flags == ("precision_not_reached",)
    assert result.to_dict()["flags"] == ["precision_not_reached"]
    unsteady = WarmupRecord("auto", 50, "max iterations", False)
    recompiled = CompileRecord(True, True, 0, 1, 1, 3)
    phases = StageRecords(warmup=unsteady, compile=recompiled)
    assert BenchmarkResult(config=result.config, status="ok", phases=phases).flags == (
        "no_steady_state",
        "recompiled_while_measuring",
    )
