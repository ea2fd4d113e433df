"""Fault injection, the environment around a run (issue 24): an empty HOME, a cache that cannot be written, and
a config changed past its checks through the Python API.

Real parts: a child process with HOME= set empty, a read-only mount for the cache, the real hardware probe and
the real runner on the tiny model.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from faults_support import TINY_FIELDS

from tokbench.config import BenchmarkConfig
from tokbench.errors import ConfigError


def test_an_empty_home_never_puts_the_cache_under_the_root(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if key != "TOKBENCH_CACHE_DIR"}
    for home in ("", "relative/path"):
        done = subprocess.run(
            [sys.executable, "-c", "from tokbench.fileio import cache_root; print(cache_root())"],
            env={**environment, "HOME": home}, capture_output=True, text=True, timeout=60, check=True, cwd=tmp_path,
        )  # fmt: skip
        root = Path(done.stdout.strip())
        assert root.is_absolute() and root != Path("/.cache/tokbench") and not str(root).startswith("/.cache")
        assert root.name == "tokbench" and root.parent.name == ".cache"
    # fix: fileio.home_folder: $HOME only when absolute, else the password database, else the temp folder


def test_a_probe_cache_that_cannot_be_written_is_never_called_cached(readonly_dir: Path) -> None:
    import torch

    from tokbench.hardware.peaks import peak_for

    peak = peak_for(torch.device("cpu"), "float32", cache_dir=readonly_dir)
    assert "now cached" not in peak.source and f"not cached: {readonly_dir} could not be written" in peak.source
    assert not list(readonly_dir.iterdir())
    # fix: hardware.peaks.peak_for says "now cached" only when the cache file holds the new figures


def test_a_config_changed_past_its_checks_never_runs_as_ok() -> None:
    import tokbench

    config = BenchmarkConfig(**TINY_FIELDS)
    object.__setattr__(config, "measurement_iterations", 0)  # what a caller bypassing validation does
    with pytest.raises(ConfigError, match="measurement_iterations: must be >= 1, got 0"):
        tokbench.run(config)
    # and a run that measured nothing is never ok, whatever let it through
    from time import perf_counter_ns

    from tokbench.engine.recorder import RunRecorder

    result = RunRecorder(BenchmarkConfig(**TINY_FIELDS), "2026-12-02T00:00:00+00:00", perf_counter_ns).finish("ok")
    assert result.status == "failed" and "no measured iteration" in result.reason
    # fix: config.require_config validates again; engine.recorder.RunRecorder.finish refuses ok without a call
