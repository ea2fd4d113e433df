"""One thread policy for every executor: the cores (or a Ray task's CPUs) divided among the configs at once."""

from __future__ import annotations

import pytest

from tokbench.errors import ConfigError
from tokbench.sweep.plan import SweepSpec
from tokbench.sweep.threads import THREADS_ENV, local_plan, ray_plan, usable_cores


def test_local_divides_the_cores_among_the_configs_at_once() -> None:
    assert local_plan(1, cores=8).threads == 8
    assert local_plan(2, cores=8).threads == 4
    assert local_plan(3, cores=8).threads == 2
    plan = local_plan(2, cores=2)
    assert plan.threads == 1 and plan.environment()[THREADS_ENV] == "1"
    assert plan.environment()["OMP_NUM_THREADS"] == "1"
    assert "2 cores / 2 configs at once" in plan.line()


def test_slots_times_threads_beyond_the_cores_is_refused_for_cpu_configs() -> None:
    with pytest.raises(ConfigError, match="--parallel 2 or less"):
        local_plan(3, cores=2)
    with pytest.raises(ConfigError, match="--threads 1 or less"):
        local_plan(2, threads=2, cores=2)
    assert local_plan(2, threads=1, cores=2).threads == 1


def test_gpu_slots_beyond_the_cores_are_allowed_with_a_loud_warning() -> None:
    plan = local_plan(8, cores=4, gpus=True)
    assert plan.threads == 1 and "take turns" in plan.warning
    assert local_plan(4, cores=8, gpus=True).warning == ""


def test_ray_uses_the_cpus_each_task_reserves() -> None:
    assert ray_plan(1.0).threads == 1
    assert ray_plan(4.0).threads == 4
    assert ray_plan(0.5).threads == 1  # a fractional reservation still runs one thread
    assert ray_plan(4.0, threads=2).threads == 2
    with pytest.raises(ConfigError, match="--cpus-per-config 4"):
        ray_plan(1.0, threads=4)


def test_the_sweep_file_and_flags_carry_threads() -> None:
    spec = SweepSpec.from_dict({"model": "tiny-llama", "threads": 2})
    assert spec.threads == 2
    with pytest.raises(ConfigError, match="threads"):
        SweepSpec.from_dict({"model": "tiny-llama", "threads": 0})
    assert usable_cores() >= 1
