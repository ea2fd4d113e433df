"""Config validation, defaults, hashing, and config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tokbench.config import BenchmarkConfig, load_config_file
from tokbench.errors import ConfigError


def test_defaults_match_the_documented_ones() -> None:
    config = BenchmarkConfig()
    assert (config.model, config.batch_size, config.sequence_length, config.new_tokens) == ("tiny-llama", 1, 128, 128)
    assert (config.dtype, config.attn_implementation, config.compile_mode) == ("bfloat16", "sdpa", None)
    assert (config.static_cache, config.kernels, config.device) == (False, False, "auto")
    assert (config.warmup_iterations, config.measurement_iterations, config.monitor) == ("auto", "auto", True)
    assert (config.warmup_min_iterations, config.warmup_max_iterations, config.warmup_budget_s) == (5, 50, 30.0)
    assert (config.measurement_min_iterations, config.measurement_max_iterations) == (10, 500)
    assert (config.measurement_budget_s, config.target_relative_precision) == (15.0, 0.01)
    assert config.monitor_interval_ms == 50
    assert config.name == "tiny-llama-sdpa-bfloat16-b1-s128-n128"


@pytest.mark.parametrize(
    ("fields", "field_name", "fix_words"),
    [
        ({"batch_size": 0}, "batch_size", "at least 1"),
        ({"new_tokens": 1}, "new_tokens", "at least 2"),
        ({"attn_implementation": "flash"}, "attn_implementation", "sdpa"),
        ({"dtype": "int8"}, "dtype", "bfloat16"),
        ({"compile_mode": "fast"}, "compile_mode", "max-autotune"),
        ({"device": "tpu:x"}, "device", "auto"),
        ({"sequence_length": "128"}, "sequence_length", "at least 1"),
        ({"static_cache": "yes"}, "static_cache", "boolean"),
        ({"batch_size": True}, "batch_size", "at least 1"),
        ({"device": 0}, "device", "quote"),
        ({"name": 5}, "name", "quote"),
        ({"warmup_iterations": "steady"}, "warmup_iterations", "auto"),
        ({"measurement_iterations": 0}, "measurement_iterations", "auto"),
        ({"warmup_min_iterations": 1}, "warmup_min_iterations", "2 or more"),
        ({"measurement_min_iterations": 30, "measurement_max_iterations": 20}, "measurement_max_iterations", "min"),
        ({"warmup_budget_s": 0}, "warmup_budget_s", "seconds"),
        ({"measurement_budget_s": float("nan")}, "measurement_budget_s", "seconds"),
        ({"target_relative_precision": 1.5}, "target_relative_precision", "0.01"),
        ({"target_relative_precision": "1%"}, "target_relative_precision", "0.01"),
        ({"monitor_interval_ms": 0}, "monitor_interval_ms", "1 ms or more"),
    ],
)
def test_invalid_values_raise_an_error_naming_field_and_fix(
    fields: dict[str, object], field_name: str, fix_words: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        BenchmarkConfig(**fields)  # type: ignore[arg-type]
    assert caught.value.field == field_name
    assert str(caught.value).startswith(f"{field_name}:")
    assert fix_words in caught.value.fix


def test_compile_turns_the_static_cache_on_and_the_name_says_so() -> None:
    config = BenchmarkConfig(compile_mode="default")
    assert config.static_cache is True
    assert config.name.endswith("compile-default")


def test_config_hash_is_stable_and_ignores_the_name() -> None:
    config = BenchmarkConfig()
    # Golden value: a change here changes every stored result's identity; bump the hash version instead.
    # (Changed deliberately when warmup and measurement became "auto" by default, and when measuring under
    # inference_mode became the default: the no_grad configs below keep the identities they had before.)
    assert config.config_hash == "cd90a9a5620cce96"
    assert BenchmarkConfig(grad_mode="no_grad").config_hash == "897392772f586067"
    # the seeds' fixed plan, asked for explicitly, keeps the identity it had before "auto" existed
    fixed = BenchmarkConfig(warmup_iterations=5, measurement_iterations=20, grad_mode="no_grad")
    assert fixed.config_hash == "f38275d0b4dc208a"
    assert BenchmarkConfig(target_relative_precision=0.02).config_hash != config.config_hash
    assert BenchmarkConfig(name="my run").config_hash == config.config_hash
    assert BenchmarkConfig(batch_size=2).config_hash != config.config_hash
    assert BenchmarkConfig(profile_tokens=8).config_hash == config.config_hash


def test_round_trip_and_unknown_fields() -> None:
    config = BenchmarkConfig(batch_size=4, compile_mode="max-autotune", name="x")
    assert BenchmarkConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ConfigError, match="unknown config field"):
        BenchmarkConfig.from_dict({"batchsize": 4})


def test_replace_derives_the_name_again_unless_it_was_given() -> None:
    assert BenchmarkConfig().replace(batch_size=4).name == "tiny-llama-sdpa-bfloat16-b4-s128-n128"
    assert BenchmarkConfig(name="mine").replace(batch_size=4).name == "mine"


def test_yaml_and_json_files(tmp_path: Path) -> None:
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("batch_size: 4\nattn_implementation: eager\n")
    assert load_config_file(yaml_file) == {"batch_size": 4, "attn_implementation": "eager"}
    json_file = tmp_path / "c.json"
    json_file.write_text('{"new_tokens": 8}')
    assert load_config_file(json_file) == {"new_tokens": 8}


def test_yaml_is_loaded_safely(tmp_path: Path) -> None:
    hostile = tmp_path / "c.yaml"
    hostile.write_text("model: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config_file(hostile)
    with pytest.raises(ConfigError, match="no such file"):
        load_config_file(tmp_path / "missing.yaml")
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config_file(listing)
