"""The page model of ``tokbench report``: pages of sections (a plot and its tables), cells, number formats.

Kept apart from ``report.html`` (which renders and assembles them) so page builders in other modules
(``report.serving_page``) build the same pages without importing the renderer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone

from tokbench.report.figures import FigureSpec

# --- page model ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """A table cell: ``text`` shown (escaped), ``value`` the full-precision number for sorting and copying."""

    text: str
    value: float | int | None = None
    link: str = ""  # an anchor in this page (#run-3), never an outside URL


@dataclass(frozen=True)
class Table:
    columns: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]
    caption: str = ""
    sortable: bool = False
    table_id: str = ""  # a stable id tests and links can find
    scroll: bool = False  # long tables get a scrollbar next to their plot


@dataclass(frozen=True)
class Section:
    title: str
    figure: FigureSpec | None = None
    tables: tuple[Table, ...] = ()
    lines: tuple[str, ...] = ()  # plain text lines (escaped)
    open: bool = True  # a folded section is drawn when it is opened
    tags: tuple[tuple[str, str], ...] = ()  # (filter name, value): the page's filters show or hide the section


@dataclass(frozen=True)
class Filter:
    """A drop-down over the page's sections: ``name`` matches their tags; "" (all) or one of ``choices``."""

    name: str
    label: str
    choices: tuple[tuple[str, str], ...]  # (value, text shown)
    default: str = ""


@dataclass(frozen=True)
class Page:
    page_id: str
    title: str
    subtitle: str
    sections: tuple[Section, ...]
    open: bool = True  # run pages of a large sweep start folded and draw their plots when opened
    status: str = ""
    filters: tuple[Filter, ...] = ()  # drop-downs that show only the sections tagged with the chosen value


@dataclass(frozen=True)
class Report:
    title: str
    pages: tuple[Page, ...]
    notes: tuple[str, ...] = ()
    generated_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    def figures(self) -> list[FigureSpec]:
        return [s.figure for p in self.pages for s in p.sections if s.figure is not None]


# --- numbers -----------------------------------------------------------------------------------------------


def fmt(value: float | int | None, digits: int = 4) -> str:
    """A number for a table: 4 significant digits, thousands separated; '-' for none."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return f"{value:,}"
    magnitude = abs(value)
    if magnitude >= 10 ** (digits - 1):
        return f"{value:,.0f}"
    if magnitude == 0:
        return "0"
    decimals = max(0, digits - 1 - math.floor(math.log10(magnitude)))
    return f"{value:,.{decimals}f}"


def num(value: float | int | None, digits: int = 4) -> Cell:
    return Cell(fmt(value, digits), value if value is None or math.isfinite(value) else None)


def pct(value: float | None) -> Cell:
    return Cell("-" if value is None else f"{value * 100:.2f}%", value)


def txt(value: object) -> Cell:
    return Cell("-" if value is None or value == "" else str(value))


def mib(value: int | float | None) -> Cell:
    return Cell("-" if value is None else f"{value / 2**20:,.2f} MiB", value)
