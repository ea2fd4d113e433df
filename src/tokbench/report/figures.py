"""Plots of a report as plain typed specs, and two renderers: plotly JSON (the HTML page) and PNG (matplotlib).

A ``FigureSpec`` is built once from ``report.data`` records; ``to_plotly`` turns it into the JSON plotly.js
draws in the page and ``write_png`` draws the same spec with matplotlib for papers and READMEs. Building
plain dicts (not ``plotly.graph_objects``) keeps a 100-config sweep fast: plotly's Python validation is
skipped, and the Python package is needed only for its bundled plotly.js.

Untrusted text: plotly.js renders titles, legend names, tick labels and hover text as its own small HTML
dialect (``<b>``, ``<a href>``...). Every string that goes into a plotly spec is HTML-escaped here, which
plotly turns back into the literal characters, so a model called ``<script>alert(1)</script>`` is drawn as
those characters and never parsed as markup.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokbench.report.data import (
    METRIC_LABELS,
    ComparisonData,
    MonitorData,
    ReportError,
    RunData,
    SweepData,
)
from tokbench.report.wording import ordinal
from tokbench.text import terminal_safe

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf")  # fmt: skip
# Shading every measured call on the monitoring plot is useful for tens of calls, noise for hundreds.
MAX_SHADED_SPANS = 120
MAX_MONITOR_POINTS = 2000
MAX_LEGEND_BELOW = 6  # more series than this: the legend goes beside the plot

# series modes
LINES = "lines"
MARKERS = "markers"
LINES_MARKERS = "lines+markers"
BAR = "bar"
HISTOGRAM = "histogram"


@dataclass(frozen=True)
class Series:
    """One trace: ``y`` against ``x``; ``band_low``/``band_high`` shade a spread around it."""

    name: str
    x: tuple[Any, ...]
    y: tuple[float | None, ...] = ()
    mode: str = LINES
    band_low: tuple[float, ...] = ()
    band_high: tuple[float, ...] = ()
    band_name: str = ""
    hover: tuple[str, ...] = ()
    color: str = ""
    y_axis: int = 1  # 2: the right-hand axis
    x_error_minus: tuple[float, ...] = ()  # horizontal error bars (a forest plot's CIs)
    x_error_plus: tuple[float, ...] = ()


@dataclass(frozen=True)
class Marker:
    """A vertical line at ``x`` with a label (steady state reached, a recompile)."""

    x: float
    label: str
    dash: str = "dash"
    color: str = "#555555"


@dataclass(frozen=True)
class FigureSpec:
    key: str  # stable id: the page's element id and the PNG's file name
    title: str
    x_title: str
    y_title: str
    series: tuple[Series, ...]
    markers: tuple[Marker, ...] = ()
    spans: tuple[tuple[float, float], ...] = ()  # shaded x ranges (the measured calls)
    x_log: bool = False
    y2_title: str = ""
    bar_mode: str = "group"
    height: int = 380
    x_ticks: tuple[float, ...] = ()  # label exactly these x values (batch sizes), not a linear scale's
    x_integer: bool = False  # x counts something (iterations, positions): no fractional ticks
    y_category: bool = False  # y holds labels (a forest plot), drawn top to bottom

    @property
    def legend_beside(self) -> bool:
        """Many series: the legend goes to the right of the plot, where it never covers an axis."""
        return len(self.series) > MAX_LEGEND_BELOW


def _finite(values: Sequence[Any]) -> list[Any]:
    return [v if not isinstance(v, float) or math.isfinite(v) else None for v in values]


# --- figures of one run ----------------------------------------------------------------------------------


def run_figures(data: RunData) -> dict[str, FigureSpec]:
    """Every plot of a run's page by section name; a section without data has no figure."""
    figures: dict[str, FigureSpec] = {}
    if data.positions is not None:
        p = data.positions
        figures["positions"] = FigureSpec(
            key="positions",
            title=f"Per-token latency by generated position ({p.requests} requests)",
            x_title="generated token position",
            x_integer=True,
            y_title="gap to the previous token (ms)",
            series=(
                Series("median", p.positions, p.median_ms, LINES, band_low=p.p10_ms, band_high=p.p90_ms,
                       band_name="p10–p90", color=PALETTE[0]),
            ),
        )  # fmt: skip
    for metric in ("ttft_ms", "itl_ms", "e2e_latency_ms"):
        values = data.samples.get(metric)
        if values:
            figures[f"dist_{metric}"] = FigureSpec(
                key=f"dist_{metric}",
                title=f"{METRIC_LABELS[metric]} distribution (n = {len(values)})",
                x_title=f"{METRIC_LABELS[metric]} (ms)",
                y_title="count",
                series=(Series(METRIC_LABELS[metric], tuple(values), mode=HISTOGRAM, color=PALETTE[1]),),
            )
    if data.warmup is not None and (data.warmup.e2e_ms or data.warmup.cold_call_ms is not None):
        w = data.warmup
        series = [Series("warmup E2E", tuple(range(1, len(w.e2e_ms) + 1)), w.e2e_ms, LINES_MARKERS, color=PALETTE[0])]
        if w.cold_call_ms is not None:
            series.insert(0, Series("cold first call", (0,), (w.cold_call_ms,), MARKERS, color=PALETTE[3]))
        markers = [Marker(i, "dynamo compiled", "dot", PALETTE[3]) for i in w.compiled_in]
        if w.steady_from is not None:
            markers.append(Marker(w.steady_from, "steady state from here", "dash", PALETTE[2]))
        figures["warmup"] = FigureSpec(
            key="warmup",
            title="Warmup curve" + _steady_state_label(w.policy, w.steady_state),

            x_title="warmup iteration (0 = cold first call)",
            x_integer=True,
            y_title="E2E latency (ms)",
            series=tuple(series),
            markers=tuple(markers),
        )  # fmt: skip
    if data.iterations is not None:
        it = data.iterations
        index = tuple(range(1, len(it.e2e_ms) + 1))
        figures["iterations"] = FigureSpec(
            key="iterations",
            title="Measured iterations in order",
            x_title="measured iteration",
            x_integer=True,
            y_title="E2E latency (ms)",
            y2_title="decode throughput (tok/s)",
            series=(
                Series("E2E", index, it.e2e_ms, LINES_MARKERS, color=PALETTE[0]),
                Series("decode tok/s", index, it.decode_tok_s, LINES_MARKERS, color=PALETTE[1], y_axis=2),
            ),
        )
    if data.monitor is not None:
        figures.update(monitor_figures(data.monitor))
    if data.memory is not None:
        m = data.memory
        mib = 2**20
        parts = [("weights", m.weight_bytes), ("KV cache at end", m.kv_cache_bytes)]
        if m.beyond_bytes is not None:
            parts.append(("beyond both", m.beyond_bytes))
        figures["memory"] = FigureSpec(
            key="memory",
            title=f"Memory breakdown (peak: {m.peak_source or 'unknown'})",
            x_title="",
            y_title="MiB",
            series=tuple(Series(name, ("memory",), (value / mib,), BAR, color=PALETTE[i])
                         for i, (name, value) in enumerate(parts)),
            bar_mode="stack",
        )  # fmt: skip
    if data.efficiency is not None and (data.efficiency.mbu is not None or data.efficiency.mfu is not None):
        e = data.efficiency
        names, values = [], []
        for name, value in (("decode MBU", e.mbu), ("prefill MFU", e.mfu)):
            if value is not None:
                names.append(name)
                values.append(value * 100)
        figures["efficiency"] = FigureSpec(
            key="efficiency",
            title="Efficiency against the device limit",
            x_title="",
            y_title="% of the device's peak",
            series=(Series("utilization", tuple(names), tuple(values), BAR, color=PALETTE[2]),),
        )
    return figures


