"""Environment capture and device warmup on the real machine."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import torch

from tokbench.clock import FakeClock
from tokbench.hardware.environment import capture_environment, git_state
from tokbench.hardware.warmup import device_warmup


def test_environment_names_versions_and_hardware() -> None:
    record = capture_environment()
    env = record.to_dict()
    for key in ("python", "torch", "transformers", "tokbench", "os", "cpu", "cpu_count", "memory_bytes"):
        assert env[key], key
    assert record.torch == torch.__version__
    assert record.memory_bytes is not None and record.memory_bytes > 2**30
    assert record.torch_threads == torch.get_num_threads()
    assert record.torch_interop_threads is not None and record.torch_interop_threads >= 1
    # the machine's facts are always written (null when unknown); what only happens sometimes is not
    for key in ("cpu_governors", "cpu_frequency_mhz", "tokbench_git", "env", "nvml", "cuda", "hip"):
        assert key in env, key
    assert not {"capture_error", "captured_by", "compat_warnings"} & set(env)
    if not torch.cuda.is_available():
        assert record.gpus == () and record.gpu_driver is None
        # no GPU here: NVML's absence is a recorded reason, not a crash or a silent gap
        assert record.nvml is not None and record.nvml.status.startswith("unavailable: ")
        assert env["nvml"] == {"status": record.nvml.status}


def test_relevant_environment_variables_are_recorded(monkeypatch: pytest.MonkeyPatch) -> None:
    # names no library reads, so setting them cannot change this test session's torch
    monkeypatch.setenv("TORCH_TOKBENCH_TEST", "1")
    monkeypatch.setenv("PYTORCH_TOKBENCH_TEST", "2")
    monkeypatch.setenv("TORCHINDUCTOR_TOKBENCH_TEST", "3")
    monkeypatch.setenv("UNRELATED_TOKBENCH_TEST", "no")
    env = capture_environment().env
    recorded = [env.get(f"{prefix}_TOKBENCH_TEST") for prefix in ("TORCH", "PYTORCH", "TORCHINDUCTOR")]
    assert recorded == ["1", "2", "3"]
    assert "UNRELATED_TOKBENCH_TEST" not in env


def test_git_state_of_a_repository(tmp_path: Path) -> None:
    assert git_state(tmp_path) is None
    run = lambda *args: subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "f").write_text("a")
    run("add", "f")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "x")
    state = git_state(tmp_path)
    assert state is not None and len(state.commit) == 40 and state.dirty is False
    (tmp_path / "f").write_text("b")
    changed = git_state(tmp_path)
    assert changed is not None and changed.dirty is True


def test_device_warmup_runs_until_its_budget_is_spent() -> None:
    report = device_warmup(torch.device("cpu"), budget_s=0.05, matrix_size=64)
    assert report.elapsed_ns >= 50_000_000
    assert report.matmuls >= 1
    assert report.device == "cpu"


def test_device_warmup_is_bounded_even_if_the_clock_stands_still() -> None:
    report = device_warmup(torch.device("cpu"), budget_s=1.0, matrix_size=8, clock=FakeClock(), max_matmuls=50)
    assert report.matmuls == 50
    assert report.elapsed_ns == 0
