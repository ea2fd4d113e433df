"""Sweep planning (expansion, levels, up-front skips, dedupe, ordering) and repeat variation: no child processes."""

from __future__ import annotations

import pytest

from tokbench.errors import ConfigError
from tokbench.sweep.plan import (
    LEVELS,
    SweepSpec,
    plan_sweep,
)

TINY = {"model": "tiny-llama", "sequence_length": 8, "new_tokens": 4, "device": "cpu"}


def test_lists_expand_to_the_cross_product() -> None:
    plan = plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": [1, 2, 4], "dtype": ["bfloat16", "float32"]}))
    pairs = {(config.batch_size, config.dtype) for config in plan.configs}
    assert pairs == {(b, d) for b in (1, 2, 4) for d in ("bfloat16", "float32")}
    assert len(plan.configs) == 6 and plan.duplicates == 0 and not plan.skipped


def test_groups_overlay_the_common_fields_and_carry_their_own_timeout() -> None:
    spec = SweepSpec.from_dict(
        {**TINY, "timeout_s": 100, "configs": [{"batch_size": [1, 2]}, {"model": "small-llama", "timeout_s": 5}]}
    )
    plan = plan_sweep(spec)
    assert [(p.config.model, p.config.batch_size, p.timeout_s) for p in plan.runnable] == [
        ("tiny-llama", 1, 100),
        ("tiny-llama", 2, 100),
        ("small-llama", 1, 5),
    ]


def test_duplicates_collapse_by_config_hash() -> None:
    # compile forces the static cache on, so static_cache false/true give one config when compiled.
    spec = SweepSpec.from_dict({**TINY, "compile_mode": "default", "static_cache": [False, True], "name": ["a", "b"]})
    plan = plan_sweep(spec)
    assert len(plan.runnable) == 1
    assert plan.duplicates == 3
    assert plan.runnable[0].config.name == "a"  # the first one wins


def test_configs_this_machine_cannot_run_are_listed_with_their_reason() -> None:
    plan = plan_sweep(SweepSpec.from_dict({**TINY, "attn_implementation": ["sdpa", "flash_attention_2"]}))
    assert [config.attn_implementation for config in plan.configs] == ["sdpa"]
    (skipped,) = plan.skipped
    assert skipped.config.attn_implementation == "flash_attention_2"
    assert "flash" in skipped.reason


def test_invalid_combinations_are_listed_and_unknown_fields_refused() -> None:
    plan = plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": [1, 0]}))
    assert [config.batch_size for config in plan.configs] == [1]
    (invalid,) = plan.invalid
    assert invalid.fields["batch_size"] == 0 and "batch_size" in invalid.reason
    with pytest.raises(ConfigError, match="batch_sise"):
        plan_sweep(SweepSpec.from_dict({**TINY, "batch_sise": [1, 2]}))
    with pytest.raises(ConfigError, match="empty list"):
        plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": []}))
    with pytest.raises(ConfigError, match="level"):
        SweepSpec.from_dict({**TINY, "level": "huge"})


def test_same_model_adjacent_and_compiled_configs_together_at_the_end_of_their_model() -> None:
    spec = SweepSpec.from_dict(
        {
            **TINY,
            "configs": [
                {"model": "tiny-llama", "compile_mode": "default"},
                {"model": "small-llama"},
                {"model": "tiny-llama", "batch_size": 2},
                {"model": "small-llama", "compile_mode": "default"},
                {"model": "tiny-llama", "compile_mode": "max-autotune-no-cudagraphs"},
                {"model": "tiny-llama", "compile_mode": "default", "batch_size": 2},
            ],
        }
    )
    order = [(c.model, c.compile_mode, c.batch_size) for c in plan_sweep(spec).configs]
    assert order == [
        ("tiny-llama", None, 2),
        ("tiny-llama", "default", 1),
        ("tiny-llama", "default", 2),
        ("tiny-llama", "max-autotune-no-cudagraphs", 1),
        ("small-llama", None, 1),
        ("small-llama", "default", 1),
    ]


def test_levels_grow_and_a_listed_value_restricts_them() -> None:
    sizes = {level: len(plan_sweep(SweepSpec.from_dict({**TINY, "level": level})).runnable) for level in LEVELS}
    totals = {
        level: len((plan := plan_sweep(SweepSpec.from_dict({**TINY, "level": level}))).runnable) + len(plan.skipped)
        for level in LEVELS
    }
    assert 0 < sizes["small"] <= sizes["thorough"] <= sizes["everything"]
    assert totals["small"] < totals["thorough"] < totals["everything"]
    only_eager = plan_sweep(SweepSpec.from_dict({**TINY, "level": "thorough", "attn_implementation": "eager"}))
    assert {config.attn_implementation for config in only_eager.configs} == {"eager"}
    assert {config.compile_mode for config in only_eager.configs} == {None, "default"}


def test_sweep_id_is_the_set_of_configs() -> None:
    one = plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": [1, 2]}))
    reordered = plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": [2, 1, 2], "timeout_s": 9}))
    other = plan_sweep(SweepSpec.from_dict({**TINY, "batch_size": [1, 3]}))
    assert one.sweep_id == reordered.sweep_id != other.sweep_id
