"""Verdicts about what can run and what differs: a level never blames the user for combinations it made, never drops a
value the sweep file asks for, --resume never announces what it will not run, compare never refuses over a label."""

from __future__ import annotations

import dataclasses
import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from tokbench.cli.sweep import print_plan
from tokbench.config import BenchmarkConfig
from tokbench.results.comparison import ComparisonRefused, compare
from tokbench.results.selectors import SelectedRun
from tokbench.results.store import ResultStore
from tokbench.schema.results import BenchmarkResult, load_result
from tokbench.sweep.plan import SweepSpec, plan_sweep

DATA = Path(__file__).resolve().parent.parent / "data"
BASE = {"model": "tiny-llama", "sequence_length": 8, "new_tokens": 4}


def plan(fields: dict[str, object], level: str | None = None) -> object:
    return plan_sweep(SweepSpec.from_dict({**fields, **({"level": level} if level else {})}), check=lambda c: None)


def test_level_everything_never_reports_its_own_combinations_as_invalid() -> None:
    everything = plan(BASE, "everything")
    assert everything.invalid == ()  # type: ignore[attr-defined]
    assert any("of its combinations are not valid configs and were left out" in n for n in everything.notes)  # type: ignore[attr-defined]
    assert everything.runnable  # type: ignore[attr-defined]
    # the user's own invalid value is still the user's: listed as invalid, whatever the level
    wrong = plan({**BASE, "batch_size": [1, 0]}, "small")
    assert wrong.invalid and all(c.fields["batch_size"] == 0 for c in wrong.invalid)  # type: ignore[attr-defined]


def test_level_small_keeps_a_value_the_sweep_file_asks_for_and_says_so() -> None:
    small = plan({**BASE, "attn_implementation": ["sdpa", "eager"]}, "small")
    attentions = {p.config.attn_implementation for p in small.runnable}  # type: ignore[attr-defined]
    assert attentions == {"sdpa", "eager"}
    assert any("no combination with attn_implementation 'eager'; kept" in n for n in small.notes)  # type: ignore[attr-defined]
    only_sdpa = plan({**BASE, "attn_implementation": ["sdpa"]}, "small")
    assert not any("kept" in n for n in only_sdpa.notes)  # type: ignore[attr-defined]


def test_resume_does_not_announce_what_is_already_stored(tmp_path: Path) -> None:
    sweep = plan({**BASE, "batch_size": [1, 2, 3]})
    first = sweep.runnable[0].config  # type: ignore[attr-defined]
    with ResultStore(tmp_path / "s.db") as store:
        store.add(BenchmarkResult(config=first, status="ok"), sweep_id=sweep.sweep_id)  # type: ignore[attr-defined]
        done = store.completed(sweep.sweep_id)  # type: ignore[attr-defined]
    stream = io.StringIO()
    print_plan(sweep, Console(file=stream, width=200), done=done)  # type: ignore[arg-type]
    assert "2 config(s) to run (1 already stored: left out by --resume)" in stream.getvalue()


def test_compare_never_refuses_or_lists_label_and_policy_fields() -> None:
    data = json.loads((DATA / "result-v2.json").read_text(encoding="utf-8"))
    baseline = BenchmarkResult.from_dict(data)
    labelled = BenchmarkConfig.from_dict({**baseline.config.to_dict(), "profile_tokens": 8, "name": "profiled",
                                          "seed": 3, "monitor_interval_ms": 20})  # fmt: skip
    contender = dataclasses.replace(baseline, config=labelled)
    report = compare([SelectedRun(baseline, "a.json")], [SelectedRun(contender, "b.json")], ignore=("dtype",))
    assert len(report.workloads) == 1
    assert report.workloads[0].ignored_fields == ()  # no label or policy field is listed as a difference
    assert load_result(DATA / "result-v2.json").workload_key == contender.workload_key
    other = dataclasses.replace(contender, config=labelled.replace(batch_size=2))
    with pytest.raises(ComparisonRefused) as refused:
        compare([SelectedRun(baseline, "a.json")], [SelectedRun(other, "c.json")])
    assert "batch_size 1 vs 2" in str(refused.value)
    assert "profile_tokens" not in str(refused.value) and "seed" not in str(refused.value)
