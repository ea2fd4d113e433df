"""Result files: exact round trips, atomic writes, clear errors on bad files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokbench.config import BenchmarkConfig
from tokbench.errors import ResultFormatError
from tokbench.generation import GenerationTrace
from tokbench.loading import LoadTimings
from tokbench.results import (
    SCHEMA_VERSION,
    BenchmarkResult,
    CompileRecord,
    Phases,
    load_result,
    save_result,
    summarize_traces,
)
from tokbench.warmup import DeviceWarmupReport


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
        environment={"torch": "x", "gpus": []},
        phases=Phases(
            load=LoadTimings(tokenizer_ns=1, weights_ns=2, to_device_ns=3),
            device_warmup=DeviceWarmupReport("cpu", 512, 10, 123),
            cold_call=traces[0],
            warmup_curve_ns=(5, 4),
            measurement_wall_ns=77,
            compile=CompileRecord(True, True, 0, 1, 1, 1),
        ),
        iterations=traces,
        summary=summarize_traces(traces),
        effective_settings={"dtype": "bfloat16"},
        model_source={"kind": "preset", "identifier": "tiny-llama"},
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
