"""The torch-free data model: the generic serializer, old results loading, the JSON Schema, real runs."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema

import tokbench
from tokbench.config import BenchmarkConfig
from tokbench.schema.json_schema import result_json_schema
from tokbench.schema.results import BenchmarkResult

DATA = Path(__file__).parents[1] / "data"
REPO = Path(__file__).parents[2]
FIXTURES = ("result-v1.json", "result-v2.json", "result-v2-int4.json")
CURRENT_FIXTURES = ("result-v2.json", "result-v2-int4.json")  # written by this schema version (2)


def test_fresh_results_of_a_real_run_validate_against_the_schema(fast_config_fields: dict[str, object]) -> None:
    validator = jsonschema.Draft202012Validator(result_json_schema())
    ok = tokbench.run(BenchmarkConfig(**fast_config_fields), progress=False, device_warmup_s=0.01)  # type: ignore[arg-type]
    assert ok.ok, ok.reason
    skipped = tokbench.run(BenchmarkConfig(**{**fast_config_fields, "kernels": True}), progress=False)  # type: ignore[arg-type]
    assert skipped.status == "skipped"
    for result in (ok, skipped):
        data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
        assert not [error.message for error in validator.iter_errors(data)]
        assert BenchmarkResult.from_dict(data) == result
