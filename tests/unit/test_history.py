"""`tokbench regressions` over real SQLite stores of known truth: bisect ranges, every metric, many workloads
(family-wise error by seeded simulation), CI formats, impossible settings refused (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from history_data import commit_of, history_runs, write_history_store

from tokbench.cli import main
from tokbench.results.history import find_history_changes, metrics_held
from tokbench.results.selectors import select_from_store


def _noisy(rng: np.random.Generator, n: int, cv: float = 0.01) -> np.ndarray:
    return 1 + cv * rng.normal(size=n)


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(21)
    index = np.arange(30)
    factors = {
        "flat": _noisy(rng, 30),
        "step": _noisy(rng, 30) + 0.10 * (index >= 18),
        "fixed": _noisy(rng, 30) + 0.10 * ((index >= 10) & (index < 15)),  # a regression fixed 5 runs later
        "newest-two": _noisy(rng, 30) + 0.15 * (index >= 28),
        "newest-one": _noisy(rng, 30) + 0.15 * (index >= 29),
        "short": _noisy(rng, 6),
    }
    path = tmp_path_factory.mktemp("history") / "history.db"
    return write_history_store(path, {model: list(series) for model, series in factors.items()})


# CLI runs here use a 5% family-wise level and 199 permutations to stay quick (the defaults: 1%, automatic)
QUICK = ["--significance", "0.05", "--permutations", "199"]


def _by_model(report_dict: dict) -> dict[str, dict]:  # type: ignore[type-arg]
    return {w["model"]: w for w in report_dict["workloads"]}


def test_each_workload_gets_what_happened_with_commits_to_bisect(store: Path, capsys: pytest.CaptureFixture) -> None:  # type: ignore[type-arg]
    assert main(["regressions", "--db", str(store), "--format", "json", *QUICK]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["series_tested"] == 6 and report["tested_at"] == pytest.approx(0.05 / 6)
    workloads = _by_model(report)
    assert workloads["flat"]["changes"] == [] and workloads["flat"]["watch"] is None
    (step,) = workloads["step"]["changes"]
    assert step["index"] == 18 and step["direction"] == "slower"
    assert step["commit_range"] == f"{commit_of(17)}..{commit_of(18)}"  # the culprit is commit 18: in range
    assert [change["index"] for change in workloads["fixed"]["changes"]] == [10, 15]
    assert [change["direction"] for change in workloads["fixed"]["changes"]] == ["slower", "faster"]
    (newest,) = workloads["newest-two"]["changes"]
    assert newest["index"] == 28 and newest["runs_after"] == 2 and "rests on the newest 2 runs" in newest["note"]
    assert newest["commit_range"] == f"{commit_of(27)}..{commit_of(28)}"
    one = workloads["newest-one"]
    assert one["changes"] == [] and one["watch"]["runs"] == 1 and one["watch"]["runs_needed"] == 2
    assert "cannot show a change" in workloads["short"]["note"] and "runs can" in workloads["short"]["note"]
    # per-run medians with their intervals, oldest first
    history = workloads["step"]["history"]
    assert len(history) == 30 and history[0]["ci_low"] <= history[0]["median"] <= history[0]["ci_high"]


def test_every_metric_the_store_holds(store: Path, capsys: pytest.CaptureFixture) -> None:  # type: ignore[type-arg]
    runs = select_from_store(store, {"model": "step"})
    assert len(metrics_held(runs)) == 7
    assert main(["regressions", "--db", str(store), "--select", "model=step", "--metric", "all", "--format",
                 "json", *QUICK]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out)
    assert report["series_tested"] == 7 and len(report["workloads"]) == 7
    directions = {w["metric"]: [c["direction"] for c in w["changes"]] for w in report["workloads"]}
    assert directions["e2e_latency_ms"] == ["slower"] and directions["decode_throughput_tok_s"] == ["slower"]


def test_markdown_for_ci_and_the_gate(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:  # type: ignore[type-arg]
    output = tmp_path / "changes.md"
    code = main(["regressions", "--db", str(store), "--format", "markdown", "--fail-on", "regression",
                 "--output", str(output), *QUICK])  # fmt: skip
    assert code == 1  # the newest level of "step" and "newest-two" is slower
    text = capsys.readouterr().out
    assert text == output.read_text(encoding="utf-8")
    assert "| workload | metric |" in text and "**+10" in text and "watch:" in text
    assert main(["regressions", "--db", str(store), "--select", "model=fixed", "--fail-on", "regression", *QUICK]) == 0


def test_history_changes_takes_every_flag_of_regressions_and_gives_its_report(
    store: Path, tmp_path: Path, capsys: pytest.CaptureFixture  # type: ignore[type-arg]
) -> None:
    flags = ["--db", str(store), "--select", "model=step", "--metric", "tpot_ms", "--min-size", "3", "--seed", "4",
             "--format", "json", *QUICK]  # fmt: skip
    assert main(["regressions", *flags]) == 0
    expected = json.loads(capsys.readouterr().out)
    output = tmp_path / "changes.json"
    assert main(["history", "--changes", *flags, "--output", str(output), "--fail-on", "regression"]) == 1
    assert json.loads(capsys.readouterr().out) == expected == json.loads(output.read_text(encoding="utf-8"))
    assert expected["workloads"][0]["metric"] == "tpot_ms" and len(expected["workloads"]) == 1
    # a search flag without --changes, or a listing flag with it: refused, saying which and what to do
    assert main(["history", "--db", str(store), "--metric", "tpot_ms", "--seed", "2"]) == 2
    assert "--metric, --seed: flags of the change-point search; add --changes" in capsys.readouterr().err
    assert main(["history", "--db", str(store), "--changes", "--limit", "3"]) == 2
    assert "--limit: only for the listing" in capsys.readouterr().err
    assert not output.with_name("tokbench-results.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--permutations", "98"], "98 permutations can never reach p ≤ 0.00167"),
        (["--significance", "0.001", "--permutations", "999"], "(--significance 0.001 over 6 series)"),
        (["--significance", "0"], "must be a number in (0, 1)"),
        (["--permutations", "0"], "must be from 1"),
        (["--min-size", "1"], "must be from 2"),
    ],
)
def test_impossible_settings_are_refused_with_the_reason(
    store: Path, capsys: pytest.CaptureFixture, args: list[str], message: str  # type: ignore[type-arg]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        exit_code = main(["regressions", "--db", str(store), *args])
        raise SystemExit(exit_code)
    assert stopped.value.code == 2
    assert message in capsys.readouterr().err


def test_forty_unchanged_workloads_raise_no_alarm_by_chance() -> None:
    # Family-wise error over 40 flat workloads (Bonferroni): seeded stores at --significance 0.2 (so a rate can be
    # seen in few stores): each store's chance of any alarm must be ≤ 0.2. 8 stores: expect ≤ 1.6 alarmed, and
    # without the correction (each series at 0.2) nearly every store would raise one (1 − 0.8⁴⁰ ≈ 1).
    alarmed = 0
    for store_seed in range(8):
        rng = np.random.default_rng([40, store_seed])
        runs = history_runs({f"m{i}": list(_noisy(rng, 15)) for i in range(40)})
        report = find_history_changes(runs, significance=0.2, seed=store_seed)
        assert report.series_tested == 40 and report.tested_at == pytest.approx(0.005)
        alarmed += any(workload.changes for workload in report.workloads)
    assert alarmed <= 4  # binomial(8, 0.2): P(> 4) = 0.010
    uncorrected = find_history_changes([run for run in runs if run.result.config.model == "m0"], significance=0.2)
    assert uncorrected.tested_at == 0.2  # one series alone is tested at the full level
