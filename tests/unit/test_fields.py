"""Each config field declared once: flags, checks, plan defaults, levels, docs and hashes come from it."""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from tokbench.cli import build_parser, config_from_args
from tokbench.config import FIELD_DEFAULTS, FIELD_SPECS, GRAD_MODES, BenchmarkConfig
from tokbench.engine.policy import MeasurementPlan, WarmupPlan
from tokbench.errors import ConfigError
from tokbench.fields import FieldSpec, config_table_markdown, identity_role, spec_field
from tokbench.results.store import MIGRATIONS, ResultStore
from tokbench.schema.results import load_result, save_result
from tokbench.sweep.plan import LEVELS

FIXTURE_V1 = Path(__file__).parents[1] / "data" / "result-v1.json"
ROOT = Path(__file__).parents[2]

# The flags tokbench run had before the fields were declared once: none may disappear or change.
RUN_FLAGS = (
    "--model", "--batch-size", "--sequence-length", "--new-tokens", "--dtype", "--attn", "--compile",
    "--static-cache", "--kernels", "--device", "--warmup-iterations", "--warmup-min-iterations",
    "--warmup-max-iterations", "--warmup-budget-s", "--measurement-iterations", "--measurement-min-iterations",
    "--measurement-max-iterations", "--measurement-budget-s", "--target-precision", "--no-monitor",
    "--monitor-interval-ms", "--profile-tokens", "--continuous-batching", "--cb-page-size", "--cb-num-blocks",
    "--cb-max-batch-tokens", "--cb-max-requests-per-batch", "--quantization", "--group-size", "--quant-kernel",
    "--tune", "--tune-budget-s", "--seed", "--trust-remote-code", "--name", "--output", "--no-progress", "--config",
)  # fmt: skip


def _run_options() -> dict[str, Any]:
    parser = build_parser()
    run_parser = parser._subparsers._group_actions[0].choices["run"]  # type: ignore[union-attr]
    return {option: action for action in run_parser._actions for option in action.option_strings}


def test_every_field_has_one_declaration_and_a_flag() -> None:
    options = _run_options()
    assert set(RUN_FLAGS) <= set(options)
    for name, spec in FIELD_SPECS.items():
        action = options[spec.flag_name(name)]
        assert action.dest == name
        if spec.choices:
            assert tuple(action.choices) == spec.choices
        assert spec.help.split("(")[0].strip()[:20] in action.help.replace("%%", "%")


def test_flags_parse_to_the_same_config_as_before() -> None:
    args = build_parser().parse_args(
        ["run", "--attn", "eager", "--compile", "default", "--no-monitor", "--warmup-iterations", "auto",
         "--measurement-iterations", "7", "--target-precision", "0.02", "--sequence-length", "uniform:4:8:1",
         "--batch-size", "2", "--grad-mode", "no_grad"]
    )  # fmt: skip
    config = config_from_args(args)
    assert (config.attn_implementation, config.compile_mode, config.static_cache) == ("eager", "default", True)
    assert (config.monitor, config.warmup_iterations, config.measurement_iterations) == (False, "auto", 7)
    assert config.target_relative_precision == 0.02 and config.grad_mode == "no_grad"
    assert config.sequence_length == {"distribution": "uniform", "min": 4, "max": 8, "seed": 1}
    # a flag not given leaves a config file's value alone
    assert config_from_args(build_parser().parse_args(["run"])) == BenchmarkConfig()


def test_the_readme_table_is_the_generated_one() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    start, end = "<!-- config-table:start -->\n", "<!-- config-table:end -->"
    assert start in readme and end in readme
    table = readme[readme.index(start) + len(start) : readme.index(end)]
    assert table == config_table_markdown(BenchmarkConfig), "run python scripts/config_table.py --write"
    assert all(f"| `{name}` |" in table for name in FIELD_SPECS)


def test_plans_and_levels_take_the_declared_defaults_and_choices() -> None:
    assert (WarmupPlan().min_iterations, WarmupPlan().max_iterations, WarmupPlan().budget_s) == (
        FIELD_DEFAULTS["warmup_min_iterations"],
        FIELD_DEFAULTS["warmup_max_iterations"],
        FIELD_DEFAULTS["warmup_budget_s"],
    )
    plan = MeasurementPlan()
    assert (plan.min_iterations, plan.max_iterations, plan.budget_s, plan.target_relative_precision) == tuple(
        FIELD_DEFAULTS[name]
        for name in (
            "measurement_min_iterations",
            "measurement_max_iterations",
            "measurement_budget_s",
            "target_relative_precision",
        )
    )
    assert WarmupPlan.from_config(BenchmarkConfig()) == WarmupPlan()
    assert MeasurementPlan.from_config(BenchmarkConfig()) == MeasurementPlan()
    everything = LEVELS["everything"]
    attentions = FIELD_SPECS["attn_implementation"].choices
    modes = (None, *FIELD_SPECS["compile_mode"].choices)
    assert {entry["attn_implementation"] for entry in everything} == set(attentions)
    assert {entry["compile_mode"] for entry in everything} == set(modes)
    assert len(everything) == len(attentions) * len(modes) * 2 * 2


