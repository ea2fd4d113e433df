"""The torch-free data model: the generic serializer, old results loading, the JSON Schema, real runs."""

from __future__ import annotations

import dataclasses
import enum
import json
import subprocess
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import jsonschema
import pytest

from tokbench.errors import ResultFormatError
from tokbench.schema.environment import EnvironmentRecord, GitState, NvmlFacts
from tokbench.schema.json_schema import result_json_schema, result_json_schema_text
from tokbench.schema.records import LaunchRecord
from tokbench.schema.results import BenchmarkResult, load_result, save_result
from tokbench.schema.serde import Record, from_data, to_data

DATA = Path(__file__).parents[1] / "data"
REPO = Path(__file__).parents[2]
FIXTURES = ("result-v1.json", "result-v2.json", "result-v2-int4.json")
CURRENT_FIXTURES = ("result-v2.json", "result-v2-int4.json")  # written by this schema version (2)


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@dataclass(frozen=True)
class Inner(Record):
    count: int
    ratio: float | None = None


@dataclass(frozen=True)
class Outer(Record):
    name: str
    inner: Inner
    inners: tuple[Inner, ...] = ()
    pair: tuple[int, str] | None = None
    columns: dict[str, tuple[float | int | None, ...]] = field(default_factory=dict)
    colour: Colour = Colour.RED
    extra: Any = None

    SERIALIZED_PROPERTIES: ClassVar[tuple[str, ...]] = ("size",)

    @property
    def size(self) -> int:
        return len(self.inners)


@dataclass(frozen=True)
class Sparse(Record):
    OMIT_NONE = True

    first: int | None = None
    second: str | None = None


def test_generic_round_trip_keeps_types_nesting_and_derived_keys() -> None:
    value = Outer(
        name="x",
        inner=Inner(3, 0.5),
        inners=(Inner(1), Inner(2, 2.0)),
        pair=(7, "seven"),
        columns={"a": (1, 2.5, None)},
        colour=Colour.BLUE,
        extra={"free": [1, "form"]},
    )
    data = json.loads(json.dumps(value.to_dict()))
    assert data["size"] == 2 and data["colour"] == "blue" and data["pair"] == [7, "seven"]
    back = Outer.from_dict(data)  # the derived "size" key is ignored on load
    assert back == value
    assert type(back.columns["a"][0]) is int and type(back.columns["a"][1]) is float  # ints stay ints


