"""Fault injection, what the read commands read (issue 24): hand-edited results, deep nesting, special files in
a results folder, stored NaN, and the messages for config files and stores that are not what they seem.

Real faults: real results measured on the tiny model and then edited, real FIFOs, symlinks to /dev/zero,
a real SQLite store edited behind tokbench's back, compare and report run in a child process with a time limit
wherever the fault could hang them.
"""

from __future__ import annotations

import json
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from faults_support import (
    TINY_FIELDS,
    one_line,
    result_data,
    stderr_line,
    store_of,
    tokbench,
    write_json,
)

from tokbench.cli import main

BIG = "__a 5000-digit integer__"


def _edited(source: Path, target: Path, edit: Any) -> Path:
    data = result_data(source)
    edit(data)
    target.write_text(json.dumps(data).replace(f'"{BIG}"', "9" * 5000), encoding="utf-8")  # beyond json.dumps
    return target


def _stamps(data: dict, stamps: list[int]) -> None:
    data["iterations"][0]["token_timestamps_ns"][0] = stamps


EDITS = {
    "empty timestamps": (lambda d: _stamps(d, []), "iterations[0].token_timestamps_ns[0] is empty"),
    "decreasing": (
        lambda d: _stamps(d, [d["iterations"][0]["t0_ns"] + step for step in (30, 20, 10)]),
        "timestamps go backwards at token 1",
    ),
    "all equal": (lambda d: _stamps(d, [d["iterations"][0]["t0_ns"] + 5] * 3), "every token has the same timestamp"),
    "overflowing": (lambda d: _stamps(d, [10**30, 10**30 + 1, 10**30 + 2]), "a 31-digit integer is not a nanosecond"),
    "a 5000-digit number": (lambda d: d["summary"]["ttft_ms"].update(count=BIG), "refuses to read"),
    "end before start": (
        lambda d: d["iterations"][1].update(end_ns=d["iterations"][1]["t0_ns"] - 1),
        "iterations[1]: end_ns",
    ),
    "a NaN summary": (lambda d: d["summary"]["ttft_ms"].update(median=float("nan")), "summary.ttft_ms.median is nan"),
    "an infinite stamp": (lambda d: d["iterations"][0].update(t0_ns=float("inf")), "iterations[0].t0_ns is inf"),
    "a list, not a result": (lambda d: d.clear(), "missing schema_version"),
}


