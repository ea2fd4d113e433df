"""The tuning report as a rich table (``tokbench tune``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tokbench.schema.quant import TuningReport
from tokbench.schema.summary import HIGH_DISPERSION

if TYPE_CHECKING:
    from rich.table import Table


def _us(ns: float) -> str:
    return f"{ns / 1e3:,.1f}"


def render_tuning_table(report: TuningReport) -> Table:
    """A ``rich.table.Table``: per shape and M, every candidate's median and IQR, the winner, the speedup."""
    from rich.table import Table

    table = Table(
        title=(
            f"int4 kernel tuning on {report.device} ({report.dtype}, batch {report.batch_size}, "
            f"seq {report.sequence_length}; {report.total_tuning_ns / 1e9:.2f} s, "
            f"{report.cache_hits}/{len(report.entries)} from cache)"
        )
    )
    for column, justify in (
        ("shape (in x out)", "left"),
        ("M", "right"),
        ("candidate", "left"),
        ("median us", "right"),
        ("IQR us", "right"),
        ("IQR/med", "right"),
        ("", "left"),
        ("vs default", "right"),
    ):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]  # str, not the Literal
    for entry in report.entries:
        default_timing = entry.timing_of(entry.default)
        ordered = sorted(entry.candidates, key=lambda t: t.median_ns)
        for index, timing in enumerate(ordered):
            marks = []
            if timing.choice == entry.winner:
                marks.append("WINNER" + (" (tie->simpler)" if entry.tie_break else ""))
            if timing.choice == entry.default:
                marks.append("default")
            if timing.dispersion > HIGH_DISPERSION:
                marks.append("noisy")
            speed = (
                f"{default_timing.median_ns / timing.median_ns:.2f}x"
                if default_timing is not None and timing.median_ns > 0
                else "-"
            )
            table.add_row(
                f"{entry.in_features} x {entry.out_features}" if index == 0 else "",
                f"{entry.m} ({entry.phase}{', cache' if entry.from_cache else ''})" if index == 0 else "",
                timing.choice.label,
                _us(timing.median_ns),
                _us(timing.iqr_ns),
                f"{timing.dispersion:.2f}",
                ", ".join(marks),
                speed,
                end_section=index == len(ordered) - 1,
            )
    return table
