"""The command line as a user runs it: real subprocesses, real files, real exit codes."""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

FAST = [
    "--model", "tiny-llama", "--sequence-length", "16", "--new-tokens", "4",
    "--warmup-iterations", "1", "--measurement-iterations", "2", "--device", "cpu", "--no-progress",
]  # fmt: skip


def tokbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "140"}
    return subprocess.run(
        [sys.executable, "-m", "tokbench", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_run_prints_a_table_and_writes_the_result(tmp_path: Path) -> None:
    out = tmp_path / "result.json"
    completed = tokbench("run", *FAST, "--batch-size", "2", "--output", str(out), cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    for label in ("TTFT", "TPOT", "ITL", "E2E latency", "decode throughput", "median", "p99", "decode MBU", "RSS peak"):
        assert label in completed.stdout
    data = json.loads(out.read_text())
    assert data["status"] == "ok"
    assert data["config"]["batch_size"] == 2
    assert len(data["iterations"]) == 2
    assert all(len(row) == 4 for it in data["iterations"] for row in it["token_timestamps_ns"])
    # Recompute the headline figures from the raw stamps in the file, independently of tokbench's code.
    ttft_ms = [(it["token_timestamps_ns"][0][0] - it["t0_ns"]) / 1e6 for it in data["iterations"]]
    gaps_ms = [
        (later - earlier) / 1e6
        for it in data["iterations"]
        for earlier, later in itertools.pairwise(it["token_timestamps_ns"][0])
    ]
    e2e_ms = [(it["end_ns"] - it["t0_ns"]) / 1e6 for it in data["iterations"]]
    summary = data["summary"]
    assert summary["ttft_ms"]["median"] == pytest.approx(statistics.median(ttft_ms), rel=1e-12)
    assert summary["ttft_ms"]["std"] == pytest.approx(statistics.stdev(ttft_ms), rel=1e-12)
    assert summary["itl_ms"]["median"] == pytest.approx(statistics.median(gaps_ms), rel=1e-12)
    assert summary["itl_ms"]["mean"] == pytest.approx(statistics.fmean(gaps_ms), rel=1e-12)
    assert summary["itl_ms"]["count"] == len(gaps_ms) == 2 * 3
    assert summary["e2e_latency_ms"]["max"] == pytest.approx(max(e2e_ms), rel=1e-12)


def test_default_output_goes_to_a_results_folder(tmp_path: Path) -> None:
    completed = tokbench("run", *FAST, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    written = list((tmp_path / "tokbench-results").glob("tiny-llama-*.json"))
    assert len(written) == 1


def test_runs_go_into_the_store_so_history_and_show_see_them(tmp_path: Path) -> None:
    completed = tokbench("run", *FAST, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    assert "stored as run 1 in tokbench-results.db" in completed.stdout
    history = tokbench("history", cwd=tmp_path)
    assert history.returncode == 0, history.stderr
    assert "tiny-llama" in history.stdout and " ok " in history.stdout
    assert tokbench("show", "1", cwd=tmp_path).returncode == 0
    elsewhere = tokbench("run", *FAST, "--no-store", "--db", "other.db", cwd=tmp_path)
    assert elsewhere.returncode == 0 and "stored as" not in elsewhere.stdout
    assert not (tmp_path / "other.db").exists()
    (tmp_path / "foreign.db").write_bytes(b"")
    import sqlite3

    with sqlite3.connect(tmp_path / "foreign.db") as connection:
        connection.execute("CREATE TABLE notes (text TEXT)")
    refused = tokbench("run", *FAST, "--db", "foreign.db", cwd=tmp_path)
    assert refused.returncode == 2 and "not a tokbench results store" in refused.stderr
    assert len(list((tmp_path / "tokbench-results").glob("*.json"))) == 2  # the refused run measured nothing


def test_config_file_with_flag_override(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("batch_size: 3\nattn_implementation: eager\nnew_tokens: 9\n")
    out = tmp_path / "r.json"
    completed = tokbench("run", "--config", str(config), *FAST, "--output", str(out), cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr
    data = json.loads(out.read_text())["config"]
    assert (data["batch_size"], data["attn_implementation"], data["new_tokens"]) == (3, "eager", 4)


def test_skipped_config_exits_non_zero_with_one_line_reason(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    completed = tokbench("run", *FAST, "--attn", "flash_attention_2", "--output", str(out), cwd=tmp_path)
    assert completed.returncode == 3
    last_line = completed.stderr.strip().splitlines()[-1]
    assert last_line.startswith("tokbench: skipped: attn_implementation: flash_attention_2 needs the flash-attn")
    assert json.loads(out.read_text())["status"] == "skipped"


def test_invalid_config_is_a_usage_error(tmp_path: Path) -> None:
    completed = tokbench("run", *FAST, "--batch-size", "0", cwd=tmp_path)
    assert completed.returncode == 2
    assert "batch_size: must be >= 1, got 0. Fix: use a batch size of at least 1" in completed.stderr
    assert not (tmp_path / "tokbench-results").exists()


@pytest.mark.parametrize("args", [["--help"], ["run", "--help"]])
def test_help_is_complete(tmp_path: Path, args: list[str]) -> None:
    completed = tokbench(*args, cwd=tmp_path)
    assert completed.returncode == 0
    if args == ["--help"]:
        assert "run" in completed.stdout
    else:
        for flag in ("--model", "--config", "--batch-size", "--sequence-length", "--new-tokens", "--dtype", "--attn",
                     "--compile", "--static-cache", "--kernels", "--device", "--warmup-iterations",
                     "--measurement-iterations", "--no-monitor", "--output", "--warmup-min-iterations",
                     "--warmup-max-iterations", "--warmup-budget-s", "--measurement-min-iterations",
                     "--measurement-max-iterations", "--measurement-budget-s", "--target-precision"):  # fmt: skip
            assert flag in completed.stdout, flag


def test_iteration_flags_take_auto_or_a_count() -> None:
    from tokbench.cli import build_parser, config_from_args

    parser = build_parser()
    auto = config_from_args(parser.parse_args(["run", "--warmup-iterations", "auto", "--target-precision", "0.02"]))
    assert (auto.warmup_iterations, auto.measurement_iterations, auto.target_relative_precision) == (
        "auto",
        "auto",
        0.02,
    )
    fixed = config_from_args(parser.parse_args(["run", "--warmup-iterations", "5", "--measurement-iterations", "20"]))
    assert (fixed.warmup_iterations, fixed.measurement_iterations) == (5, 20)
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--warmup-iterations", "many"])


def test_tune_says_how_sure_each_pick_is_and_retune_is_offered(tmp_path: Path) -> None:
    env_dir = tmp_path / "cache"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "200", "TOKBENCH_CACHE_DIR": str(env_dir)}
    command = [sys.executable, "-m", "tokbench", "tune", "--sequence-length", "8", "--tune-budget-s", "0.02"]
    tuned = subprocess.run([*command, "--retune"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert tuned.returncode == 0, tuned.stderr
    assert "picks: " in tuned.stdout  # e.g. "picks: 6 clear, 2 noise": every pick says how sure it is
    noise = tuned.stdout.count("NOISE: not cached")
    cached = len(list((env_dir / "tuning").glob("*.json"))) if (env_dir / "tuning").exists() else 0
    assert cached + noise == tuned.stdout.count("WINNER")  # a noise pick is never cached, every other one is
    if noise:
        assert "is used for this run but not cached" in tuned.stderr  # the tuner's warning reaches the terminal
    both = subprocess.run([*command, "--retune", "--no-cache"], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert both.returncode == 2
    untuned = tokbench("run", *FAST, "--retune", cwd=tmp_path)
    assert untuned.returncode == 2 and "--retune" in untuned.stderr and "--tune" in untuned.stderr
