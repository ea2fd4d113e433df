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
from typing import Any

from tokbench.config import BenchmarkConfig
from tokbench.engine.progress import STAGE_SWEEP, ProgressHook, as_hook
from tokbench.errors import StoreWriteError
from tokbench.fileio import write_new_text
from tokbench.hardware.environment import capture_environment_or_reason
from tokbench.interrupts import signals_deferred
from tokbench.results.store import DEFAULT_DB_PATH, ResultStore, sweep_lock
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.records import LaunchRecord
from tokbench.schema.results import STATUS_SKIPPED, BenchmarkResult
from tokbench.sweep.executors import Executor, Launcher, WorkItem, WorkUnit, work_units
from tokbench.sweep.executors.local import LocalExecutor
from tokbench.sweep.plan import SweepPlan, SweepSpec, load_sweep_file, plan_sweep
from tokbench.text import safe_filename, terminal_safe


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
    session = SweepSession(
        plan, executor, store, repeat=repeat, resume=resume, progress=progress, on_result=on_result
    )
    return session.run(share_load=share_load)


class SweepSession:
    """One plan run into one store, step by step: the skipped configs stored, the resumed ones counted, the
    rest executed; every result stored as it arrives (``deliver``), then told to the progress hook and
    ``on_result``. Only this object, in the caller's thread, writes the store."""

    def __init__(
        self,
        plan: SweepPlan,
        executor: Executor | Launcher,
        store: ResultStore,
        *,
        repeat: int = 1,
        resume: bool = False,
        progress: ProgressHook | bool | None = None,
        on_result: Callable[[SweepEntry], None] | None = None,
    ) -> None:
        self.plan = plan
        self.executor: Executor = executor if isinstance(executor, Executor) else LocalExecutor.for_launcher(executor)
        self.store = store
        self.repeat = repeat
        self.outcome = SweepOutcome(plan)
        self._done = store.completed(plan.sweep_id) if resume else set()
        self._hook = as_hook(progress)
        self._on_result = on_result
        self._environment: EnvironmentRecord | None = None  # captured once, for the skipped results built here

    @property
    def total(self) -> int:
        """How many config × repeat entries the sweep has (stored, resumed or still to run)."""
        return len(self.plan.skipped) + self.repeat * len(self.plan.runnable)

    def run(self, *, share_load: bool = True) -> SweepOutcome:
        """Every step in order; a Ctrl-C or SIGTERM ends it early, the outcome marked ``interrupted``."""
        if self._hook is not None:
            self._hook.stage_started(STAGE_SWEEP, self.total)
        try:
            self.store_skipped()
            self.execute(self.pending_units(share_load=share_load))
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        finally:
            if self._hook is not None:
                self._hook.stage_finished(STAGE_SWEEP)
        return self.outcome

    def store_skipped(self) -> None:
        """The configs the plan found impossible, stored as ``skipped`` (unless a resumed sweep has them)."""
        for skipped in self.plan.skipped:
            if (skipped.config.config_hash, 0) in self._done:
                self._record(SweepEntry(skipped.config, 0, None, None, resumed=True))
                continue
            result = _skipped_result(skipped.config, skipped.reason, self.executor.name, self._parent_environment())
            self._store(skipped.config, 0, result)

    def pending_units(self, *, share_load: bool = True) -> list[WorkUnit]:
        """The work units still to run; what the store already holds is recorded as resumed."""
        units, resumed = work_units(self.plan, repeat=self.repeat, done=self._done, share_load=share_load)
        for item in resumed:
            self._record(SweepEntry(item.config, item.repeat_index, None, None, resumed=True))
        return units

    def execute(self, units: list[WorkUnit]) -> None:
        """Run ``units`` through the executor; an inline run stopped mid-way keeps what it measured."""
        try:
            self.executor.execute(units, self.deliver)
        except KeyboardInterrupt as interrupt:
            partial: BenchmarkResult | None = getattr(interrupt, "result", None)
            if partial is not None and self.repeat == 1:
                self._store(partial.config, 0, _with_sweep(partial, self.plan.sweep_id, 0))
            raise

    def deliver(self, item: WorkItem, result: BenchmarkResult) -> None:
        """The executor's callback: one finished result, stored under this sweep and repeat."""
        self._store(item.config, item.repeat_index, _with_sweep(result, self.plan.sweep_id, item.repeat_index))

    def _store(self, config: BenchmarkConfig, repeat_index: int, result: BenchmarkResult) -> None:
        # A Ctrl-C or SIGTERM during the write would roll it back and lose a finished result: hold it until
        # the commit (and until the result is in the outcome), then stop.
        with signals_deferred():
            try:
                run_id = self.store.add(result, sweep_id=self.plan.sweep_id, repeat_index=repeat_index)
            except StoreWriteError as error:
                # Never lose a finished result: keep it as JSON beside the store, say where, stop the sweep.
                kept = keep_beside_store(self.store.path, result)
                raise StoreWriteError(f"{error}; the result of {config.name} is kept in {kept}") from error
            self._record(SweepEntry(config, repeat_index, result, run_id))

    def _record(self, entry: SweepEntry) -> None:
        self.outcome.entries.append(entry)
        if self._hook is not None:
            name = entry.config.name
            label = name if self.repeat == 1 else f"{name} #{entry.repeat_index + 1}"
            status = entry.result.status if entry.result is not None else "stored before"
            self._hook.advanced(
                STAGE_SWEEP, len(self.outcome.entries), terminal_safe(f"last: {label} {status}", newlines=False)
            )
        if self._on_result is not None:
            self._on_result(entry)

    def _parent_environment(self) -> EnvironmentRecord:
        if self._environment is None:
            self._environment = capture_environment_or_reason()
        return self._environment


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
    config: BenchmarkConfig, reason: str, launcher_name: str, environment: EnvironmentRecord
) -> BenchmarkResult:
    return BenchmarkResult(
        config=config,
        status=STATUS_SKIPPED,
        reason=reason,
        environment=environment,
        started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        launch=LaunchRecord(launcher="none (skipped before launching)", planned_launcher=launcher_name),
    )
