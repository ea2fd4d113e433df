"""Executors decide where a sweep's configs run: on this machine (``local``, one at a time or one isolated
process per slot of GPUs), or on a Ray cluster (``ray``). Whatever the executor, every config runs in the
same isolated worker (``tokbench.sweep.worker`` through a ``ProcessLauncher``: timeouts, crash capture,
compile cache isolation, launch record), and every result comes back to the caller's thread through
``deliver``: only the driver writes the store.

The unit of work is a ``WorkUnit``: the configs of one load group (``sweep.grouping``), measured by one
worker that loads the model once (a single config is a unit of one).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Generator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from tokbench.config import BenchmarkConfig
from tokbench.errors import ConfigError
from tokbench.schema.results import BenchmarkResult
from tokbench.sweep.grouping import load_groups
from tokbench.sweep.plan import SweepPlan, SweepSpec
from tokbench.sweep.threads import ThreadPlan, ray_plan

EXECUTOR_NAMES = ("local", "ray")


@dataclass(frozen=True)
class WorkItem:
    """One config × repeat to run, with its timeout."""

    config: BenchmarkConfig
    repeat_index: int
    timeout_s: float | None


@dataclass(frozen=True)
class WorkUnit:
    """Configs one worker measures in turn on one model load (one item: a load of its own)."""

    items: tuple[WorkItem, ...]

    @property
    def configs(self) -> tuple[BenchmarkConfig, ...]:
        return tuple(item.config for item in self.items)

    @property
    def timeouts_s(self) -> tuple[float | None, ...]:
        return tuple(item.timeout_s for item in self.items)


Deliver = Callable[[WorkItem, BenchmarkResult], None]


class Launcher(Protocol):
    """Where one config (or one load group's configs) runs: this process (``InlineLauncher``) or a fresh,
    isolated process (``ProcessLauncher``), see ``sweep.launchers``. An executor owns one launcher per slot and
    uses it from one thread at a time; ``abort`` alone may come from another thread."""

    name: str

    def launch(self, config: BenchmarkConfig, timeout_s: float | None = None) -> BenchmarkResult:
        """Run ``config``; whatever happens, a result comes back (a crash or timeout is a ``failed`` one)."""
        ...

    def launch_group(
        self, configs: Sequence[BenchmarkConfig], timeouts_s: Sequence[float | None]
    ) -> Generator[BenchmarkResult, None, None]:
        """One result per config, in order, each as soon as it exists, measured on one model load; closing the
        generator ends the worker."""
        ...

    def abort(self) -> None:
        """From another thread: end what runs now and start nothing more."""
        ...

    def close(self) -> None: ...


# Builds the launcher of one slot from the environment its children get (CUDA_VISIBLE_DEVICES...).
LauncherFactory = Callable[[dict[str, str]], Launcher]


@runtime_checkable
class Executor(Protocol):
    name: str

    def execute(self, units: Sequence[WorkUnit], deliver: Deliver) -> None:
        """Run every unit; call ``deliver`` in the calling thread once per item, as soon as its result exists.
        On KeyboardInterrupt (or any exception) it ends what still runs, then re-raises."""
        ...

    def close(self) -> None: ...


def work_units(
    plan: SweepPlan,
    *,
    repeat: int = 1,
    done: Collection[tuple[str, int]] = (),
    share_load: bool = True,
) -> tuple[list[WorkUnit], list[WorkItem]]:
    """The units to run (round after round of repeats) and the items left out because ``done`` holds them."""
    units: list[WorkUnit] = []
    resumed: list[WorkItem] = []
    for repeat_index in range(repeat):
        items = [WorkItem(planned.config, repeat_index, planned.timeout_s) for planned in plan.runnable]
        pending = [item for item in items if (item.config.config_hash, repeat_index) not in done]
        resumed.extend(item for item in items if (item.config.config_hash, repeat_index) in done)
        for group in load_groups([item.config for item in pending], share=share_load):
            units.append(WorkUnit(tuple(pending[index] for index in group.indexes)))
    return units, resumed


def open_executor(spec: SweepSpec, **launcher_options: Any) -> Executor:
    """The executor a sweep spec asks for (``executor``, ``parallel``, ``gpus_per_config``, ``ray_address``...)."""
    executor = getattr(spec, "executor", "local")
    if executor == "ray":
        if spec.launcher != "process":
            raise ConfigError("launcher", "the ray executor runs configs with the process launcher", "drop --launcher")
        from tokbench.sweep.executors.ray_cluster import RayExecutor

        return RayExecutor(
            address=spec.ray_address,
            compile_cache=spec.compile_cache,
            start_method=spec.start_method,
            gpus_per_config=spec.gpus_per_config,
            cpus_per_config=spec.cpus_per_config,
            threads=spec.threads,
        )
    from tokbench.sweep.executors.local import LocalExecutor

    return LocalExecutor.for_spec(spec, **launcher_options)


def planned_threads(spec: SweepSpec, units: int | None = None) -> tuple[ThreadPlan | None, int]:
    """The thread policy a sweep's executor will apply to ``units`` work units, and the slots it has (Ray: 1 per
    task), without starting anything: for the plan, ``--dry-run`` included. Fewer units than slots run fewer at
    once, and their processes get the cores of the idle slots too."""
    if getattr(spec, "executor", "local") == "ray":
        return ray_plan(1.0 if spec.cpus_per_config is None else float(spec.cpus_per_config), spec.threads), 1
    from tokbench.sweep.executors.local import local_slots, local_thread_plan

    slots = local_slots(spec)
    at_once = slots if units is None else slots[: max(1, min(len(slots), units))]
    return local_thread_plan(spec, at_once), len(slots)
