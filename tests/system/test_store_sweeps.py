"""The SQLite results store, the inline launcher and resume, on real results and a real database file."""

from __future__ import annotations

from pathlib import Path

from support import TINY

from tokbench.results.store import ResultStore
from tokbench.sweep.launchers import InlineLauncher
from tokbench.sweep.plan import SweepSpec, plan_sweep
from tokbench.sweep.runner import execute_plan


def test_inline_sweep_with_repeats_then_resume(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{", encoding="utf-8")
    spec = SweepSpec.from_dict(
        {
            **TINY,
            "configs": [{}, {"attn_implementation": "flash_attention_2"}, {"model": str(broken)}],
        }
    )
    plan = plan_sweep(spec)
    with ResultStore(tmp_path / "r.db") as store, InlineLauncher() as launcher:
        outcome = execute_plan(plan, launcher, store, repeat=2, progress=False)
        assert not outcome.interrupted
        statuses = [(entry.config.model, entry.repeat_index, entry.result.status) for entry in outcome.entries]
        assert statuses == [
            ("tiny-llama", 0, "skipped"),
            ("tiny-llama", 0, "ok"),
            (str(broken), 0, "failed"),
            ("tiny-llama", 1, "ok"),
            (str(broken), 1, "failed"),
        ]
        assert [entry.run_id for entry in outcome.entries] == [1, 2, 3, 4, 5]
        # Resume leaves out what is stored ok or skipped, and runs the failed config again.
        resumed = execute_plan(plan, launcher, store, repeat=2, resume=True, progress=False)
        assert resumed.resumed == 3
        assert [(e.config.model, e.result.status) for e in resumed.entries if e.result] == [(str(broken), "failed")] * 2
        assert len(store.runs()) == 7
        assert len(store.runs(status="ok")) == 2


def test_the_python_api_runs_a_sweep_into_the_store(tmp_path: Path) -> None:
    import tokbench

    db = tmp_path / "api.db"
    outcome = tokbench.run_sweep(
        {**TINY, "attn_implementation": ["sdpa", "flash_attention_2"]}, db=db, launcher="inline", progress=False
    )
    assert [(entry.config.attn_implementation, entry.result.status) for entry in outcome.entries] == [
        ("flash_attention_2", "skipped"),
        ("sdpa", "ok"),
    ]
    with ResultStore(db) as store:
        assert [(run.run_id, run.status, run.sweep_id) for run in store.runs()] == [
            (1, "skipped", outcome.plan.sweep_id),
            (2, "ok", outcome.plan.sweep_id),
        ]