def _steady_state_label(policy: str, steady: bool | None) -> str:
    if steady is None:
        return ""
    if policy == "fixed":  # a fixed count is not stopped by the test: its verdict is for information
        return " (fixed count; steady-state test passed)" if steady else " (fixed count; steady-state test not passed)"
    return " (steady state reached)" if steady else " (NO steady state reached)"


def monitor_figures(monitor: MonitorData) -> dict[str, FigureSpec]:
    """One plot per unit (%, MiB, W, MHz, °C), over the measured window, the measured calls shaded."""
    by_unit: dict[str, list[Series]] = {}
    stride = 1
    for index, s in enumerate(monitor.series):
        # A long run has tens of thousands of samples: plot at most MAX_MONITOR_POINTS per series (the table
        # beside the plot has min / mean / max of all of them), rounded to what a plot can show.
        stride = max(1, math.ceil(len(s.seconds) / MAX_MONITOR_POINTS))
        seconds = tuple(round(t, 4) for t in s.seconds[::stride])
        values = tuple(None if v is None else float(f"{v:.5g}") for v in s.values[::stride])
        by_unit.setdefault(s.unit, []).append(
            Series(f"{s.backend} {s.column}", seconds, values, LINES, color=PALETTE[index % len(PALETTE)])
        )
    thinned = f"; every {ordinal(stride)} sample plotted" if stride > 1 else ""
    spans = monitor.iteration_spans_s if len(monitor.iteration_spans_s) <= MAX_SHADED_SPANS else ()
    return {
        f"monitor_{_slug(unit)}": FigureSpec(
            key=f"monitor_{_slug(unit)}",
            title=f"Monitoring ({unit}) over the measured window, every {monitor.interval_ms} ms",
            x_title=f"seconds since measurement start (shaded: measured calls{thinned})",
            y_title=unit,
            series=tuple(series),
            spans=spans,
        )
        for unit, series in by_unit.items()
    }