@pytest.mark.parametrize("edit", list(EDITS), ids=list(EDITS))
def test_a_hand_edited_result_is_refused_naming_the_file_and_the_field(
    edit: str, real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    change, expected = EDITS[edit]
    edited = _edited(real_results[0], tmp_path / "edited.json", change)
    for args in (
        ["compare", str(edited), str(real_results[1])],
        ["report", str(edited), "--output", str(tmp_path / "r.html")],
    ):
        assert main(args) == 2, args
        line = one_line(capsys.readouterr().err)
        assert str(edited) in line and expected in line, line
    assert not (tmp_path / "r.html").exists()
    # fix: schema.checks (monotone stamps, positive durations, finite numbers, 64-bit integers) on every load


def test_deep_nesting_is_a_clear_error_not_a_recursion_error(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text('{"schema_version": 2, "config": ' + "[" * 100_000 + "]" * 100_000 + "}")
    nested = _edited(real_results[0], tmp_path / "nested.json", lambda d: d["environment"].update(x=json.loads(
        "[" * 200 + "]" * 200)))  # fmt: skip
    for source in (deep, nested):
        for args in (["compare", str(source), str(real_results[1])], ["report", str(source), "-o", "x.html"]):
            assert main(args) == 2
            assert "is nested more than 64 levels deep" in one_line(capsys.readouterr().err)
    for suffix, text in ((".yaml", "model: " + "[" * 5000 + "]" * 5000), (".json", "[" * 100_000 + "]" * 100_000),
                         (".yaml", "model:\n" + "".join("  " * i + "- \n" for i in range(1, 300)))):  # fmt: skip
        config = tmp_path / f"deep{suffix}"
        config.write_text(text)
        assert main(["run", "--config", str(config)]) == 2
        assert main(["sweep", "--config", str(config), "--db", str(tmp_path / "r.db")]) == 2
        errors = capsys.readouterr().err.splitlines()
        assert len(errors) == 2 and all("nested more than 64 levels deep" in line for line in errors), errors
    assert not (tmp_path / "r.db").exists()
    # fix: fileio.parse_json_text / parse_yaml_text bound the nesting (RecursionError never escapes)


def test_special_files_in_a_results_folder_never_hang_or_fill_memory(
    real_results: tuple[Path, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "base.json").write_bytes(real_results[0].read_bytes())
    os.mkfifo(folder / "pipe.json")  # no writer: reading it would wait forever
    (folder / "zero.json").symlink_to("/dev/zero")  # reading it would never end
    (folder / "null.json").symlink_to("/dev/null")
    (folder / "notes.json").write_text('{"not": "a result"}')
    (folder / "list.json").write_text("[]")
    compared = tokbench("compare", str(folder), str(real_results[1]), timeout=90)
    assert compared.returncode == 0, compared.stderr
    reported = tokbench("report", str(folder), "--output", str(tmp_path / "r.html"), timeout=90)
    assert reported.returncode == 0, reported.stderr
    assert "report of 1 result(s)" in reported.stdout
    assert "note: skipped 5 .json file(s) that are not tokbench results" in reported.stdout
    # one named directly is refused in one line, never read
    for special in ("pipe.json", "zero.json"):
        for args in (["compare", str(folder / special), str(real_results[1])],
                     ["report", str(folder / special), "-o", str(tmp_path / "x.html")]):  # fmt: skip
            completed = tokbench(*args, timeout=60)
            line = stderr_line(completed)
            assert completed.returncode == 2 and ("a FIFO" in line or "a device" in line), line
    # fix: fileio.read_regular_text (O_NONBLOCK, fstat: regular files only, bounded size); report skips what
    # is not a result, as compare does (results.selectors.result_files)


def test_misleading_messages_now_say_what_the_path_is(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    (tmp_path / "folder.yaml").mkdir()
    for name, kind in (("pipe.yaml", "a FIFO (named pipe)"), ("folder.yaml", "a folder")):
        assert main(["run", "--config", str(tmp_path / name)]) == 2
        assert f"{name} is {kind}, not a regular file" in one_line(capsys.readouterr().err)
    sweep = write_json(tmp_path / "s.json", TINY_FIELDS)
    os.mkfifo(tmp_path / "store.db")
    assert main(["sweep", "--config", str(sweep), "--db", str(tmp_path / "store.db")]) == 2
    line = one_line(capsys.readouterr().err.splitlines()[-1] + "\n")
    assert "store.db is a FIFO (named pipe), not a results store file" in line and "disk I/O" not in line
    assert main(["history", "--db", str(tmp_path / "store.db")]) == 4
    assert "is a FIFO" in capsys.readouterr().err
    empty_list = write_json(tmp_path / "list.json", [])
    assert main(["compare", str(empty_list), str(empty_list)]) == 2
    line = one_line(capsys.readouterr().err)
    assert "got a list: this is not a tokbench result" in line and "upgrade tokbench" not in line
    # fix: fileio.file_kind in config.load_config_file, ResultStore and the sweep's --db check; the result
    # loader says what the JSON is before talking of schema versions


def _store_with_nan(tmp_path: Path, real_results: tuple[Path, Path]) -> Path:
    db = store_of(tmp_path / "r.db", *real_results)
    with sqlite3.connect(db) as connection:  # edited behind tokbench's back, as a hand or another tool would
        (text,) = connection.execute("SELECT result_json FROM results WHERE run_id = 2").fetchone()
        data = json.loads(text)
        data["summary"]["e2e_latency_ms"]["median"] = float("nan")
        connection.execute("UPDATE results SET result_json = ? WHERE run_id = 2", (json.dumps(data),))
    return db


def test_a_stored_nan_is_named_by_run_and_field(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = _store_with_nan(tmp_path, real_results)
    assert main(["export", "--db", str(db), "--format", "json", "--output", str(tmp_path / "e.json")]) == 4
    line = one_line(capsys.readouterr().err)
    assert "run 2" in line and "summary.e2e_latency_ms.median is nan" in line
    assert not (tmp_path / "e.json").exists()
    # regressions leaves the damaged run out, says so in one line, and goes on with every other run
    assert main(["regressions", "--db", str(db)]) == 0
    captured = capsys.readouterr()
    line = one_line(captured.err)
    assert "run 2 left out" in line and "summary.e2e_latency_ms.median is nan" in line
    assert "E2E latency" in captured.out
    assert main(["show", "2", "--db", str(db)]) == 4 and "run 2 in" in capsys.readouterr().err
    assert main(["export", "--db", str(db), "--format", "csv", "--output", str(tmp_path / "e.csv")]) == 0
    # fix: schema.checks.check_numbers on every load; export names the run (schema.checks.first_non_finite)
