"""The tuning report as a rich table (``tokbench tune``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from tokbench.schema.quant import CONFIDENCE_CLEAR, CONFIDENCE_NOISE, ShapeTuning, TuningReport
from tokbench.schema.summary import HIGH_DISPERSION

if TYPE_CHECKING:
    from rich.table import Table


def _us(ns: float) -> str:
    return f"{ns / 1e3:,.1f}"


def confidence_mark(entry: ShapeTuning) -> str:
    """``, clear`` / ``, tie`` / ``, NOISE: not cached``: how sure the pick is (nothing for older reports)."""
    confidence = entry.confidence
    if confidence is None:
        return ""
    if confidence.level == CONFIDENCE_NOISE:
        return ", NOISE: not cached"
    return f", {confidence.level}"


def confidence_lines(report: TuningReport) -> list[str]:
    """One line per pick that is not clear, saying why (what a user should know before trusting the kernels)."""
    lines = []
    for entry in report.entries:
        confidence = entry.confidence
        if confidence is not None and confidence.level != CONFIDENCE_CLEAR:
            where = f"{entry.in_features}x{entry.out_features} M={entry.m} ({entry.phase})"
            lines.append(f"{where}: {entry.winner.label} is a {confidence.level} pick: {confidence.reason}")
    return lines


def confidence_counts(report: TuningReport) -> str:
    """``4 clear, 1 tie, 1 noise`` over the report's picks (``""`` for reports written before picks said it)."""
    counts: dict[str, int] = {}
    for entry in report.entries:
        if entry.confidence is not None:
            counts[entry.confidence.level] = counts.get(entry.confidence.level, 0) + 1
    return ", ".join(f"{count} {level}" for level, count in counts.items())


def tuner_warning_lines(warnings: Sequence[str]) -> list[str]:
    """The tuner's warnings for a terminal: each one once, the per-candidate 'noisy timings' ones as one count."""
    noisy = [text for text in warnings if "timings are noisy" in text]
    lines = list(dict.fromkeys(text for text in warnings if "timings are noisy" not in text))
    if noisy:
        lines.append(
            f"{len(noisy)} candidate timing(s) were noisy (IQR/median > {HIGH_DISPERSION}; marked 'noisy' in "
            "`tokbench tune`'s table): close other programs or give the tuner a larger --tune-budget-s"
        )
    return lines


def render_tuning_table(report: TuningReport) -> Table:
    """A ``rich.table.Table``: per shape and M, every candidate's median and IQR, the winner, the speedup."""
    from rich.table import Table

    table = Table(
        title=(
            f"int4 kernel tuning on {report.device} ({report.dtype}, batch {report.batch_size}, "
            f"seq {report.sequence_length}; {report.total_tuning_ns / 1e9:.2f} s, "
            f"{report.cache_hits}/{len(report.entries)} from cache"
            + (f"; picks: {confidence_counts(report)}" if confidence_counts(report) else "")
            + ")"
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
                marks.append("WINNER" + (" (tie->simpler)" if entry.tie_break else "") + confidence_mark(entry))
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
