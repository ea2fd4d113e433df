"""A real ``transformers serve`` on loopback (a tiny preset saved with its seeded weights), plain and with
continuous batching, benchmarked end to end by ``tokbench serve-bench`` with no URL: sweeps run, the results are
stored, exact input and output lengths are honoured, and the server is stopped after."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tokbench.results.store import ResultStore

pytest.importorskip("fastapi", reason="transformers serve needs the serving extra: pip install -e '.[serving]'")
pytest.importorskip("uvicorn", reason="transformers serve needs the serving extra: pip install -e '.[serving]'")

TOKBENCH = str(Path(sys.executable).parent / "tokbench")


def _serve_bench(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TOKBENCH, "serve-bench", "--api", "chat", "--requests", "6", "--warmup", "1",
                           "--input-tokens", "16", "--output-tokens", "8", "--db", "s.db", *args],
                          cwd=tmp_path, capture_output=True, text=True, timeout=900)  # fmt: skip


def _check_stored(tmp_path: Path, count: int) -> list:  # type: ignore[type-arg]
    with ResultStore(tmp_path / "s.db", read_only=True) as store:
        results = [store.result(run.run_id) for run in store.runs()]
    assert len(results) == count
    for result in results:
        assert result.status == "ok", result.reason
        serving = result.serving
        capabilities = serving.capabilities
        assert capabilities.role_only_first_chunk is True and capabilities.done_sentinel is False
        assert capabilities.fixed_output_field == "generation_config" and "ignore_eos" in capabilities.rejected_fields
        assert capabilities.prompt_tokens_honoured is True  # the chat template's tokens counted in the 16
        measured = [r for r in serving.requests if not r.warmup]
        assert all(r.ok and r.usage_completion_tokens == 8 and r.usage_prompt_tokens == 16 for r in measured)
        assert result.summary["tpot_ms"].count == len(measured)
        assert serving.server.kind == "transformers-serve"
    return results


@pytest.mark.slow
def test_transformers_serve_plain_closed_loop_sweep(tmp_path: Path) -> None:
    completed = _serve_bench(tmp_path, "--concurrency", "1,2")
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = _check_stored(tmp_path, 2)
    assert [r.serving.settings.concurrency for r in results] == [1, 2]
    assert "serving sweep" in completed.stdout and "saturation" in completed.stdout
    data = json.loads(next((tmp_path / "tokbench-results").glob("*c1*.json")).read_text())
    assert data["serving"]["server"]["command"][1] == "serve"


@pytest.mark.slow
def test_transformers_serve_continuous_batching_open_loop_sweep(tmp_path: Path) -> None:
    completed = _serve_bench(tmp_path, "--continuous-batching", "--rate", "2,4", "--lag-budget-ms", "1000")
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = _check_stored(tmp_path, 2)
    assert [r.serving.settings.rate for r in results] == [2.0, 4.0]
    assert all("--continuous-batching" in r.serving.server.command for r in results)
