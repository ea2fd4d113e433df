"""Fault injection, numeric options (issue 24): every number on the command line is declared with its bounds;
out of range, NaN, infinite or not a number is refused by argparse in one line (exit 2) before anything runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
from faults_support import one_line, store_of, write_json

from tokbench.cli import build_parser, main


def _numeric_actions(parser: argparse.ArgumentParser, path: str = "tokbench") -> list[tuple[str, argparse.Action]]:
    found = []
    for action in parser._actions:  # argparse keeps no public list of a parser's arguments
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.extend(_numeric_actions(sub, f"{path} {name}"))
        elif action.type is not None:
            found.append((f"{path} {'/'.join(action.option_strings) or action.dest}", action))
    return found


def test_every_numeric_option_is_bounded() -> None:
    from tokbench.config import FIELD_SPECS

    actions = _numeric_actions(build_parser())
    # A config field's flag is bounded by its declaration (BenchmarkConfig refuses it, naming the field)...
    fields = {action.dest for _, action in actions if action.dest in FIELD_SPECS}
    unbounded = [name for name in fields if FIELD_SPECS[name].kind == "number" and FIELD_SPECS[name].maximum is None]
    assert not unbounded, f"config fields without a maximum: {unbounded}"  # integers default to 2**31 - 1
    # ...every other numeric option by its argparse type.
    raw = [name for name, action in actions if action.type in (int, float) and action.dest not in FIELD_SPECS]
    assert not raw, f"unbounded numeric options: {raw}"
    bounded = {name for name, action in actions if getattr(action.type, "__name__", "") in ("integer", "number")}
    for expected in ("compare --resamples", "compare --seed", "compare --alpha", "compare --min-effect",
                     "regressions --permutations", "regressions --significance", "regressions --min-size",
                     "show run_id", "history --limit", "sweep --repeat", "sweep --parallel",
                     "sweep --gpus-per-config", "sweep --cpus-per-config", "sweep --timeout",
                     "report --run-pages", "report --run"):  # fmt: skip
        assert any(name.startswith(f"tokbench {expected}") for name in bounded), expected
    # fix: cli.options.integer / number on every numeric option (argparse refuses out-of-range values)


BAD = [
    ["compare", "a.json", "b.json", "--resamples", "0"],
    ["compare", "a.json", "b.json", "--resamples", "-1"],
    ["compare", "a.json", "b.json", "--resamples", "1000000000"],
    ["compare", "a.json", "b.json", "--seed", "-1"],
    ["compare", "a.json", "b.json", "--alpha", "nan"],
    ["compare", "a.json", "b.json", "--min-effect", "inf"],
    ["regressions", "--permutations", "-5"],
    ["regressions", "--permutations", "0"],
    ["regressions", "--min-size", "0"],
    ["regressions", "--significance", "nan"],
    ["regressions", "--significance", "-1"],
    ["show", "99999999999999999999"],
    ["history", "--limit", "1e20"],
    ["history", "--limit", "0"],
    ["sweep", "--config", "s.yaml", "--cpus-per-config", "nan"],
    ["sweep", "--config", "s.yaml", "--repeat", "100000000"],
    ["sweep", "--config", "s.yaml", "--parallel", "0"],
    ["sweep", "--config", "s.yaml", "--gpus-per-config", "-2"],
    ["sweep", "--config", "s.yaml", "--timeout", "inf"],
    ["report", "x.json", "--run-pages", "-1"],
    ["report", "x.db", "--run", "0"],
]


@pytest.mark.parametrize("args", BAD, ids=lambda args: " ".join(args[:1] + args[-2:]))
def test_out_of_range_numbers_are_one_line_before_anything_runs(
    args: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as stopped:
        main(args)
    assert stopped.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert f"argument {args[-2]}" in error or "argument RUN_ID" in error
    assert ("must be" in error or "expected" in error) and "Traceback" not in error
    assert list(tmp_path.iterdir()) == []  # nothing created: no store, no Ray cluster, no output
    # fix: cli.options.integer / number


def test_a_permutation_count_that_can_never_be_significant_is_refused(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = store_of(tmp_path / "r.db", *real_results)
    assert main(["regressions", "--db", str(db), "--permutations", "50"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "0.0196" in line and "use at least 99" in line
    assert main(["regressions", "--db", str(db), "--permutations", "99", "--min-size", "2"]) == 0
    assert "cannot show a change" in capsys.readouterr().out  # too few runs: says so, with what would decide it
    # fix: cli.compare.command_regressions: an explicit value is never replaced by the default (0 is refused,
    # not read as "unset"), and --permutations must be able to reach --significance


def test_sweep_file_counts_are_bounded_like_the_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for text, field in (("repeat: 100000000", "repeat"), ("parallel: 0", "parallel"),
                        ("cpus_per_config: .nan", "cpus_per_config"), ("repeat: 1.0e8", "repeat")):  # fmt: skip
        sweep = tmp_path / "s.yaml"
        sweep.write_text(f"model: tiny-llama\n{text}\n")
        assert main(["sweep", "--config", str(sweep), "--db", str(tmp_path / "r.db")]) == 2
        assert f"invalid sweep: {field}: expected" in one_line(capsys.readouterr().err)
    assert not (tmp_path / "r.db").exists()
    write_json(tmp_path / "s.json", {"model": "tiny-llama", "repeat": 1e8})
    assert main(["sweep", "--config", str(tmp_path / "s.json"), "--db", str(tmp_path / "r.db")]) == 2
    assert "repeat: expected an integer from 1 to 1,000" in capsys.readouterr().err
    # fix: sweep.plan declares MAX_REPEAT / MAX_PARALLEL / MAX_CPUS_PER_CONFIG once, for the file and the flags
