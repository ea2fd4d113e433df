"""Words for figures every report shares: a precision that is too wide to read as ±%, ordinals."""

from __future__ import annotations

# Above this relative half-width a "±" reads as nonsense (±1420.9% of a median that cannot go below zero):
# the interval itself is shown instead.
WIDE_INTERVAL = 0.5


def _figure(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.1f}"
    if abs(value) >= 10:
        return f"{value:.2f}"
    return f"{value:.3f}"


def precision_text(relative: float | None, interval: tuple[float, float] | None = None, digits: int = 1) -> str:
    """``±3.7%``, or for a wide interval the interval itself (``[80.00, 2,940]``); ``-`` when unknown."""
    if relative is None:
        return "-"
    if relative > WIDE_INTERVAL and interval is not None:
        return f"[{_figure(interval[0])}, {_figure(interval[1])}]"
    return f"±{relative:.{digits}%}"


def known_to(relative: float | None, interval: tuple[float, float] | None, unit: str = "ms") -> str:
    """``median E2E known to ±0.93%``, or ``median E2E only known to lie in [80.00, 2,940] ms``."""
    text = precision_text(relative, interval, digits=2)
    if text.startswith("["):
        return f"median E2E only known to lie in {text} {unit}"
    return f"median E2E known to {text}"


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st..."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"
