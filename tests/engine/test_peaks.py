"""The hardware probe: a robust figure with its spread, one cached figure per machine, bad caches replaced."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from tokbench.hardware.peaks import (
    KIND_PROBE,
    REPROBE_ENV,
    HardwarePeak,
    ProbeCacheWarning,
    ProbeRecord,
    ProbeSettings,
    RobustFigure,
    cached_probe,
    peak_for,
    robust_figure,
)

CPU = torch.device("cpu")
SMALL = ProbeSettings(copy_bytes=2 * 2**20, matmul_size=64, rounds=5)


def test_robust_figure_is_the_median_of_rounds_with_its_spread() -> None:
    figure = robust_figure([30.0, 50.0, 40.0, 35.0, 100.0])  # one round disturbed upwards
    assert (figure.median, figure.min, figure.max, figure.n) == (40.0, 30.0, 100.0, 5)
    assert (figure.q1, figure.q3) == (35.0, 50.0)
    assert RobustFigure.from_dict(figure.to_dict()) == figure


def test_a_real_probe_measures_rounds_and_caches_one_figure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(REPROBE_ENV, raising=False)
    record, path, from_cache = cached_probe(CPU, "float32", tmp_path, settings=SMALL)
    assert not from_cache and path.parent == tmp_path
    for figure in (record.copy_bandwidth_bytes_s, record.matmul_flops_s):
        assert figure.n == 5 and 0 < figure.min <= figure.q1 <= figure.median <= figure.q3 <= figure.max
    again, _, from_cache = cached_probe(CPU, "float32", tmp_path, settings=SMALL)
    assert from_cache and again == record  # the same figure every run on this machine

    fresh, _, from_cache = cached_probe(CPU, "float32", tmp_path, settings=SMALL, reprobe=True)
    assert not from_cache and fresh.measured_at >= record.measured_at
    monkeypatch.setenv(REPROBE_ENV, "1")
    _, _, from_cache = cached_probe(CPU, "float32", tmp_path, settings=SMALL)
    assert not from_cache
    monkeypatch.setenv(REPROBE_ENV, "0")
    latest, _, from_cache = cached_probe(CPU, "float32", tmp_path, settings=SMALL)
    assert from_cache and latest != record  # the re-probe replaced the cached figure


def test_the_peak_shows_the_median_and_its_spread(tmp_path: Path) -> None:
    peak = peak_for(CPU, "float32", tmp_path)
    assert peak.kind == KIND_PROBE and peak.probe is not None
    assert peak.memory_bandwidth_bytes_s == peak.probe.copy_bandwidth_bytes_s.median
    assert peak.flops_s == peak.probe.matmul_flops_s.median
    assert "median of 11 rounds" in peak.source and "IQR" in peak.source and f"{REPROBE_ENV}=1" in peak.source
    assert HardwarePeak.from_dict(json.loads(json.dumps(peak.to_dict()))) == peak
    old = {k: v for k, v in peak.to_dict().items() if k != "probe"}  # written before the probe record existed
    assert HardwarePeak.from_dict(old).probe is None


def _valid_figures() -> dict[str, Any]:
    figure = {"median": 2e10, "q1": 1.9e10, "q3": 2.1e10, "min": 1.5e10, "max": 2.5e10, "n": 11}
    return {
        "copy_bandwidth_bytes_s": dict(figure),
        "matmul_flops_s": dict(figure),
        "copy_bytes": 2 * 2**20,
        "matmul_size": 64,
        "threads": 2,
        "measured_at": "2026-11-27T07:00:00+00:00",
    }


def _with(path: list[str], value: Any) -> dict[str, Any]:
    figures = _valid_figures()
    target = figures
    for name in path[:-1]:
        target = target[name]
    target[path[-1]] = value
    return figures


BAD_FIGURES = {
    "nan": _with(["copy_bandwidth_bytes_s", "median"], math.nan),
    "inf": _with(["matmul_flops_s", "max"], math.inf),
    "zero": _with(["copy_bandwidth_bytes_s", "min"], 0),
    "negative": _with(["matmul_flops_s", "median"], -1.0),
    "string": _with(["copy_bandwidth_bytes_s", "q1"], "fast"),
    "bool n": _with(["matmul_flops_s", "n"], True),
    "unordered": _with(["copy_bandwidth_bytes_s", "q3"], 1.0e10),
    "missing": _with(["threads"], None),
    "not an object": _with(["matmul_flops_s"], [1, 2, 3]),
}


@pytest.mark.parametrize("case", [*BAD_FIGURES, "bad json", "not a dict"])
def test_an_invalid_cache_file_is_ignored_with_a_warning_and_replaced(tmp_path: Path, case: str) -> None:
    _, path, _ = cached_probe(CPU, "float32", tmp_path, settings=SMALL)  # a valid file with the right key
    key = json.loads(path.read_text())["key"]
    if case == "bad json":
        path.write_text('{"key": ' + json.dumps(key) + ', "figures": {')
    elif case == "not a dict":
        path.write_text("[1, 2]")
    else:  # json.dumps writes NaN / Infinity for the non-finite cases, as a careless writer would
        path.write_text(json.dumps({"key": key, "figures": BAD_FIGURES[case]}))
    with pytest.warns(ProbeCacheWarning, match=path.name):
        record, again_path, from_cache = cached_probe(CPU, "float32", tmp_path, settings=SMALL)
    assert again_path == path and not from_cache
    stored = json.loads(path.read_text())  # replaced by the fresh, valid figures
    assert stored["key"] == key and ProbeRecord.from_dict(stored["figures"]) == record
    _, _, from_cache = cached_probe(CPU, "float32", tmp_path, settings=SMALL)
    assert from_cache


def test_a_cache_for_another_machine_or_probe_version_is_not_used_and_not_warned_about(tmp_path: Path) -> None:
    import warnings

    _, path, _ = cached_probe(CPU, "float32", tmp_path, settings=SMALL)
    stored = json.loads(path.read_text())
    stored["key"]["schema"] = 1
    stored["figures"] = {"copy_bandwidth_bytes_s": 3.49e10, "matmul_flops_s": 4.3e11}  # the old best-of format
    path.write_text(json.dumps(stored))
    with warnings.catch_warnings():
        warnings.simplefilter("error", ProbeCacheWarning)
        _, _, from_cache = cached_probe(CPU, "float32", tmp_path, settings=SMALL)
    assert not from_cache
