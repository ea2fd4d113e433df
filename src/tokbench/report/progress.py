"""The terminal's progress display: ``engine.progress.ProgressHook`` drawn with rich.progress on stderr.

rich already draws the tables, so it draws the bars too (one progress library). The display refreshes
only when the engine reports an iteration (``auto_refresh=False``): no refresh thread competes with the
measured calls for the CPU. It is transient (gone once the stage ends) and never reaches a result.
When stderr is not a terminal (a CI log, a pipe) there are no bars: a line when a stage starts, after its
1st, 2nd, 4th, 8th... iteration, and when it ends, so a log still shows where a run was in a few lines.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

_LABELS = {"warmup": "Warmup", "measurement": "Measure", "sweep": "Sweep", "ab": "A/B pairs"}
_UNITS = {"sweep": "configs", "ab": "pairs"}
# Stages logged at every step, with their detail, when stderr is no terminal: an A/B pair takes many seconds and
# its line says how the interval narrowed.
_EVERY_STEP = frozenset({"ab"})


class RichProgress:
    """One bar per running stage; the expected count is the fixed count or the auto policy's maximum."""

    def __init__(self, console: Console | None = None) -> None:
        self._console = console if console is not None else Console(stderr=True)
        self._progress: Progress | None = None
        self._tasks: dict[str, TaskID] = {}
        self._done: dict[str, int] = {}  # without a terminal: iterations per stage, for its closing line

    def stage_started(self, stage: str, expected: int | None) -> None:
        if not self._console.is_terminal:
            bound = "" if expected is None else f" (up to {expected} {_UNITS.get(stage, 'iterations')})"
            self._console.print(f"{stage}: started{bound}", markup=False, highlight=False)
            self._done[stage] = 0
            return
        if self._progress is None:
            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[detail]}", markup=False),
                console=self._console,
                transient=True,
                auto_refresh=False,
            )
            self._progress.start()
        self._tasks[stage] = self._progress.add_task(_LABELS.get(stage, stage), total=expected, detail="")
        self._progress.refresh()

    def advanced(self, stage: str, done: int, detail: str = "") -> None:
        if stage in self._done:
            self._done[stage] = done
            if done & (done - 1) == 0 or stage in _EVERY_STEP:  # 1, 2, 4, 8...: a few lines, however long
                shown = f" ({detail})" if detail and stage in _EVERY_STEP else ""
                self._console.print(f"{stage}: {done} so far{shown}", markup=False, highlight=False)
            return
        task = self._tasks.get(stage)
        if self._progress is None or task is None:
            return
        self._progress.update(task, completed=done, detail=detail)
        self._progress.refresh()

    def stage_finished(self, stage: str) -> None:
        if stage in self._done:
            self._console.print(f"{stage}: {self._done.pop(stage)} done", markup=False, highlight=False)
            return
        task = self._tasks.pop(stage, None)
        if self._progress is None or task is None:
            return
        self._progress.remove_task(task)
        if not self._tasks:
            self._progress.stop()
            self._progress = None
