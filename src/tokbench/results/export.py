"""The columns of ``tokbench export --format csv``: a stored run's index columns, what it measured (its config's
workload fields) and each headline metric's median with its 95% interval, ready for a spreadsheet.

Torch-free: it reads the stored result JSON as data. Cells are plain values; the command makes them
spreadsheet-safe (``text.spreadsheet_safe``) like every export.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from tokbench.results.store import HEADLINE_METRICS, StoredRun

# What a run measured, as columns (the workload fields a reader sorts and filters by).
CONFIG_COLUMNS = (
    ("batch_size", "batch_size"),
    ("prompt_tokens", "sequence_length"),
    ("new_tokens", "new_tokens"),
    ("dtype", "dtype"),
    ("attention", "attn_implementation"),
    ("compile", "compile_mode"),
    ("static_cache", "static_cache"),
    ("quantization", "quantization"),
    ("continuous_batching", "continuous_batching"),
    ("device", "device"),
)


def csv_rows(runs: Sequence[StoredRun], results: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per run: its index columns, its config columns, then per metric median / ci_low / ci_high."""
    rows = []
    for run, result in zip(runs, results, strict=True):
        row = run.to_dict()
        config = result.get("config") or {}
        for column, field in CONFIG_COLUMNS:
            value = config.get(field)
            row[column] = json.dumps(value) if isinstance(value, (list, dict)) else value
        summary = result.get("summary") or {}
        for metric in HEADLINE_METRICS:
            interval = (summary.get(metric) or {}).get("median_ci") or (None, None)
            row[f"{metric}_ci_low"], row[f"{metric}_ci_high"] = interval[0], interval[1]
        rows.append(_ordered(row))
    return rows


def _ordered(row: dict[str, Any]) -> dict[str, Any]:
    """Identity first, then what was measured, then each metric's median beside its interval."""
    metric_columns = [f"{metric}{suffix}" for metric in HEADLINE_METRICS for suffix in ("_median", "_ci_low",
                                                                                          "_ci_high")]  # fmt: skip
    config_columns = [column for column, _ in CONFIG_COLUMNS]
    rest = [key for key in row if key not in metric_columns and key not in config_columns]
    return {key: row[key] for key in (*rest, *config_columns, *metric_columns)}
