"""Fault injection, which runs a comparison or a report reads (issue 24): time selectors parsed as instants, and
the same measurement on both sides or copied within a side.

Real parts: a real store holding real results whose start times are set as a user's history would have them.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from faults_support import one_line

from tokbench.cli import main
from tokbench.results.selectors import select
from tokbench.results.store import ResultStore
from tokbench.schema.results import load_result

STARTS = ("2026-12-02T23:58:00+00:00", "2026-12-02T23:59:30+00:00", "2026-12-03T00:00:10+00:00",
          "2026-12-03T12:00:40+00:00")  # fmt: skip


@pytest.fixture
def dated_store(real_results: tuple[Path, Path], tmp_path: Path) -> Path:
    """Four runs of one workload, started at ``STARTS`` (run 1 first)."""
    db = tmp_path / "history.db"
    base = load_result(real_results[0])
    with ResultStore(db) as store:
        for started in STARTS:
            store.add(dataclasses.replace(base, started_at=started))
    return db


def _run_ids(spec: str, db: Path | None = None) -> list[int | None]:
    return [run.run_id for run in select(spec, str(db) if db else None)]


def test_times_are_instants_whatever_their_spelling(dated_store: Path) -> None:
    db = dated_store
    assert _run_ids(f"{db}:since=2026-12-02 23:59") == [2, 3, 4]  # a space, not T: the same instant
    assert _run_ids(f"{db}:since=2026-12-02T23:59") == [2, 3, 4]
    assert _run_ids(f"{db}:since=2026-12-03T02:00+02:00") == [3, 4]  # midnight UTC
    assert _run_ids(f"{db}:since=2026-12-02T23:59:30Z,until=2026-12-03T00:00") == [2, 3]
    assert _run_ids(f"{db}:until=2026-12-03T12:00") == [1, 2, 3, 4]  # a minute covers the whole minute
    assert _run_ids(f"{db}:until=2026-12-03T11:59") == [1, 2, 3]
    assert _run_ids(f"{db}:until=2026-12-02") == [1, 2]  # a date covers its day
    assert _run_ids("since=2026-12-03 00:00:10,until=2026-12-03 00:00:10", db) == [3]
    # fix: results.selectors.parse_time_range / time_filter (datetime, never text comparison)


@pytest.mark.parametrize("bad", ["until=not-a-date", "since=2026-13-01", "since=12:00", "until=2026-12-02T25:00",
                                 "since=yesterday"])  # fmt: skip
def test_a_time_that_does_not_parse_is_refused(
    bad: str, dated_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["compare", f"{dated_store}:{bad}", f"{dated_store}:run=4"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "is not a time" in line and "ISO 8601" in line
    option, _, value = bad.partition("=")
    assert main(["report", str(dated_store), f"--{option}", value, "--output", str(tmp_path / "r.html")]) == 2
    assert "is not a time" in one_line(capsys.readouterr().err) and not (tmp_path / "r.html").exists()
    # fix: parse_time_range refuses what does not parse (it used to select everything)


def test_the_colon_inside_a_time_never_splits_the_store(dated_store: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run_ids(f"{dated_store}:since=2026-12-03T12:00,latest") == [4]
    assert _run_ids(f"{dated_store}:since=2026-12-02T23:59:30+00:00,until=2026-12-03T00:00:10+00:00") == [2, 3]
    assert main(["compare", f"{dated_store}:run=1", f"{dated_store}:since=2026-12-03T12:00", "--format", "json"]) == 0
    capsys.readouterr()
    # fix: results.selectors.split_store_selector splits after the first .db: (not the last colon)


def test_report_selects_times_like_compare(
    dated_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "r.html"
    assert main(["report", str(dated_store), "--since", "2026-12-02 23:59", "--output", str(output)]) == 0
    assert "report of 3 result(s)" in capsys.readouterr().out
    assert main(["report", str(dated_store), "--until", "2026-12-02", "--output", str(output)]) == 0
    assert "report of 2 result(s)" in capsys.readouterr().out
    # fix: report.data.load_store uses results.selectors.time_filter


def test_the_same_measurement_on_both_sides_is_refused(
    real_results: tuple[Path, Path], dated_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy.json"
    shutil.copyfile(real_results[0], copy)
    for baseline, contender in (
        (str(dated_store), str(dated_store)),  # one store on both sides
        (str(real_results[0]), str(copy)),  # a file and its copy
        (f"{dated_store}:run=1-3", f"{dated_store}:since=2026-12-03"),  # overlapping selectors: run 3 twice
    ):
        assert main(["compare", baseline, contender]) == 2
        assert "a comparison of data with itself" in one_line(capsys.readouterr().err)
    # fix: results.selectors.distinct_sides (content hash), called by results.comparison.compare


def test_copies_within_a_side_count_once(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    three = tmp_path / "three"
    three.mkdir()
    for index in range(3):
        shutil.copyfile(real_results[0], three / f"copy-{index}.json")
    assert main(["compare", str(three), str(real_results[1]), "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    workload = report["workloads"][0]
    assert len(workload["baseline_runs"]) == 1  # one process, not three
    assert any("3 copies of one measurement counted once" in warning for warning in report["warnings"])
    one = tmp_path / "one"
    one.mkdir()
    shutil.copyfile(real_results[0], one / "copy-0.json")
    assert main(["compare", str(one), str(real_results[1]), "--format", "json"]) == 0
    single = json.loads(capsys.readouterr().out)["workloads"][0]
    # the same data, counted once: the same interval (copies used to narrow it)
    assert [m["median"] for m in single["metrics"]] == [m["median"] for m in workload["metrics"]]
    # fix: results.selectors.distinct_runs, one note per measurement that had copies