def _slug(unit: str) -> str:
    return {"%": "percent", "MiB": "mib", "W": "watts", "MHz": "mhz", "°C": "celsius", "J": "joules"}.get(unit, "x")


# --- figures of a sweep ----------------------------------------------------------------------------------


def sweep_figures(data: SweepData, throughput: str = "overall_throughput_tok_s") -> dict[str, FigureSpec]:
    figures: dict[str, FigureSpec] = {}
    by_series: dict[str, list[tuple[int, float, str]]] = {}
    for row in data.rows:
        value = row.medians.get(throughput)
        if value is not None:
            by_series.setdefault(row.series, []).append((row.batch_size, value, row.name))
    # A line needs two batch sizes: a series of one point says nothing about batching (the table and the Pareto
    # plot show such configs), and sixteen of them make a plot that is all legend.
    by_series = {name: points for name, points in by_series.items() if len({p[0] for p in points}) > 1}
    if by_series:
        figures["throughput_vs_batch"] = FigureSpec(
            key="throughput_vs_batch",
            title=f"{METRIC_LABELS[throughput]} vs batch size",
            x_title="batch size",
            y_title=f"{METRIC_LABELS[throughput]} (tok/s)",
            series=tuple(
                Series(name, tuple(p[0] for p in points), tuple(p[1] for p in points), LINES_MARKERS,
                       hover=tuple(p[2] for p in points), color=PALETTE[i % len(PALETTE)])
                for i, (name, points) in enumerate(sorted(by_series.items()))
                for points in [sorted(points)]
            ),
            x_log=len({p[0] for points in by_series.values() for p in points}) > 3,
            x_ticks=tuple(sorted({p[0] for points in by_series.values() for p in points})),
        )  # fmt: skip
    measured = [r for r in data.rows if r.medians.get("e2e_latency_ms") is not None and r.medians.get(throughput)]
    if measured:
        front = {key: i for i, key in enumerate(data.pareto)}
        on_front = sorted((r for r in measured if r.config_hash in front), key=lambda r: front[r.config_hash])
        figures["pareto"] = FigureSpec(
            key="pareto",
            title="Latency–throughput trade-off (line: Pareto front)",
            x_title="median E2E latency (ms)",
            y_title=f"median {METRIC_LABELS[throughput]} (tok/s)",
            series=(
                Series("configs", tuple(r.medians["e2e_latency_ms"] for r in measured),
                       tuple(r.medians[throughput] for r in measured), MARKERS,
                       hover=tuple(r.name for r in measured), color=PALETTE[7]),
                Series("Pareto front", tuple(r.medians["e2e_latency_ms"] for r in on_front),
                       tuple(r.medians[throughput] for r in on_front), LINES_MARKERS,
                       hover=tuple(r.name for r in on_front), color=PALETTE[3]),
            ),
        )  # fmt: skip
    repeated = [r for r in data.rows if r.between_cv is not None]
    if repeated:
        figures["repeat_variation"] = FigureSpec(
            key="repeat_variation",
            title="E2E variation between processes vs within a process (--repeat)",
            x_title="config",
            y_title="coefficient of variation (%)",
            series=(
                Series("between processes", tuple(r.name for r in repeated),
                       tuple((r.between_cv or 0) * 100 for r in repeated), BAR, color=PALETTE[3]),
                Series("within a process", tuple(r.name for r in repeated),
                       tuple((r.within_cv or 0) * 100 for r in repeated), BAR, color=PALETTE[0]),
            ),
        )  # fmt: skip
    return figures


