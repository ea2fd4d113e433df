"""The local executor: units run on this machine, one at a time, or ``parallel`` at once, one isolated
worker process per slot.

With GPUs, a slot is a set of ``gpus_per_config`` GPUs and the child sees only those
(``CUDA_VISIBLE_DEVICES``), so every visible GPU is busy with its own config and no two configs share a GPU.
Without GPUs (or for CPU configs) slots only bound how many configs run at once: on a CPU they compete
for the same cores, which the figures will show.

Each slot has its own launcher (its own fork server): the fork server's client is used by one thread.
Results come back to the calling thread, which alone calls ``deliver`` (and so writes the store).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import queue
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from tokbench.errors import ConfigError
from tokbench.schema.results import BenchmarkResult
from tokbench.sweep.executors import Deliver, Launcher, LauncherFactory, WorkItem, WorkUnit
from tokbench.sweep.plan import SweepSpec
from tokbench.sweep.threads import ThreadPlan, local_plan

# How long the calling thread waits for a result before it looks again (keeps Ctrl-C responsive).
_RESULT_POLL_S = 0.2
# How long the slots' threads get to wind down after an interrupt.
_JOIN_S = 15.0

GpuSlot = tuple[str, ...]


def visible_gpus(environ: Mapping[str, str] | None = None, count: Callable[[], int] | None = None) -> list[str]:
    """The GPUs children may use: ``CUDA_VISIBLE_DEVICES``'s entries when it is set, else NVML's device
    indexes (no CUDA context is created here: the parent never touches CUDA). ``count`` replaces NVML."""
    environ = os.environ if environ is None else environ
    listed = environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [entry.strip() for entry in listed.split(",") if entry.strip()]
    return [str(index) for index in range((count or _nvml_device_count)())]


def _nvml_device_count() -> int:
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:  # no driver, no library: no GPU for the children either
        return 0
    try:
        return int(pynvml.nvmlDeviceGetCount())
    except Exception:
        return 0
    finally:
        with contextlib.suppress(Exception):  # a library that half-initialised must not fail the sweep
            pynvml.nvmlShutdown()


def gpu_slots(gpus: Sequence[str], *, parallel: int | None, gpus_per_config: int | None) -> list[GpuSlot]:
    """The slots configs run in: each a tuple of the GPUs its child sees (empty: no GPU assignment).

    With GPUs: ``gpus_per_config`` (default 1) consecutive GPUs per slot, as many slots as fit
    (``parallel`` may ask for fewer, never more). Without GPUs: ``parallel`` (default 1) empty slots;
    ``gpus_per_config`` then is an error, since there is nothing to give.
    """
    if parallel is not None and (isinstance(parallel, bool) or parallel < 1):
        raise ConfigError("parallel", f"expected an integer >= 1, got {parallel!r}", "use --parallel 1 or more")
    if gpus_per_config is not None and (isinstance(gpus_per_config, bool) or gpus_per_config < 1):
        raise ConfigError(
            "gpus_per_config", f"expected an integer >= 1, got {gpus_per_config!r}", "use --gpus-per-config 1 or more"
        )
    if not gpus:
        if gpus_per_config is not None:
            raise ConfigError(
                "gpus_per_config",
                "no GPU is visible to this process (CUDA_VISIBLE_DEVICES / NVML)",
                "leave --gpus-per-config out, or run where GPUs are visible",
            )
        return [()] * (parallel or 1)
    if parallel is None and gpus_per_config is None:
        return [()]  # the default: one config at a time, seeing what the parent sees
    per_config = gpus_per_config or 1
    fitting = len(gpus) // per_config
    if fitting < 1:
        raise ConfigError(
            "gpus_per_config",
            f"{per_config} GPUs per config, but only {len(gpus)} visible",
            f"use --gpus-per-config {len(gpus)} or less",
        )
    slots = parallel if parallel is not None else fitting
    if slots > fitting:
        raise ConfigError(
            "parallel",
            f"{slots} configs at once need {slots * per_config} GPUs, {len(gpus)} are visible",
            f"use --parallel {fitting} or less (each config gets {per_config} GPU(s) of its own)",
        )
    return [tuple(gpus[slot * per_config : (slot + 1) * per_config]) for slot in range(slots)]


def local_slots(spec: SweepSpec, gpus: Sequence[str] | None = None) -> list[GpuSlot]:
    """The slots a local sweep runs configs in (``gpus``: the visible GPUs, found here when None)."""
    parallel = getattr(spec, "parallel", None)
    gpus_per_config = getattr(spec, "gpus_per_config", None)
    if spec.launcher == "inline" and (parallel not in (None, 1) or gpus_per_config is not None):
        raise ConfigError(
            "launcher", "the inline launcher runs one config at a time in this process", "drop --launcher inline"
        )
    needs_gpus = parallel not in (None, 1) or gpus_per_config is not None
    return gpu_slots(
        (visible_gpus() if gpus is None else gpus) if needs_gpus else [],
        parallel=parallel,
        gpus_per_config=gpus_per_config,
    )


def local_thread_plan(spec: SweepSpec, slots: Sequence[GpuSlot]) -> ThreadPlan | None:
    """The thread policy's count for these slots; None for the inline launcher (this process's own threads)."""
    threads = getattr(spec, "threads", None)
    if spec.launcher == "process":
        return local_plan(len(slots), threads, gpus=any(slots))
    if threads is not None:
        raise ConfigError("threads", "the inline launcher runs configs in this process", "drop --launcher inline")
    return None


def slot_environment(slot: GpuSlot) -> dict[str, str]:
    return {"CUDA_VISIBLE_DEVICES": ",".join(slot)} if slot else {}


class LocalExecutor:
    """Units on this machine: sequentially (one slot, in the calling thread) or one thread per slot."""

    name = "local"

    def __init__(
        self,
        make_launcher: LauncherFactory,
        slots: Sequence[GpuSlot] = ((),),
        thread_plan: ThreadPlan | None = None,
        threads: int | None = None,
    ) -> None:
        if not slots:
            raise ConfigError("parallel", "no slot to run configs in", "use --parallel 1 or more")
        self.slots = list(slots)
        # None: configs run in this process (inline), with its threads; else every child gets the plan's count,
        # for the configs that really run at once (fewer units than slots leave slots idle: see ``execute``).
        self.thread_plan = thread_plan
        self._threads = threads
        self._make_launcher = make_launcher
        self._launchers: list[Launcher] = []

    @classmethod
    def for_launcher(cls, launcher: Launcher) -> LocalExecutor:
        """Today's behaviour: this launcher, one unit at a time."""
        executor = cls(lambda environment: launcher)
        return executor

    @classmethod
    def for_spec(
        cls, spec: SweepSpec, *, gpus: Sequence[str] | None = None, **launcher_options: Any
    ) -> LocalExecutor:
        from tokbench.sweep.launchers import make_launcher

        slots = local_slots(spec, gpus)
        thread_plan = local_thread_plan(spec, slots)

        def launcher_for(environment: dict[str, str]) -> Launcher:
            options = dict(launcher_options)
            if spec.launcher == "process":
                options["child_environment"] = environment
            return make_launcher(
                spec.launcher, compile_cache=spec.compile_cache, start_method=spec.start_method, **options
            )

        return cls(launcher_for, slots, thread_plan, getattr(spec, "threads", None))

    def execute(self, units: Sequence[WorkUnit], deliver: Deliver) -> None:
        if self.thread_plan is not None and not self._launchers:
            at_once = max(1, min(len(self.slots), len(units)))
            self.thread_plan = local_plan(at_once, self._threads, gpus=any(self.slots))
        if len(self.slots) == 1:
            launcher = self._launcher(0)
            for unit in units:
                for item, result in self._run_unit(launcher, unit):
                    deliver(item, self._annotate(result, 0))
            return
        self._execute_parallel(units, deliver)

    def close(self) -> None:
        launchers, self._launchers = self._launchers, []
        for launcher in launchers:
            launcher.close()

    def __enter__(self) -> LocalExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _launcher(self, slot: int) -> Launcher:
        while len(self._launchers) <= slot:
            environment = slot_environment(self.slots[len(self._launchers)])
            if self.thread_plan is not None:
                environment.update(self.thread_plan.environment())
            self._launchers.append(self._make_launcher(environment))
        return self._launchers[slot]

    def _annotate(self, result: BenchmarkResult, slot: int) -> BenchmarkResult:
        launch = dataclasses.replace(result.launch, executor=self.name)
        if len(self.slots) > 1 or self.slots[slot]:
            gpus = tuple(str(gpu) for gpu in self.slots[slot])
            launch = dataclasses.replace(launch, parallel=len(self.slots), slot=slot, gpus=gpus)
        return dataclasses.replace(result, launch=launch)

    @staticmethod
    def _run_unit(launcher: Launcher, unit: WorkUnit) -> Iterator[tuple[WorkItem, BenchmarkResult]]:
        if len(unit.items) == 1:
            item = unit.items[0]
            yield item, launcher.launch(item.config, item.timeout_s)
            return
        results = launcher.launch_group(unit.configs, unit.timeouts_s)
        try:
            yield from zip(unit.items, results, strict=False)
        finally:
            results.close()  # an interrupted unit ends its worker now, not when collected

    def _execute_parallel(self, units: Sequence[WorkUnit], deliver: Deliver) -> None:
        todo: queue.Queue[WorkUnit] = queue.Queue()
        for unit in units:
            todo.put(unit)
        results: queue.Queue[tuple[WorkItem, BenchmarkResult] | BaseException | None] = queue.Queue()
        stop = threading.Event()
        launchers = [self._launcher(slot) for slot in range(len(self.slots))]

        def work(slot: int) -> None:
            try:
                while not stop.is_set():
                    try:
                        unit = todo.get_nowait()
                    except queue.Empty:
                        return
                    for item, result in self._run_unit(launchers[slot], unit):
                        if stop.is_set():
                            return
                        results.put((item, self._annotate(result, slot)))
            except BaseException as error:  # reported to the calling thread, which stops the others
                if not stop.is_set():
                    results.put(error)
            finally:
                results.put(None)

        threads = [
            threading.Thread(target=work, args=(slot,), name=f"tokbench-slot-{slot}", daemon=True)
            for slot in range(len(self.slots))
        ]
        for thread in threads:
            thread.start()
        running = len(threads)
        try:
            while running:
                try:
                    message = results.get(timeout=_RESULT_POLL_S)
                except queue.Empty:
                    continue
                if message is None:
                    running -= 1
                elif isinstance(message, BaseException):
                    raise message
                else:
                    deliver(*message)
        except BaseException:
            stop.set()
            for launcher in launchers:
                launcher.abort()
            for thread in threads:
                thread.join(_JOIN_S)
            raise