def test_a_field_added_with_a_default_loads_old_data_and_unknown_keys_are_ignored() -> None:
    old = {"count": 1}  # written before `ratio` existed
    assert Inner.from_dict(old) == Inner(1, None)
    assert Inner.from_dict({"count": 1, "from_a_newer_minor_version": True}) == Inner(1)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "x"}, "Outer: the field 'inner' is missing"),
        ({"name": "x", "inner": {"count": "3"}}, "Outer.inner.count: expected an integer, got '3'"),
        ({"name": "x", "inner": {"count": True}}, "Outer.inner.count: expected an integer, got True"),
        ({"name": "x", "inner": {"count": 1}, "inners": [{"count": 1.5}]}, "Outer.inners[0].count"),
        ({"name": "x", "inner": {"count": 1}, "pair": [1, 2, 3]}, "Outer.pair: "),
        ({"name": "x", "inner": {"count": 1}, "colour": "green"}, "Outer.colour: expected one of"),
        ({"name": 5, "inner": {"count": 1}}, "Outer.name: expected a string, got 5"),
    ],
)
def test_bad_data_is_a_result_format_error_naming_the_path(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ResultFormatError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Outer.from_dict(data)


def test_sparse_records_write_only_what_is_set_and_nan_becomes_null() -> None:
    assert Sparse().to_dict() == {} and Sparse(first=1).to_dict() == {"first": 1}
    assert Sparse.from_dict({}) == Sparse()
    assert to_data(Inner(1, float("nan"))) == {"count": 1, "ratio": None}
    assert from_data(tuple[int, ...], [1, 2]) == (1, 2)
    assert not LaunchRecord() and LaunchRecord(launcher="inline")


@pytest.mark.parametrize("name", FIXTURES)
def test_stored_results_load_with_their_hash_and_round_trip(name: str, tmp_path: Path) -> None:
    stored = json.loads((DATA / name).read_text())
    result = load_result(DATA / name)  # load_result also checks the stored config_hash
    assert result.config_hash == stored["config_hash"]
    again = load_result(save_result(result, tmp_path / "again.json"))
    assert again == result
    if name in CURRENT_FIXTURES:  # written by this schema version: re-serializing changes nothing else at all
        rewritten = json.loads((tmp_path / "again.json").read_text())
        # Fields added since the fixture was written (issue 11: grad mode, workload key; issue 14: shared loads)
        # appear with the values that say what the old run was; nothing else may differ.
        assert rewritten.pop("workload_key") == result.workload_key
        assert rewritten.pop("output_fingerprint") is None  # issue 12: absent from results before it
        assert rewritten.pop("serving") is None  # issue 22: only serving runs have it
        assert rewritten.pop("interference") is None  # issue 25: busy-machine detection, not assessed then
        tuning = (rewritten.get("quantization") or {}).get("tuning") or {}
        assert all(entry.pop("confidence") is None for entry in tuning.get("entries", []))  # issue 25: pick confidence
        assert rewritten["config"].pop("grad_mode") == "no_grad" == rewritten["effective_settings"].pop("grad_mode")
        assert rewritten["phases"]["load"].pop("shared") is False and rewritten["phases"]["load"].pop("shared_by") == 1
        assert rewritten == stored
        added = ("workload_key", "output_fingerprint", "serving", "interference")
        assert [key for key in result.to_dict() if key not in added] == list(stored)  # same keys, same order


def test_the_int4_fixture_reads_back_as_typed_records() -> None:
    result = load_result(DATA / "result-v2-int4.json")
    assert result.quantization.report is not None and result.quantization.report.layers_quantized > 0
    assert result.quantization.tuning is not None and result.quantization.tuning.entries
    assert result.effective_settings.quantization is not None and result.effective_settings.quantization.kernels
    assert result.model_source.kind == "preset" and result.monitor is not None and result.efficiency is not None
    assert result.profile is not None and result.profile.tokens == 2


def test_the_environment_is_a_typed_record_in_the_shape_results_always_had() -> None:
    stored = json.loads((DATA / "result-v2.json").read_text())["environment"]
    result = load_result(DATA / "result-v2.json")
    environment = result.environment
    assert isinstance(environment, EnvironmentRecord) and environment.cpu_count == 2 and environment.gpus == ()
    assert environment.git == GitState("fa5497512496c9423df7b68bd74b584a961c1f1c", dirty=True)
    assert environment.nvml == NvmlFacts(status=stored["nvml"]["status"])
    assert environment.to_dict() == stored  # nulls kept, keys of things that did not happen left out
    # a schema-1 result lacks later facts; a failed capture has nothing but its reason
    assert load_result(DATA / "result-v1.json").environment.nvml is None
    failed = EnvironmentRecord.from_dict({"capture_error": "RuntimeError: no driver", "captured_by": "parent"})
    assert failed.python is None and failed.commit is None
    assert {"capture_error", "captured_by"} <= set(failed.to_dict()) and "compat_warnings" not in failed.to_dict()
    # built from stored data (a mapping), a result holds the typed record
    rebuilt = dataclasses.replace(result, environment={**stored, "git": {"commit": "ab", "dirty": False}})
    assert rebuilt.environment.commit == "ab"
    tampered = {**json.loads((DATA / "result-v2.json").read_text()), "environment": {"cpu_count": "x"}}
    with pytest.raises(ResultFormatError, match=r"environment\.cpu_count: expected an integer"):
        BenchmarkResult.from_dict(tampered)


def test_a_tampered_result_fails_with_a_clear_message(tmp_path: Path) -> None:
    data = json.loads((DATA / "result-v2.json").read_text())
    data["phases"]["load"]["weights_ns"] = "slow"
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ResultFormatError, match=r"result\.phases\.load\.weights_ns: expected an integer"):
        load_result(path)


def test_the_checked_in_json_schema_is_the_generated_one() -> None:
    checked_in = (REPO / "docs" / "result.schema.json").read_text(encoding="utf-8")
    assert checked_in == result_json_schema_text(), "run: python scripts/export_result_schema.py"
    jsonschema.Draft202012Validator.check_schema(result_json_schema())


def test_the_schema_rejects_what_tokbench_would_not_write() -> None:
    validator = jsonschema.Draft202012Validator(result_json_schema())
    data = json.loads((DATA / "result-v2.json").read_text())
    assert not list(validator.iter_errors(data))
    broken = json.loads(json.dumps(data))
    broken["iterations"][0]["t0_ns"] = "soon"
    del broken["status"]
    errors = {error.message for error in validator.iter_errors(broken)}
    assert "'status' is a required property" in errors and any("'soon'" in message for message in errors)


def test_reading_and_recomputing_results_imports_no_torch() -> None:
    code = (
        "import sys\n"
        "from tokbench.schema.results import load_result\n"
        "from tokbench.analysis.summarize import recompute_summary\n"
        "from tokbench.schema.json_schema import result_json_schema\n"
        f"result = load_result({str(DATA / 'result-v2-int4.json')!r})\n"
        "assert recompute_summary(result) and result_json_schema()\n"
        "heavy = sorted(m for m in ('torch', 'transformers', 'tqdm', 'rich') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_every_record_in_a_result_is_a_serde_record() -> None:
    # A record class that bypassed the generic serializer would bring the hand-written pairs back.
    seen: set[type] = set()

    def walk(cls: type) -> None:
        if cls in seen or not dataclasses.is_dataclass(cls):
            return
        seen.add(cls)
        for hint in typing.get_type_hints(cls).values():
            for arg in _flatten(hint):
                walk(arg)

    walk(BenchmarkResult)
    assert {cls.__name__ for cls in seen if not issubclass(cls, Record)} == {"BenchmarkConfig"}
    assert len(seen) > 20


def _flatten(hint: Any) -> list[Any]:
    args = typing.get_args(hint)
    return [hint] if not args else [leaf for arg in args for leaf in _flatten(arg)]