# --- figures of a comparison -----------------------------------------------------------------------------

VERDICT_COLORS = {"slower": PALETTE[3], "faster": PALETTE[2], "inconclusive": PALETTE[1]}


def comparison_figures(data: ComparisonData) -> dict[str, FigureSpec]:
    """The forest plot: contender ÷ baseline of each workload × metric median with its CI, by verdict."""
    if not data.rows:
        return {}
    by_verdict: dict[str, list[int]] = {}
    for index, row in enumerate(data.rows):
        by_verdict.setdefault(row.verdict or "-", []).append(index)
    series = []
    for verdict, indices in by_verdict.items():
        rows = [data.rows[i] for i in indices]
        series.append(
            Series(
                verdict,
                tuple(r.ratio for r in rows),
                tuple(f"{r.workload} · {METRIC_LABELS.get(r.metric, r.metric)}" for r in rows),  # type: ignore[arg-type]
                MARKERS,
                color=VERDICT_COLORS.get(verdict, PALETTE[7]),
                x_error_minus=tuple(r.ratio - r.ci_low if r.ci_low is not None else 0.0 for r in rows),
                x_error_plus=tuple(r.ci_high - r.ratio if r.ci_high is not None else 0.0 for r in rows),
                hover=tuple(f"{r.workload} {r.metric}: ratio {r.ratio:.4f} " + (
                    f"[{r.ci_low:.4f}, {r.ci_high:.4f}]" if r.ci_low is not None and r.ci_high is not None
                    else "(no interval)") for r in rows),
            )
        )  # fmt: skip
    return {
        "forest": FigureSpec(
            key="forest",
            title="Contender ÷ baseline, median with its 95% CI",
            x_title="ratio, log scale (1 = no change)",
            y_title="",
            series=tuple(series),
            markers=(Marker(1.0, "no change", "dash", "#555555"),),
            height=max(320, 60 + 28 * len(data.rows)),
            y_category=True,
            x_log=True,  # ratios: ×0.03 and ×30 are as far from 1; a linear axis crushes everything below 1
        )
    }


# --- plotly ----------------------------------------------------------------------------------------------


def plotly_text(text: object) -> str:
    """A string plotly.js draws literally: its pseudo-HTML is escaped (see the module docstring), control and
    bidi-override characters shown as escapes."""
    return html.escape(terminal_safe(text), quote=True)


def _plotly_values(values: Sequence[Any]) -> list[Any]:
    return [plotly_text(v) if isinstance(v, str) else v for v in _finite(values)]


def _rgba(color: str, alpha: float) -> str:
    red, green, blue = (int(color[i : i + 2], 16) for i in (1, 3, 5))
    return f"rgba({red},{green},{blue},{alpha})"


