"""tokbench.run from Python is never silent for minutes: each stage is shown on stderr unless progress=False."""

from __future__ import annotations

import pytest
from support import TINY

import tokbench
from tokbench import BenchmarkConfig


def test_the_python_api_shows_each_stage_on_stderr_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    result = tokbench.run(BenchmarkConfig.from_dict(TINY))
    assert result.status == "ok", result.reason
    err = capsys.readouterr().err
    for line in ("load: started", "load: done in", "cold call: done in", "warmup: 1 done in",
                 "measurement: 2 done in"):  # fmt: skip
        assert line in err
    quiet = tokbench.run(BenchmarkConfig.from_dict(TINY), progress=False)
    assert quiet.status == "ok" and capsys.readouterr().err == ""
