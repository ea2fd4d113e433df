"""The terminal's progress display: ``engine.progress.ProgressHook`` drawn with rich.progress on stderr.

rich already draws the tables, so it draws the bars too (one progress library). The display refreshes
only when the engine reports something (``auto_refresh=False``): no refresh thread competes with the
measured calls for the CPU. It is transient (gone once the stage ends) and never reaches a result.

Every stage shows its elapsed time. A stage with an estimate (warmup, measurement: ``engine.progress.Progress``)
fills its bar by the share of the stage the policy expects done, not by the count toward an iteration cap that
auto policies rarely reach, with its ETA ("≤" when it is the budget's bound) and, while measuring, the precision
reached against the target. Stages without one (load, the cold call) show a spinner: something is happening.

When stderr is not a terminal (a CI log, a pipe) there are no bars: a line when a stage starts, after its 1st,
2nd, 4th, 8th... iteration (with the same estimates, and for a sweep the config that just finished), and when it
ends with its elapsed time, so a log still shows where a run was in a few lines.
"""

from __future__ import annotations

import time

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TaskID, TextColumn, TimeElapsedColumn

from tokbench.engine.progress import Progress as StageProgress
from tokbench.text import terminal_safe

_LABELS = {
    "load": "Load",
    "cold call": "Cold call",
    "warmup": "Warmup",
    "measurement": "Measure",
    "sweep": "Sweep",
    "ab": "A/B pairs",
}
_UNITS = {"sweep": "configs", "ab": "pairs"}
# Stages logged at every step when stderr is no terminal: a sweep's every config, and an A/B pair (each takes many
# seconds and its line says how the interval narrowed).
_EVERY_STEP = frozenset({"sweep", "ab"})
_WHAT = {"load": "weights, then quantization and tuning if asked", "cold call": "the validation call: the first "
         "generate, where a compile happens if asked"}  # fmt: skip
_FRACTION_STEPS = 1000  # a bar filled by a share is drawn in thousandths


class RichProgress:
    """One line per running stage: a bar by the expected share done (or a spinner), elapsed, ETA, precision."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console if console is not None else Console(stderr=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._by_fraction: set[str] = set()
        self._started: dict[str, float] = {}  # without a terminal: when each stage started, for its closing line
        self._done: dict[str, int] = {}

    # --- the hook --------------------------------------------------------------------------------------

    def stage_started(self, stage: str, expected: int | None) -> None:
        self._started[stage] = time.monotonic()
        if not self._console.is_terminal:
            if expected is None:
                bound = f" ({_WHAT[stage]})" if stage in _WHAT else ""
            else:
                bound = f" (up to {expected} {_UNITS.get(stage, 'iterations')})"
            self._line(f"{stage}: started{bound}")
            self._done[stage] = 0
            return
        progress = self._display()
        detail = _WHAT.get(stage, "")
        self._tasks[stage] = progress.add_task(_LABELS.get(stage, stage), total=expected, detail=detail, count="")
        progress.refresh()

    def advanced(self, stage: str, done: int, detail: str = "") -> None:
        if stage in self._done:
            self._done[stage] = done
            # 1, 2, 4, 8...: a log shows the run moving in a few lines, however long; a sweep's every config
            if stage in _EVERY_STEP or done & (done - 1) == 0:
                self._line(f"{stage}: {done} so far" + (f" ({detail})" if detail else ""))
            return
        task = self._tasks.get(stage)
        if self._progress is None or task is None:
            return
        self._progress.update(task, completed=done, detail=detail, count=f"{done}")
        self._progress.refresh()

    def update(self, stage: str, progress: StageProgress) -> None:
        """An iteration with the policy's estimates: the bar fills by the expected share, not by the cap."""
        if stage in self._done:
            self.advanced(stage, progress.done, f"{progress.elapsed_s:,.1f} s, {progress.estimate_words()}".strip(", "))
            return
        task = self._tasks.get(stage)
        if self._progress is None or task is None:
            return
        if progress.fraction is not None:
            if stage not in self._by_fraction:
                self._by_fraction.add(stage)
                self._progress.update(task, total=_FRACTION_STEPS)
            self._progress.update(task, completed=round(progress.fraction * _FRACTION_STEPS))
        self._progress.update(task, detail=progress.estimate_words(), count=f"{progress.done} it")
        self._progress.refresh()

    def stage_finished(self, stage: str) -> None:
        started = self._started.pop(stage, None)
        if stage in self._done:
            took = f" in {time.monotonic() - started:,.1f} s" if started is not None else ""
            count = self._done.pop(stage)
            self._line(f"{stage}: {count} done{took}" if count else f"{stage}: done{took}")
            return
        task = self._tasks.pop(stage, None)
        self._by_fraction.discard(stage)
        if self._progress is None or task is None:
            return
        self._progress.remove_task(task)
        if not self._tasks:
            self._progress.stop()
            self._progress = None

    def note(self, text: str) -> None:
        """Something to know before waiting (a budget the run cannot keep): printed above the bars."""
        self._console.print(f"tokbench: {terminal_safe(text)}", markup=False, highlight=False, style="yellow",
                            soft_wrap=True)  # fmt: skip

    # --- drawing ---------------------------------------------------------------------------------------

    def _display(self) -> Progress:
        if self._progress is None:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("{task.description}"),
                BarColumn(),
                TextColumn("{task.fields[count]}"),
                TimeElapsedColumn(),
                TextColumn("{task.fields[detail]}", markup=False),
                console=self._console,
                transient=True,
                auto_refresh=False,
            )
            self._progress.start()
        return self._progress

    def _line(self, text: str) -> None:
        self._console.print(terminal_safe(text), markup=False, highlight=False, soft_wrap=True)