def to_plotly(spec: FigureSpec) -> dict[str, Any]:
    """The figure as plotly.js JSON: ``{"data": [...], "layout": {...}}``."""
    traces: list[dict[str, Any]] = []
    for series in spec.series:
        common: dict[str, Any] = {"name": plotly_text(series.name)}
        if series.color:
            common["marker"] = {"color": series.color}
        if series.y_axis == 2:
            common["yaxis"] = "y2"
        if series.mode == HISTOGRAM:
            traces.append({"type": "histogram", "x": _finite(series.x), **common})
            continue
        if series.band_low and series.band_high:
            band_color = _rgba(series.color or PALETTE[0], 0.2)
            traces.append(
                {
                    "type": "scatter",
                    "mode": "lines",
                    "x": _plotly_values(series.x),
                    "y": _finite(series.band_high),
                    "line": {"width": 0},
                    "hoverinfo": "skip",
                    "showlegend": False,
                    "name": plotly_text(series.band_name),
                }
            )
            traces.append({"type": "scatter", "mode": "lines", "x": _plotly_values(series.x),
                           "y": _finite(series.band_low), "line": {"width": 0}, "fill": "tonexty",
                           "fillcolor": band_color, "name": plotly_text(series.band_name)})  # fmt: skip
        trace: dict[str, Any] = {"x": _plotly_values(series.x), "y": _plotly_values(series.y), **common}
        if series.mode == BAR:
            trace["type"] = "bar"
        else:
            trace.update(type="scatter", mode=series.mode)
            if series.color:
                trace["line"] = {"color": series.color}
        if series.x_error_minus and series.x_error_plus:
            trace["error_x"] = {"type": "data", "symmetric": False, "array": _finite(series.x_error_plus),
                                "arrayminus": _finite(series.x_error_minus)}  # fmt: skip
        if series.hover:
            trace["text"] = [plotly_text(h) for h in series.hover]
            trace["hovertemplate"] = "%{text}<br>x=%{x}<br>y=%{y}<extra></extra>"
        traces.append(trace)
    shapes: list[dict[str, Any]] = [
        {"type": "rect", "xref": "x", "yref": "paper", "x0": low, "x1": high, "y0": 0, "y1": 1,
         "fillcolor": "rgba(120,120,120,0.10)", "line": {"width": 0}, "layer": "below"}
        for low, high in spec.spans
    ]  # fmt: skip
    annotations: list[dict[str, Any]] = []
    for marker in spec.markers:
        shapes.append({"type": "line", "xref": "x", "yref": "paper", "x0": marker.x, "x1": marker.x, "y0": 0,
                       "y1": 1, "line": {"dash": marker.dash, "color": marker.color, "width": 1.5}})  # fmt: skip
        annotations.append({"x": marker.x, "y": 1, "xref": "x", "yref": "paper", "yanchor": "bottom",
                            "text": plotly_text(marker.label), "showarrow": False,
                            "font": {"size": 11, "color": marker.color}})  # fmt: skip
    layout: dict[str, Any] = {
        "title": {"text": plotly_text(spec.title), "font": {"size": 15}},
        "xaxis": {"title": {"text": plotly_text(spec.x_title)}, "type": "log" if spec.x_log else "-"},
        "yaxis": {"title": {"text": plotly_text(spec.y_title)}, "rangemode": "tozero"},
        "margin": {"l": 60, "r": 30 if not spec.y2_title else 70, "t": 60, "b": 60},
        "legend": {"orientation": "v", "x": 1.02, "y": 1} if spec.legend_beside else {"orientation": "h", "y": -0.3},
        "barmode": spec.bar_mode,
        "shapes": shapes,
        "annotations": annotations,
        "height": spec.height,
    }
    if spec.x_ticks:
        layout["xaxis"]["tickvals"] = list(spec.x_ticks)
    if spec.x_integer:
        layout["xaxis"]["tickformat"] = "d"
        if max((len(series.x) for series in spec.series), default=0) <= 20:
            layout["xaxis"]["dtick"] = 1
    if spec.y_category:
        layout["yaxis"] = {"type": "category", "autorange": "reversed", "automargin": True}
        layout["xaxis"]["zeroline"] = False
    if spec.y2_title:
        layout["yaxis2"] = {"title": {"text": plotly_text(spec.y2_title)}, "overlaying": "y", "side": "right",
                            "rangemode": "tozero"}  # fmt: skip
    return {"data": traces, "layout": layout}


# --- PNG (matplotlib, optional) --------------------------------------------------------------------------


