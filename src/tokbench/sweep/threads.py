"""One thread policy for every executor: a config's process runs torch on the CPUs reserved for it.

Locally that is the cores divided among the configs running at once (``--parallel``); on Ray it is the task's
``--cpus-per-config`` reservation (Ray's scheduler keeps the reservations of one node within its CPUs). A child
is told its count through ``TOKBENCH_TORCH_THREADS`` (and ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS`` for a spawned
interpreter, which reads them at import); the worker applies it with ``torch.set_num_threads`` before it loads
anything (a child forked after ``import torch`` would ignore the variables), and the launch record says so.

Why divide rather than leave torch's default (one thread per core in every process): two processes of 2 threads
each on 2 cores measured 10-40x slower than one, and stored ``ok``. ``--threads N`` overrides the count; a count
that, times the configs at once, exceeds the cores is refused before anything runs.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from tokbench.errors import ConfigError

THREADS_ENV = "TOKBENCH_TORCH_THREADS"


def usable_cores() -> int:
    """Cores torch would use by default here: physical cores, within this process's CPU affinity."""
    import psutil

    try:
        allowed = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        allowed = os.cpu_count() or 1
    physical = psutil.cpu_count(logical=False) or allowed
    return max(1, min(allowed, physical))


@dataclass(frozen=True)
class ThreadPlan:
    """Torch threads per config process, and why."""

    threads: int
    slots: int  # configs running at once on one machine (local), or 1 task's reservation (ray)
    cores: int  # cores of this machine (local) or the CPUs a Ray task reserves
    how: str  # the rule in words, for the plan output and the launch record
    warning: str = ""  # GPU slots beyond the cores: allowed (each mostly waits on its GPU), said loudly

    def environment(self) -> dict[str, str]:
        count = str(self.threads)
        return {THREADS_ENV: count, "OMP_NUM_THREADS": count, "MKL_NUM_THREADS": count}

    def line(self) -> str:
        return f"threads  {self.threads} torch thread(s) per config process: {self.how}"


def local_plan(slots: int, threads: int | None = None, cores: int | None = None, *, gpus: bool = False) -> ThreadPlan:
    """Threads for ``slots`` configs at once on this machine: the cores divided among them, or ``threads``.

    CPU configs that would share cores are refused. GPU slots (``gpus``) beyond the cores are allowed, since each
    process mostly waits on its own GPU, but the plan carries a warning: its host-side launches will queue.
    """
    cores = cores if cores is not None else usable_cores()
    if slots > cores and not gpus:
        raise ConfigError(
            "parallel",
            f"{slots} configs at once on {cores} cores would give each less than one core",
            f"use --parallel {cores} or less",
        )
    if threads is None:
        share = max(1, cores // slots)
        how = f"{cores} cores" + (f" / {slots} configs at once" if slots > 1 else " (all of them)")
        warning = ""
        if slots * share > cores:
            warning = (
                f"{slots} GPU configs at once on {cores} cores: their host threads take turns, which shows in TTFT "
                "and in small models' figures (fewer --gpus-per-config slots, or --parallel, avoids it)"
            )
        return ThreadPlan(share, slots, cores, how, warning)
    if slots * threads > cores:
        raise ConfigError(
            "threads",
            f"{slots} config(s) at once × {threads} threads = {slots * threads} threads on {cores} cores: "
            "they would take turns on the cores and every figure would be slower than the machine",
            f"use --threads {max(1, cores // slots)} or less, or fewer --parallel",
        )
    return ThreadPlan(threads, slots, cores, f"--threads {threads} ({slots} at once on {cores} cores)")


def ray_plan(cpus_per_config: float, threads: int | None = None) -> ThreadPlan:
    """Threads for a Ray task that reserves ``cpus_per_config`` CPUs: that many (at least 1), or ``threads``."""
    reserved = max(1, math.floor(cpus_per_config))
    if threads is None:
        return ThreadPlan(reserved, 1, reserved, f"the {cpus_per_config:g} CPU(s) each Ray task reserves")
    if threads > reserved:
        raise ConfigError(
            "threads",
            f"--threads {threads} exceeds the {cpus_per_config:g} CPU(s) each Ray task reserves: tasks on one node "
            "would take turns on its cores",
            f"use --cpus-per-config {threads} (or --threads {reserved})",
        )
    return ThreadPlan(threads, 1, reserved, f"--threads {threads} within the {cpus_per_config:g} CPU(s) reserved")


def apply_from_environment() -> int | None:
    """In a worker: set torch's thread count from ``TOKBENCH_TORCH_THREADS`` (before loading); the count, or None."""
    text = os.environ.get(THREADS_ENV)
    if not text:
        return None
    try:
        count = int(text)
    except ValueError:
        return None
    if count < 1:
        return None
    import torch

    torch.set_num_threads(count)
    return count
