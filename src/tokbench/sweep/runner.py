"""Run a sweep plan: every config through a launcher, every result into the store as soon as it exists.

Only this (parent) process writes the store, one transaction per result. The configs the plan found
impossible are stored first as ``skipped``. With ``repeat`` K every config runs K times, round after
round (config order within a round), each time in its own process with the process launcher.
``resume`` leaves out what the store already holds as ``ok`` or ``skipped`` for the same sweep id and
repeat index; ``failed`` and ``interrupted`` configs run again. Ctrl-C (and SIGTERM, under
``interrupts.interruptible``) ends the running child (the launcher does that), keeps every stored result,
and returns an outcome marked ``interrupted``; an inline run stopped mid-way is stored as ``interrupted``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from tokbench.config import BenchmarkConfig
from tokbench.engine.progress import STAGE_SWEEP, ProgressHook, as_hook
from tokbench.errors import StoreWriteError
from tokbench.fileio import write_new_text
from tokbench.interrupts import signals_deferred
from tokbench.results.store import DEFAULT_DB_PATH, ResultStore, sweep_lock
from tokbench.schema.records import LaunchRecord
from tokbench.schema.results import STATUS_SKIPPED, BenchmarkResult
from tokbench.sweep.plan import SweepPlan, SweepSpec, load_sweep_file, plan_sweep
from tokbench.text import safe_filename, terminal_safe

if TYPE_CHECKING:
    from tokbench.sweep.executors import Executor


class Launcher(Protocol):
    name: str

    def launch(self, config: BenchmarkConfig, timeout_s: float | None = None) -> BenchmarkResult: ...


@dataclass(frozen=True)
class SweepEntry:
    """One config × repeat of the sweep: stored now (``run_id``), or left out because already stored."""

    config: BenchmarkConfig
    repeat_index: int
    result: BenchmarkResult | None  # None when resumed from the store
    run_id: int | None
    resumed: bool = False


@dataclass
class SweepOutcome:
    plan: SweepPlan
    entries: list[SweepEntry] = field(default_factory=list)
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for entry in self.entries if entry.result is not None and entry.result.status == status)

    @property
    def resumed(self) -> int:
        return sum(1 for entry in self.entries if entry.resumed)


def execute_plan(
    plan: SweepPlan,
    executor: Executor | Launcher,
    store: ResultStore,
    *,
    repeat: int = 1,
    resume: bool = False,
    progress: ProgressHook | bool | None = None,
    on_result: Callable[[SweepEntry], None] | None = None,
    share_load: bool = True,
) -> SweepOutcome:
    """Run ``plan`` through ``executor`` (or a bare launcher, run one unit at a time here) and store each
    result as it arrives; configs that need no reload share a load unless ``share_load`` is False.
    Returns early, ``interrupted``, on Ctrl-C or SIGTERM.

    ``progress``: a ``ProgressHook`` told after each config (``cli`` passes the terminal's).
    """
    from tokbench.sweep.executors import WorkItem, work_units
    from tokbench.sweep.executors.local import LocalExecutor

    if not hasattr(executor, "execute"):
        executor = LocalExecutor.for_launcher(executor)
    outcome = SweepOutcome(plan)
    done = store.completed(plan.sweep_id) if resume else set()
    total = len(plan.skipped) + repeat * len(plan.runnable)
    hook = as_hook(progress)
    if hook is not None:
        hook.stage_started(STAGE_SWEEP, total)

    environment: list[dict[str, Any]] = []  # captured once, for the skipped results built here

    def parent_environment() -> dict[str, Any]:
        if not environment:
            environment.append(_parent_environment())
        return environment[0]

    def record(entry: SweepEntry) -> None:
        outcome.entries.append(entry)
        if hook is not None:
            label = entry.config.name if repeat == 1 else f"{entry.config.name} #{entry.repeat_index + 1}"
            status = entry.result.status if entry.result is not None else "stored before"
            hook.advanced(STAGE_SWEEP, len(outcome.entries), terminal_safe(f"last: {label} {status}", newlines=False))
        if on_result is not None:
            on_result(entry)

    def store_and_record(config: BenchmarkConfig, repeat_index: int, result: BenchmarkResult) -> None:
        # A Ctrl-C or SIGTERM during the write would roll it back and lose a finished result: hold it until
        # the commit (and until the result is in the outcome), then stop.
        with signals_deferred():
            try:
                run_id = store.add(result, sweep_id=plan.sweep_id, repeat_index=repeat_index)
            except StoreWriteError as error:
                # Never lose a finished result: keep it as JSON beside the store, say where, stop the sweep.
                kept = keep_beside_store(store.path, result)
                raise StoreWriteError(f"{error}; the result of {config.name} is kept in {kept}") from error
            record(SweepEntry(config, repeat_index, result, run_id))

    def deliver(item: WorkItem, result: BenchmarkResult) -> None:
        store_and_record(item.config, item.repeat_index, _with_sweep(result, plan.sweep_id, item.repeat_index))

    try:
        for skipped in plan.skipped:
            if (skipped.config.config_hash, 0) in done:
                record(SweepEntry(skipped.config, 0, None, None, resumed=True))
                continue
            result = _skipped_result(skipped.config, skipped.reason, executor.name, parent_environment())
            store_and_record(skipped.config, 0, result)
        units, resumed = work_units(plan, repeat=repeat, done=done, share_load=share_load)
        for item in resumed:
            record(SweepEntry(item.config, item.repeat_index, None, None, resumed=True))
        try:
            executor.execute(units, deliver)
        except KeyboardInterrupt as interrupt:  # an inline run keeps what it measured, as interrupted
            partial: BenchmarkResult | None = getattr(interrupt, "result", None)
            if partial is not None and repeat == 1:
                store_and_record(partial.config, 0, _with_sweep(partial, plan.sweep_id, 0))
            raise
    except KeyboardInterrupt:
        outcome.interrupted = True
    finally:
        if hook is not None:
            hook.stage_finished(STAGE_SWEEP)
    return outcome


def keep_beside_store(db: Path, result: BenchmarkResult) -> str:
    """Write a result the store could not take as JSON in ``<db>-unsaved/`` (else a fallback folder)."""
    from tokbench.results.outputs import keep_somewhere_safe

    data = result.to_dict()
    stem = f"{safe_filename(result.config.name)}-{result.config_hash}"
    try:
        return str(write_new_text(Path(f"{db}-unsaved"), stem, ".json", json.dumps(data, indent=1, allow_nan=False)))
    except OSError:
        kept, errors = keep_somewhere_safe(data, stem)
        return str(kept) if kept else f"nowhere ({'; '.join(errors)})"


def run_sweep(
    spec: SweepSpec | Mapping[str, Any] | str | Path,
    *,
    db: str | Path = DEFAULT_DB_PATH,
    resume: bool = False,
    progress: ProgressHook | bool | None = None,
    on_result: Callable[[SweepEntry], None] | None = None,
    **options: Any,
) -> SweepOutcome:
    """The Python API of ``tokbench sweep``: a spec (a ``SweepSpec``, a dict as in a sweep file, or the
    file's path) is planned and run into the store at ``db``. ``options`` override the spec's sweep
    options: ``level``, ``launcher`` (default ``process``), ``timeout_s``, ``repeat``, ``compile_cache``,
    ``start_method``, ``executor`` (``local`` or ``ray``), ``parallel``, ``gpus_per_config``,
    ``cpus_per_config``, ``ray_address``, ``share_load``."""
    from tokbench.sweep.executors import open_executor

    if isinstance(spec, (str, Path)):
        spec = load_sweep_file(spec)
    elif not isinstance(spec, SweepSpec):
        spec = SweepSpec.from_dict(spec)
    spec = spec.with_options(**options)
    plan = plan_sweep(spec)
    executor = open_executor(spec)
    try:
        with sweep_lock(db, plan.sweep_id), ResultStore(db) as store:  # one run of a sweep into a store at a time
            return execute_plan(
                plan,
                executor,
                store,
                repeat=spec.repeat,
                resume=resume,
                progress=progress,
                on_result=on_result,
                share_load=spec.share_load,
            )
    finally:
        executor.close()


def _with_sweep(result: BenchmarkResult, sweep_id: str, repeat_index: int) -> BenchmarkResult:
    import dataclasses

    launch = dataclasses.replace(result.launch, sweep_id=sweep_id, repeat_index=repeat_index)
    return dataclasses.replace(result, launch=launch)


def _skipped_result(
    config: BenchmarkConfig, reason: str, launcher_name: str, environment: dict[str, Any]
) -> BenchmarkResult:
    return BenchmarkResult(
        config=config,
        status=STATUS_SKIPPED,
        reason=reason,
        environment=environment,
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        launch=LaunchRecord(launcher="none (skipped before launching)", planned_launcher=launcher_name),
    )


def _parent_environment() -> dict[str, Any]:
    from tokbench.hardware.environment import capture_environment_or_reason

    return capture_environment_or_reason()