def write_pngs(figures: Sequence[FigureSpec], directory: str | Path, prefix: str = "") -> list[Path]:
    """Draw each figure with matplotlib into ``directory/PREFIXKEY.png``; the file names are ours, never
    derived from untrusted text. Needs the ``png`` extra (matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display here; also keeps a GUI backend from starting
        import matplotlib.pyplot as plt
    except ImportError as error:
        raise ReportError('--png needs matplotlib: pip install -c .venv/torch-constraint.txt -e ".[png]"') from error
    target = Path(directory)
    target.mkdir(parents=True, exist_ok=True)
    written = []
    # Names are data, never markup: with mathtext off, "$x$" (or "a $ b") is drawn as typed, never parsed.
    with matplotlib.rc_context({"text.parse_math": False, "text.usetex": False}):
        for spec in figures:
            figure, axis = plt.subplots(figsize=(8, max(4.2, spec.height / 90)), dpi=110)
            try:
                _draw(axis, spec)
                path = target / f"{prefix}{spec.key}.png"
                figure.tight_layout()
                figure.savefig(path)
                written.append(path)
            finally:
                plt.close(figure)
    return written


def mpl_text(text: object) -> str:
    """A string matplotlib draws literally (mathtext is off in ``write_pngs``), control characters escaped."""
    return terminal_safe(text)


def _draw(axis: Any, spec: FigureSpec) -> None:
    right = axis.twinx() if spec.y2_title else None
    stacked: dict[Any, float] = {}
    bar_series = [s for s in spec.series if s.mode == BAR]
    width = 0.8 / max(1, len(bar_series)) if spec.bar_mode == "group" else 0.6
    for low, high in spec.spans:
        axis.axvspan(low, high, color="#888888", alpha=0.1, linewidth=0)
    for series in spec.series:
        target = right if series.y_axis == 2 and right is not None else axis
        color = series.color or None
        if series.mode == HISTOGRAM:
            target.hist([v for v in series.x if v is not None], bins=40, color=color, label=mpl_text(series.name))
            continue
        if series.mode == BAR:
            labels = [mpl_text(x) for x in series.x]
            positions = range(len(labels))
            values = [v or 0.0 for v in series.y]
            if spec.bar_mode == "stack":
                bottoms = [stacked.get(label, 0.0) for label in labels]
                target.bar(labels, values, width, bottom=bottoms, color=color, label=mpl_text(series.name))
                for label, value in zip(labels, values, strict=True):
                    stacked[label] = stacked.get(label, 0.0) + value
            else:
                offset = (bar_series.index(series) - (len(bar_series) - 1) / 2) * width
                target.bar([p + offset for p in positions], values, width, color=color, label=mpl_text(series.name))
                target.set_xticks(list(positions), labels, rotation=30 if len(labels) > 4 else 0, ha="right")
            continue
        xs = list(series.x)
        ys = [math.nan if v is None else v for v in series.y]
        if series.x_error_minus and series.x_error_plus:
            labels = [mpl_text(y) for y in series.y]
            target.errorbar(xs, labels, xerr=[series.x_error_minus, series.x_error_plus], fmt="o", color=color,
                            label=mpl_text(series.name), capsize=3)  # fmt: skip
            continue
        if series.band_low and series.band_high:
            target.fill_between(xs, series.band_low, series.band_high, color=color, alpha=0.2, linewidth=0,
                                label=mpl_text(series.band_name))  # fmt: skip
        style = {"lines": "-", "markers": "o", "lines+markers": "-o"}.get(series.mode, "-")
        target.plot(xs, ys, style, color=color, label=mpl_text(series.name), markersize=4)
    for marker in spec.markers:
        axis.axvline(marker.x, linestyle=":" if marker.dash == "dot" else "--", color=marker.color, linewidth=1)
        axis.annotate(mpl_text(marker.label), (marker.x, 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                      color=marker.color, rotation=0, va="bottom")  # fmt: skip
    if spec.x_log:
        axis.set_xscale("log", base=2)
    if spec.x_ticks:
        axis.set_xticks(list(spec.x_ticks), [f"{t:g}" for t in spec.x_ticks])
    if spec.x_integer:
        from matplotlib.ticker import MaxNLocator

        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    axis.set_title(mpl_text(spec.title), fontsize=11, pad=14)
    axis.set_xlabel(mpl_text(spec.x_title))
    axis.set_ylabel(mpl_text(spec.y_title))
    if spec.series and spec.series[0].mode not in (HISTOGRAM,) and not spec.y_category:
        axis.set_ylim(bottom=0)
    if spec.y_category:
        axis.invert_yaxis()
    if right is not None:
        right.set_ylabel(mpl_text(spec.y2_title))
        right.set_ylim(bottom=0)
    handles, labels = axis.get_legend_handles_labels()
    if right is not None:
        more_handles, more_labels = right.get_legend_handles_labels()
        handles, labels = handles + more_handles, labels + more_labels
    if len(handles) > 1 and spec.legend_beside:
        axis.legend(handles, labels, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    elif len(handles) > 1:
        axis.legend(handles, labels, fontsize=8, loc="best")
    axis.grid(alpha=0.3)
