"""Load groups, work units and GPU slots: the pure planning of where and with what each config runs."""

from __future__ import annotations

import pytest

from tokbench.config import BenchmarkConfig
from tokbench.errors import ConfigError
from tokbench.sweep.executors import work_units
from tokbench.sweep.executors.local import gpu_slots, slot_environment, visible_gpus
from tokbench.sweep.grouping import NO_RELOAD_FIELDS, load_groups, load_key, share_refusal
from tokbench.sweep.plan import SweepSpec, plan_sweep

BASE = {"model": "tiny-llama", "device": "cpu", "sequence_length": 8, "new_tokens": 4}


def config(**fields: object) -> BenchmarkConfig:
    return BenchmarkConfig.from_dict({**BASE, **fields})


def test_configs_differing_only_in_workload_or_policy_share_a_load() -> None:
    shared = [
        config(batch_size=1),
        config(batch_size=8, sequence_length=32, new_tokens=16),
        config(continuous_batching=True, warmup_iterations=2, measurement_iterations=3, monitor=False),
        config(profile_tokens=4, name="named"),
    ]
    assert len({load_key(item) for item in shared}) == 1
    # Each of these needs its own load: different weights, dtype, attention, device or seed.
    for changed in ({"dtype": "float32"}, {"attn_implementation": "eager"}, {"seed": 1}, {"model": "small-llama"}):
        assert load_key(config(**changed)) != load_key(config())


@pytest.mark.parametrize(
    ("fields", "word"),
    [
        ({"compile_mode": "default"}, "compiled"),
        ({"static_cache": True}, "static cache"),
        ({"quantization": "int4"}, "quantized"),
    ],
)
def test_compiled_static_cache_and_quantized_configs_never_share(fields: dict[str, object], word: str) -> None:
    item = config(**fields)
    assert word in (share_refusal(item) or "")
    assert load_key(item) is None
    groups = load_groups([item, config(**fields, batch_size=2)])
    assert [group.indexes for group in groups] == [(0,), (1,)]


def test_a_field_the_grouping_does_not_know_counts_as_needing_a_reload() -> None:
    # Only the allow-list may differ inside a group: every other config field is part of the load key.
    reload_fields = {name for name in BenchmarkConfig.__dataclass_fields__ if name not in NO_RELOAD_FIELDS}
    assert {"model", "dtype", "attn_implementation", "kernels", "device", "seed", "trust_remote_code"} <= reload_fields


def test_groups_keep_the_order_of_their_first_config_and_share_false_gives_one_per_config() -> None:
    configs = [config(batch_size=1), config(attn_implementation="eager"), config(batch_size=2), config(batch_size=4)]
    groups = load_groups(configs)
    assert [group.indexes for group in groups] == [(0, 2, 3), (1,)]
    assert [group.shared for group in groups] == [True, False]
    assert [group.indexes for group in load_groups(configs, share=False)] == [(0,), (1,), (2,), (3,)]


def test_work_units_leave_out_what_is_stored_and_group_each_repeat_round() -> None:
    plan = plan_sweep(SweepSpec.from_dict({**BASE, "batch_size": [1, 2, 4]}), check=lambda config: None)
    stored = {(plan.runnable[1].config.config_hash, 0)}
    units, resumed = work_units(plan, repeat=2, done=stored)
    assert [item.config.batch_size for item in resumed] == [2]
    assert [[(item.config.batch_size, item.repeat_index) for item in unit.items] for unit in units] == [
        [(1, 0), (4, 0)],
        [(1, 1), (2, 1), (4, 1)],
    ]
    units, _ = work_units(plan, share_load=False)
    assert [len(unit.items) for unit in units] == [1, 1, 1]


def test_gpu_slots_keep_every_visible_gpu_busy_with_its_own_config() -> None:
    eight = [str(index) for index in range(8)]
    assert gpu_slots(eight, parallel=None, gpus_per_config=1) == [(str(index),) for index in range(8)]
    assert gpu_slots(eight, parallel=None, gpus_per_config=2) == [("0", "1"), ("2", "3"), ("4", "5"), ("6", "7")]
    assert gpu_slots(eight, parallel=3, gpus_per_config=None) == [("0",), ("1",), ("2",)]
    # 3 GPUs per config on 8: two slots, the last two GPUs idle (no config may straddle slots).
    assert gpu_slots(eight, parallel=None, gpus_per_config=3) == [("0", "1", "2"), ("3", "4", "5")]
    uuids = ["GPU-aaa", "GPU-bbb"]
    assert [slot_environment(slot) for slot in gpu_slots(uuids, parallel=2, gpus_per_config=None)] == [
        {"CUDA_VISIBLE_DEVICES": "GPU-aaa"},
        {"CUDA_VISIBLE_DEVICES": "GPU-bbb"},
    ]
    # No option: one config at a time, seeing every GPU the parent sees (today's behaviour).
    assert gpu_slots(eight, parallel=None, gpus_per_config=None) == [()]
    assert slot_environment(()) == {}


def test_gpu_slots_refuse_what_the_visible_gpus_cannot_give() -> None:
    with pytest.raises(ConfigError, match="--parallel 4 or less"):
        gpu_slots([str(index) for index in range(8)], parallel=5, gpus_per_config=2)
    with pytest.raises(ConfigError, match="only 2 visible"):
        gpu_slots(["0", "1"], parallel=None, gpus_per_config=4)
    with pytest.raises(ConfigError, match="no GPU is visible"):
        gpu_slots([], parallel=None, gpus_per_config=1)
    with pytest.raises(ConfigError, match="integer >= 1"):
        gpu_slots(["0"], parallel=0, gpus_per_config=None)
    # CPU only: N slots that only bound how many configs run at once.
    assert gpu_slots([], parallel=2, gpus_per_config=None) == [(), ()]


def test_visible_gpus_follow_cuda_visible_devices_else_the_device_count() -> None:
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 5,"}, count=lambda: 8) == ["2", "5"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}, count=lambda: 8) == []
    assert visible_gpus({}, count=lambda: 3) == ["0", "1", "2"]


def test_sweep_file_executor_options_are_checked() -> None:
    spec = SweepSpec.from_dict({**BASE, "executor": "ray", "ray_address": "auto", "gpus_per_config": 2})
    assert (spec.executor, spec.ray_address, spec.gpus_per_config, spec.share_load) == ("ray", "auto", 2, True)
    with pytest.raises(ConfigError, match="unknown executor"):
        SweepSpec.from_dict({**BASE, "executor": "slurm"})
    with pytest.raises(ConfigError, match="--parallel 1 or more"):
        SweepSpec.from_dict({**BASE, "parallel": 0})
    with pytest.raises(ConfigError, match="needs the ray executor"):
        SweepSpec.from_dict({**BASE, "ray_address": "auto"})