def test_declared_bounds_are_checked_with_a_fix() -> None:
    for name, spec in FIELD_SPECS.items():
        if spec.kind in ("int", "count") and spec.minimum is not None and not spec.choices:
            with pytest.raises(ConfigError) as caught:
                BenchmarkConfig(**{name: int(spec.minimum) - 1})  # type: ignore[arg-type]
            assert caught.value.field == name and caught.value.fix
        if spec.kind == "choice":
            with pytest.raises(ConfigError, match="unknown value") as caught:
                BenchmarkConfig(**{name: "no-such-choice"})  # type: ignore[arg-type]
            assert caught.value.field == name
    with pytest.raises(ConfigError, match="grad_mode"):
        BenchmarkConfig(grad_mode="enable_grad")
    with pytest.raises(ConfigError, match="tune_budget_s"):
        BenchmarkConfig(quantization="int4", tune_budget_s=601)


# --- hashes stay put when a default changes ---------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _LaterRelease(BenchmarkConfig):
    """BenchmarkConfig as a later release might declare it: three current defaults changed."""

    monitor_interval_ms: int = spec_field(100, FIELD_SPECS["monitor_interval_ms"])
    measurement_min_iterations: int = spec_field(20, FIELD_SPECS["measurement_min_iterations"])
    grad_mode: str = spec_field("no_grad", FIELD_SPECS["grad_mode"])


def test_changing_a_current_default_does_not_change_stored_hashes(tmp_path: Path) -> None:
    stored = json.loads(FIXTURE_V1.read_text())
    # schema 1: the fields it lacks take the default they were introduced with, whatever today's is
    assert BenchmarkConfig.from_stored_dict(stored["config"]).config_hash == stored["config_hash"]
    assert _LaterRelease.from_stored_dict(stored["config"]).config_hash == stored["config_hash"]
    # the fixture's config with every later field written out at its introduced default hashes the same
    introduced = {name: spec.introduced for name, spec in FIELD_SPECS.items() if not spec.in_v1}
    explicit = {**stored["config"], **introduced}
    assert BenchmarkConfig(**explicit).config_hash == stored["config_hash"]
    # schema 2: a result written today holds every field; a release with other defaults reads the same hash
    today = BenchmarkConfig(sequence_length=8, new_tokens=4, monitor_interval_ms=50, measurement_min_iterations=10)
    later = _LaterRelease(**today.to_dict())
    assert later.config_hash == today.config_hash
    assert _LaterRelease().config_hash != BenchmarkConfig().config_hash  # new defaults: a new measurement
    # the rule is "differs from the introduced default", never "differs from the current default"
    assert BenchmarkConfig(monitor_interval_ms=100).config_hash == _LaterRelease(grad_mode="inference_mode",
        measurement_min_iterations=10).config_hash  # fmt: skip


def test_results_stored_before_grad_mode_load_as_no_grad_and_stay_apart(tmp_path: Path) -> None:
    old = load_result(FIXTURE_V1)
    assert old.config.grad_mode == "no_grad" and old.effective_settings.grad_mode == "no_grad"
    now = BenchmarkConfig(**{**old.config.to_dict(), "grad_mode": "inference_mode"})
    assert now.config_hash != old.config_hash
    assert now.workload_key("cpu") != old.workload_key == old.config.workload_key("cpu")
    # written again by this version, it keeps its hash, key and grad mode
    again = load_result(save_result(old, tmp_path / "again.json"))
    assert again == old and json.loads((tmp_path / "again.json").read_text())["workload_key"] == old.workload_key


# --- workload key ------------------------------------------------------------------------------------

# A different value of every workload field (with what it needs to be valid).
_WORKLOAD_VARIANTS: dict[str, dict[str, Any]] = {
    "model": {"model": "small-llama"},
    "batch_size": {"batch_size": 2},
    "sequence_length": {"sequence_length": 64},
    "new_tokens": {"new_tokens": 64},
    "dtype": {"dtype": "float32"},
    "attn_implementation": {"attn_implementation": "eager"},
    "compile_mode": {"compile_mode": "default"},
    "static_cache": {"static_cache": True},
    "kernels": {"kernels": True},
    "device": {"device": "cuda"},
    "quantization": {"quantization": "int4"},
    "group_size": {"quantization": "int4", "group_size": 64},
    "quant_kernel": {"quantization": "int4", "quant_kernel": "native"},
    "tune": {"quantization": "int4", "tune": True},
    "continuous_batching": {"continuous_batching": True},
    "cb_page_size": {"continuous_batching": True, "cb_page_size": 32},
    "cb_num_blocks": {"continuous_batching": True, "cb_num_blocks": 64},
    "cb_max_batch_tokens": {"continuous_batching": True, "cb_max_batch_tokens": 64},
    "cb_max_requests_per_batch": {"continuous_batching": True, "cb_max_requests_per_batch": 1},
    "grad_mode": {"grad_mode": "no_grad"},
}
_POLICY_VARIANTS: dict[str, Any] = {
    "warmup_iterations": 3, "measurement_iterations": 9, "monitor": False, "monitor_interval_ms": 10,
    "profile_tokens": 4, "seed": 3, "trust_remote_code": True, "name": "mine", "warmup_min_iterations": 3,
    "warmup_max_iterations": 9, "warmup_budget_s": 5.0, "measurement_min_iterations": 3,
    "measurement_max_iterations": 99, "measurement_budget_s": 5.0, "target_relative_precision": 0.05,
}  # fmt: skip


