"""`make gpu-check` (scripts/gpu_check.py): its behaviour without a GPU, its machinery rehearsed on the CPU, its
expectations on hand-made results, and the peak table it judges MBU against."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from tokbench.hardware.peaks import ACCELERATORS, find_accelerator

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu_check.py"


def _load_script() -> Any:
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["gpu_check"] = module  # dataclasses resolve their module by name
    spec.loader.exec_module(module)
    return module


gpu_check = _load_script()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_without_cuda_it_says_so_in_one_line_and_runs_nothing(tmp_path: Path) -> None:
    out = tmp_path / "report"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(out)], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1 and "no CUDA GPU" in lines[0]
    assert not out.exists()


def test_rehearsal_on_cpu_runs_real_steps_and_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "report"
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--rehearse", "--out", str(out), "--steps", "bf16-sdpa,sweep-2-configs"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    # The CUDA expectations cannot hold on the CPU, so the check as a whole fails: exit 1, not a crash.
    assert completed.returncode == 1, completed.stdout + completed.stderr
    report = json.loads((out / "report.json").read_text(encoding="utf-8"))
    steps = {step["name"]: step for step in report["steps"]}
    assert list(steps) == ["bf16-sdpa", "sweep-2-configs"]

    run = steps["bf16-sdpa"]
    checks = {check["name"]: check for check in run["checks"]}
    assert checks["status"]["passed"]
    assert not checks["ran on the GPU"]["passed"] and "device cpu" in checks["ran on the GPU"]["observed"]
    assert checks["token stamps after synchronization"]["passed"], checks["token stamps after synchronization"]
    assert not checks["NVML sampled"]["passed"] and not checks["energy counter increasing"]["passed"]
    assert run["headline"]["iterations"] == 2 and run["headline"]["tpot_ms"] > 0
    assert run["status"] == "failed" and "ran on the GPU" in run["error"]

    sweep = steps["sweep-2-configs"]
    assert sweep["status"] == "passed", sweep
    assert "2 stored: ok, ok; 2 distinct worker pids" in sweep["checks"][0]["observed"]

    markdown = (out / "report.md").read_text(encoding="utf-8")
    assert "| bf16-sdpa | failed |" in markdown and "| sweep-2-configs | passed |" in markdown
    assert "✗ **ran on the GPU**: expected effective device cuda:N" in markdown


def test_unknown_step_is_a_usage_error(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), "--rehearse", "--out", str(tmp_path), "--steps", "warp-drive"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 2 and "unknown step(s) warp-drive" in completed.stderr


def test_a_step_past_its_limit_is_killed_with_its_children(tmp_path: Path) -> None:
    log = tmp_path / "sleep.log"
    code = "import subprocess, sys, time; subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
    code += "print('started', flush=True); time.sleep(60)"
    started = time.monotonic()
    returncode, timed_out = gpu_check.run_command([sys.executable, "-c", code], 2.0, log, {"PATH": "/usr/bin:/bin"})
    # killed at its limit, well before the 60 s the step (and its child) would have slept: a busy machine may
    # take a while to deliver the kill, never a minute
    assert timed_out and returncode is None and time.monotonic() - started < 50
    step = gpu_check.Step("sleepy", "sleeps", (), 2.0, "run", "missing.json", ("status",))
    outcome = gpu_check.evaluate_step(step, tmp_path, returncode, timed_out, log)
    assert outcome.status == "timed out" and "killed after its 2 s limit" in outcome.error
    assert "started" in outcome.error


def _result(stamps: list[list[int]], t0: int = 0, end: int | None = None) -> dict[str, Any]:
    last = max(s[-1] for s in stamps)
    return {
        "status": "ok",
        "iterations": [{"t0_ns": t0, "end_ns": last + 100_000 if end is None else end, "token_timestamps_ns": stamps}],
    }


def test_stamps_check_accepts_synchronized_stamps_and_flags_asynchronous_ones() -> None:
    synchronized = _result([[1_000_000, 1_500_000, 2_000_000, 2_500_000]])
    assert gpu_check.check_stamps_synchronized(synchronized).passed

    # Stamps read at kernel launch: microsecond gaps, then generate waits for the GPU long after the last stamp.
    launched = _result([[1_000_000, 1_005_000, 1_010_000, 1_015_000]], end=40_000_000)
    check = gpu_check.check_stamps_synchronized(launched)
    assert not check.passed
    assert "smallest inter-token gap 5.0 µs" in check.observed and "between the last stamp and return" in check.observed

    unordered = _result([[1_000_000, 900_000 + 1_000_000, 1_800_000]])
    assert "not strictly increasing" in gpu_check.check_stamps_synchronized(unordered).observed


def test_energy_mbu_and_triton_expectations() -> None:
    def with_gpu(energy: list[int | None], energy_j: float | None) -> dict[str, Any]:
        series = {"backend": "nvml", "status": "ok", "timestamps_ns": list(range(len(energy))),
                  "columns": {"energy_mj": energy}}  # fmt: skip
        return {"monitor": {"series": [series]}, "efficiency": {"energy_j": energy_j}}

    assert gpu_check.check_energy_increasing(with_gpu([1000, 1500, 2600], 1.6)).passed
    assert not gpu_check.check_energy_increasing(with_gpu([1000, 900, 2600], 1.6)).passed
    assert not gpu_check.check_energy_increasing(with_gpu([1000, 1000], 0.0)).passed

    table = {"kind": "table", "device": "NVIDIA H100 SXM", "memory_bandwidth_bytes_s": 3.35e12}
    assert gpu_check.check_mbu_plausible({"efficiency": {"mbu": 0.004, "peak": table}}).passed
    assert not gpu_check.check_mbu_plausible({"efficiency": {"mbu": 1.7, "peak": table}}).passed
    assert not gpu_check.check_mbu_plausible({"efficiency": {"mbu": 0.2, "peak": {**table, "kind": "probe"}}}).passed

    kernels = {"4096x4096": {"decode M=1": "triton/splitk-4", "prefill M=128": "native"}}
    assert gpu_check.check_triton_kernel({"effective_settings": {"quantization": {"kernels": kernels}}}).passed
    kernels = {"4096x4096": {"decode M=1": "native", "prefill M=128": "splitk/2"}}
    assert not gpu_check.check_triton_kernel({"effective_settings": {"quantization": {"kernels": kernels}}}).passed


def test_every_peak_table_entry_has_a_source_plausible_units_and_matches_its_own_name() -> None:
    for spec in ACCELERATORS:
        assert spec.source.startswith("https://") and len(spec.source) > 20, spec.name
        # Bytes/s and FLOP/s, not GB/s or TFLOP/s typed by mistake: 100 GB/s .. 20 TB/s, 1 TFLOP/s .. 5 PFLOP/s.
        assert 1e11 <= spec.memory_bandwidth_bytes_s <= 2e13, spec.name
        assert 1e12 <= spec.fp32_flops_s < spec.bf16_flops_s <= 5e15, spec.name
        # Dense figures: no entry quotes the 2:4-sparse number (bf16 per byte of bandwidth stays in range).
        assert 50 <= spec.bf16_flops_s / spec.memory_bandwidth_bytes_s <= 600, spec.name
        assert find_accelerator(spec.name) is spec, spec.name
