"""Int4 end to end: the quantize and tune load phases in a real run, the CLI, and the tuning cache."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import tokbench
from tokbench.config import BenchmarkConfig
from tokbench.engine.loading import load
from tokbench.errors import ConfigError
from tokbench.quant import QuantizedLinear
from tokbench.schema.results import load_result, save_result

INT4_FIELDS: dict[str, object] = {
    "model": "tiny-llama",
    "sequence_length": 8,
    "new_tokens": 4,
    "warmup_iterations": 1,
    "measurement_iterations": 2,
    "device": "cpu",
    "quantization": "int4",
}


@pytest.fixture
def tuning_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cache = tmp_path / "cache"
    monkeypatch.setenv("TOKBENCH_CACHE_DIR", str(cache))
    return cache


def test_quantization_fields_are_validated() -> None:
    with pytest.raises(ConfigError, match="group_size: applies only to a quantized model"):
        BenchmarkConfig(group_size=64)
    with pytest.raises(ConfigError, match="tune: applies only to a quantized model"):
        BenchmarkConfig(tune=True)
    with pytest.raises(ConfigError, match="group_size: unknown value 100"):
        BenchmarkConfig(quantization="int4", group_size=100)
    with pytest.raises(ConfigError, match="quantization: unknown value 'int8'"):
        BenchmarkConfig(quantization="int8")
    with pytest.raises(ConfigError, match="tuning picks the kernel"):
        BenchmarkConfig(quantization="int4", tune=True, quant_kernel="splitk")
    with pytest.raises(ConfigError, match="tune_budget_s"):
        BenchmarkConfig(quantization="int4", tune=True, tune_budget_s=0)


def test_quantization_enters_the_hash_and_the_name_but_the_budget_does_not() -> None:
    plain = BenchmarkConfig()
    int4 = BenchmarkConfig(quantization="int4")
    tuned = int4.replace(tune=True)
    assert len({plain.config_hash, int4.config_hash, tuned.config_hash}) == 3
    assert int4.replace(group_size=64).config_hash != int4.config_hash
    assert tuned.replace(tune_budget_s=9.0).config_hash == tuned.config_hash
    assert tuned.name.endswith("-int4-g128-tuned")


def test_int4_tuned_run_records_both_load_phases_and_the_choices(tuning_cache: Path, tmp_path: Path) -> None:
    config = BenchmarkConfig(**INT4_FIELDS, tune=True, tune_budget_s=0.05)  # type: ignore[arg-type]
    first = tokbench.run(config, progress=False, device_warmup_s=0.01)
    assert first.status == "ok", first.reason
    load_timings = first.phases.load
    assert load_timings.quantize_ns is not None and load_timings.quantize_ns > 0
    assert load_timings.tune_ns is not None and load_timings.tune_ns > 0
    report, tuning = first.quantization.report, first.quantization.tuning
    assert report is not None and tuning is not None
    assert report.layers_quantized == 4 * 7  # tiny-llama: 4 layers × (q, k, v, o, gate, up, down)
    assert report.bytes_after < report.bytes_before / 3
    decode_m, prefill_m = 1, 8
    assert {entry.m for entry in tuning.entries} == {decode_m, prefill_m}
    assert not any(entry.from_cache for entry in tuning.entries)
    # What the layers really run is recorded per shape, and it is what the tuner chose.
    assert first.effective_settings.quantization is not None
    kernels = first.effective_settings.quantization.kernels
    winners = {(e.in_features, e.out_features, e.m): e.winner for e in tuning.entries}
    for (in_features, out_features, m), winner in winners.items():
        phase = "decode" if m == decode_m else "prefill"
        label = kernels[f"{in_features}x{out_features}"][f"{phase} M={m}"]
        assert label.split("/")[0] == winner.kernel
    assert load_result(save_result(first, tmp_path / "r.json")) == first

    second = tokbench.run(config, progress=False, device_warmup_s=0.01)
    assert second.status == "ok", second.reason
    second_tuning = second.quantization.tuning
    assert second_tuning is not None
    # A pick comes from the cache exactly when the first run could separate it from noise (issue 25: a noise pick,
    # e.g. timed on a busy machine, is never cached); the same shapes are picked either way.
    cacheable = {(e.in_features, e.out_features, e.m) for e in tuning.entries
                 if e.confidence is not None and e.confidence.cacheable}  # fmt: skip
    assert {(e.in_features, e.out_features, e.m) for e in second_tuning.entries if e.from_cache} == cacheable
    if len(cacheable) == len(tuning.entries):
        assert second_tuning.warmup_ns == 0  # nothing was timed, so no device warmup either


def test_untuned_int4_runs_the_default_kernels_and_records_no_tuning(tuning_cache: Path) -> None:
    result = tokbench.run(BenchmarkConfig(**INT4_FIELDS), progress=False, device_warmup_s=0.01)  # type: ignore[arg-type]
    assert result.status == "ok", result.reason
    assert result.phases.load.tune_ns is None and result.quantization.tuning is None
    settings = result.effective_settings.quantization
    assert settings is not None and settings.tuned is False
    assert not (tuning_cache / "tuning").exists()  # nothing tuned, nothing cached (the hardware probe may be)


def test_pinned_kernel_runs_everywhere_and_triton_on_cpu_is_skipped(tuning_cache: Path) -> None:
    pinned = tokbench.run(
        BenchmarkConfig(**INT4_FIELDS, quant_kernel="splitk"),  # type: ignore[arg-type]
        progress=False,
        device_warmup_s=0.01,
    )
    assert pinned.status == "ok", pinned.reason
    chosen = {
        label
        for shape in pinned.effective_settings.quantization.kernels.values()  # type: ignore[union-attr]
        for label in shape.values()
    }
    assert chosen == {"splitk/1"}
    triton = tokbench.run(BenchmarkConfig(**INT4_FIELDS, quant_kernel="triton"), progress=False)  # type: ignore[arg-type]
    assert triton.status == "skipped"
    assert "needs a CUDA GPU" in triton.reason


def test_a_passed_in_model_must_match_the_quantization_setting() -> None:
    plain = load(BenchmarkConfig(**{**INT4_FIELDS, "quantization": None}))  # type: ignore[arg-type]
    result = tokbench.run(
        BenchmarkConfig(**INT4_FIELDS),
        model=plain.model,
        tokenizer=plain.tokenizer,
        progress=False,  # type: ignore[arg-type]
    )
    assert result.status == "failed"
    assert "not int4-quantized, the config says int4" in result.reason
    assert not any(isinstance(module, QuantizedLinear) for module in plain.model.modules())  # left as it was


def _tokbench(*args: str, cwd: Path, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "160", "TOKBENCH_CACHE_DIR": str(cache)}
    return subprocess.run(
        [sys.executable, "-m", "tokbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_tune_command_prints_a_table_and_reuses_its_cache(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    args = ("tune", "--model", "tiny-llama", "--sequence-length", "8", "--device", "cpu", "--tune-budget-s", "0.05")
    first = _tokbench(*args, "--output", str(tmp_path / "t.json"), cwd=tmp_path, cache=cache)
    assert first.returncode == 0, first.stderr
    assert "int4 kernel tuning on" in first.stdout and "0/8 from cache" in first.stdout
    assert "WINNER" in first.stdout and "vs default" in first.stdout
    report = json.loads((tmp_path / "t.json").read_text())
    assert len(report["entries"]) == 8 and report["cache_dir"] == str(cache / "tuning")
    second = _tokbench(*args, cwd=tmp_path, cache=cache)
    assert second.returncode == 0, second.stderr
    # every pick the first run separated from noise is reused; a noise pick (a busy machine) was never cached
    cached = sum(1 for entry in report["entries"] if entry["confidence"]["level"] != "noise")
    assert f"{cached}/8 from cache" in second.stdout


def test_run_command_with_int4_and_tune_reports_the_phases(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    completed = _tokbench(
        "run", "--model", "tiny-llama", "--sequence-length", "8", "--new-tokens", "4", "--warmup-iterations", "1",
        "--measurement-iterations", "2", "--device", "cpu", "--no-progress", "--quantization", "int4", "--tune",
        "--tune-budget-s", "0.05", "--output", str(out),
        cwd=tmp_path, cache=tmp_path / "cache",
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr
    assert "int4 weight-only, group 128: quantize" in completed.stdout
    assert "int4 kernels: 256x256 decode M=1" in completed.stdout
    data = json.loads(out.read_text())
    assert data["config"]["quantization"] == "int4" and data["config"]["tune"] is True
    assert data["phases"]["load"]["tune_ns"] > 0 and data["quantization"]["tuning"]["entries"]


def test_tuning_targets_the_padded_or_packed_prefill_rows(tuning_cache: Path) -> None:
    fields = {**INT4_FIELDS, "batch_size": 2, "sequence_length": [4, 8]}
    config = BenchmarkConfig(**fields, tune=True, tune_budget_s=0.02)  # type: ignore[arg-type]
    assert config.prefill_rows == 2 * 8  # the plain path left-pads to the longest prompt
    assert config.replace(continuous_batching=True).prefill_rows == 4 + 8  # continuous batching packs them
    loaded = load(config)
    assert {entry.m for entry in loaded.quantization.tuning.entries}  # type: ignore[union-attr] == {2, 16}
    assert set(loaded.effective_settings.quantization.kernels["256x256"])  # type: ignore[union-attr] == {"decode M=2", "prefill M=16"}