def test_every_measured_field_changes_the_workload_key_and_no_policy_field_does() -> None:
    roles = {name: identity_role(spec) for name, spec in FIELD_SPECS.items()}
    assert set(_WORKLOAD_VARIANTS) == {name for name, role in roles.items() if role == "workload"}
    assert set(_POLICY_VARIANTS) | {"tune_budget_s"} == {name for name, role in roles.items() if role != "workload"}
    base = BenchmarkConfig()
    quantized, batched = BenchmarkConfig(quantization="int4"), BenchmarkConfig(continuous_batching=True)
    for name, changes in _WORKLOAD_VARIANTS.items():
        reference = quantized if name in ("group_size", "quant_kernel", "tune") else base
        reference = batched if name.startswith("cb_") else reference
        assert BenchmarkConfig(**changes).workload_key() != reference.workload_key(), name
    for name, value in _POLICY_VARIANTS.items():
        changed = BenchmarkConfig(**{name: value})
        assert changed.workload_key("cpu") == base.workload_key("cpu"), name
        if FIELD_SPECS[name].hashed:
            assert changed.config_hash != base.config_hash, name
    assert BenchmarkConfig(quantization="int4", tune_budget_s=9).workload_key() == quantized.workload_key()


def test_an_auto_device_is_keyed_by_the_kind_the_run_used() -> None:
    auto, cpu, cuda1 = BenchmarkConfig(), BenchmarkConfig(device="cpu"), BenchmarkConfig(device="cuda:1")
    assert auto.workload_key("cpu") == cpu.workload_key("cpu") == cpu.workload_key()
    assert auto.workload_key("cuda") == cuda1.workload_key("cuda:1") == BenchmarkConfig(device="cuda").workload_key()
    assert auto.workload_key("cpu") != auto.workload_key("cuda")
    assert auto.config_hash != cpu.config_hash  # the config hash keeps the device as asked


def test_the_store_backfills_workload_keys_of_older_rows(tmp_path: Path) -> None:
    db = tmp_path / "old.db"
    stored = FIXTURE_V1.read_text()
    connection = sqlite3.connect(db, isolation_level=None)
    for statement in MIGRATIONS[0]:  # a store as the previous version wrote it
        connection.execute(statement)
    connection.execute("PRAGMA user_version = 1")
    connection.execute(
        "INSERT INTO results (model, name, config_hash, status, reason, started_at, stored_at, result_json) "
        "VALUES ('tiny-llama', 'n', ?, 'ok', '', '', '', ?)",
        (json.loads(stored)["config_hash"], stored),
    )
    connection.execute(
        "INSERT INTO results (model, name, config_hash, status, reason, started_at, stored_at, result_json) "
        "VALUES ('x', 'n', 'h', 'ok', '', '', '', '{not json')"
    )
    connection.close()
    expected = load_result(FIXTURE_V1).workload_key
    before = db.read_bytes()
    with ResultStore(db, read_only=True) as store:  # a read command: keys computed on read, nothing written
        assert [run.workload_key for run in store.runs()] == [expected, None]
        assert [run.run_id for run in store.runs(workload_key=expected)] == [1]
        assert store.run(1).workload_key == expected and store.schema_version() == 1
    assert db.read_bytes() == before
    with ResultStore(db) as store:
        assert store.schema_version() == len(MIGRATIONS)
        runs = store.runs()
        assert [run.workload_key for run in runs] == [expected, None]
        assert [run.run_id for run in store.runs(workload_key=expected)] == [runs[0].run_id]
        new_id = store.add(load_result(FIXTURE_V1).__class__(config=BenchmarkConfig(device="cpu"), status="skipped"))
        assert store.run(new_id).workload_key == BenchmarkConfig(device="cpu").workload_key("cpu")
    indexes = sqlite3.connect(db).execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    assert ("results_workload_key",) in indexes


def test_a_spec_table_without_a_declaration_is_refused() -> None:
    from tokbench.fields import specs_of

    @dataclasses.dataclass(frozen=True)
    class Undeclared:
        value: int = 1

    with pytest.raises(TypeError, match="without a FieldSpec"):
        specs_of(Undeclared)
    assert isinstance(FIELD_SPECS["grad_mode"], FieldSpec) and FIELD_SPECS["grad_mode"].choices == GRAD_MODES
