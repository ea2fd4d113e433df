"""Varying prompt lengths: config forms, per-request metrics by hand, left-padded plain inputs."""

from __future__ import annotations

import argparse

import pytest

from tokbench.analysis.metrics import distinct_requests, per_request_samples, prefill_throughput
from tokbench.analysis.samples import sample_values
from tokbench.cli import build_parser, config_from_args, parse_sequence_length
from tokbench.config import BenchmarkConfig
from tokbench.errors import ConfigError
from tokbench.schema.records import GenerationTrace


def test_sequence_length_forms_and_hashes() -> None:
    uniform = BenchmarkConfig(batch_size=3, sequence_length=[4, 9, 24])
    assert uniform.sequence_length == (4, 9, 24) and uniform.prompt_lengths == (4, 9, 24)
    assert BenchmarkConfig.from_dict(uniform.to_dict()) == uniform
    assert uniform.to_dict()["sequence_length"] == [4, 9, 24]
    spec = {"distribution": "uniform", "min": 4, "max": 24, "seed": 3}
    sampled = BenchmarkConfig(batch_size=8, sequence_length=spec)
    assert sampled.prompt_lengths == BenchmarkConfig(batch_size=8, sequence_length=dict(spec)).prompt_lengths
    assert all(4 <= n <= 24 for n in sampled.prompt_lengths) and len(set(sampled.prompt_lengths)) > 1
    other_seed = BenchmarkConfig(batch_size=8, sequence_length={**spec, "seed": 4})
    assert other_seed.prompt_lengths != sampled.prompt_lengths
    assert other_seed.config_hash != sampled.config_hash
    # the int form and the new fields at their defaults keep the v1 hash (golden value of test_config)
    fixed = BenchmarkConfig(warmup_iterations=5, measurement_iterations=20, grad_mode="no_grad")
    assert fixed.config_hash == "f38275d0b4dc208a"
    assert BenchmarkConfig(batch_size=1, sequence_length=[128]).config_hash != BenchmarkConfig().config_hash


@pytest.mark.parametrize(
    ("fields", "field_name"),
    [
        ({"batch_size": 2, "sequence_length": [4, 8, 16]}, "sequence_length"),
        ({"batch_size": 2, "sequence_length": [4, 0]}, "sequence_length"),
        ({"sequence_length": {"distribution": "normal", "min": 1, "max": 4}}, "sequence_length"),
        ({"sequence_length": {"distribution": "uniform", "min": 9, "max": 4}}, "sequence_length"),
        ({"sequence_length": {"distribution": "uniform", "min": 1, "max": 4, "mean": 2}}, "sequence_length"),
        ({"cb_num_blocks": 8}, "cb_num_blocks"),
        ({"continuous_batching": True, "cb_page_size": 2}, "cb_page_size"),
        ({"continuous_batching": True, "compile_mode": "default"}, "compile_mode"),
        ({"continuous_batching": True, "static_cache": True}, "static_cache"),
    ],
)
def test_invalid_workloads_name_the_field(fields: dict[str, object], field_name: str) -> None:
    with pytest.raises(ConfigError) as error:
        BenchmarkConfig(**fields)  # type: ignore[arg-type]
    assert error.value.field == field_name


def test_cli_sequence_length_forms() -> None:
    assert parse_sequence_length("16") == 16
    assert parse_sequence_length("4,8,24") == [4, 8, 24]
    assert parse_sequence_length("uniform:4:24:7") == {"distribution": "uniform", "min": 4, "max": 24, "seed": 7}
    with pytest.raises(argparse.ArgumentTypeError):
        parse_sequence_length("4-24")
    args = build_parser().parse_args(
        ["run", "--batch-size", "2", "--sequence-length", "4,9", "--continuous-batching", "--cb-page-size", "16"]
    )
    config = config_from_args(args)
    assert (config.prompt_lengths, config.continuous_batching, config.cb_page_size) == ((4, 9), True, 16)


def _continuous_trace() -> GenerationTrace:
    # two requests submitted 1 ms apart; stamps in ns, hand-computable
    return GenerationTrace(
        t0_ns=1_000_000,
        end_ns=40_000_000,
        token_timestamps_ns=((10_000_000, 14_000_000, 18_000_000), (10_000_000, 14_000_000, 18_000_000)),
        prompt_tokens=(6, 20),
        generated_tokens=(3, 3),
        output_shape=(2, 23),
        request_submitted_ns=(1_000_000, 2_000_000),
        request_finished_ns=(30_000_000, 39_000_000),
    )


def test_continuous_batching_metrics_by_hand() -> None:
    trace = _continuous_trace()
    # rows with their own submission count separately even when their stamps coincide
    assert distinct_requests(trace) == [0, 1]
    samples = sample_values([trace])
    assert samples["ttft_ms"] == [9.0, 8.0]  # from each request's own submission
    assert samples["tpot_ms"] == [4.0, 4.0]
    assert samples["itl_ms"] == [4.0, 4.0, 4.0, 4.0]
    assert samples["e2e_latency_ms"] == [29.0, 37.0]  # submission to its result
    # real prompt tokens (26) over first submission -> last first token (9 ms)
    assert prefill_throughput(trace) == pytest.approx(26 / 0.009)
    assert samples["overall_throughput_tok_s"] == [pytest.approx(6 / 0.039)]
    rows = per_request_samples([trace, trace])
    assert [(r.row, r.prompt_tokens, r.ttft_ms) for r in rows] == [(0, 6, (9.0, 9.0)), (1, 20, (8.0, 8.0))]
    assert GenerationTrace.from_dict(trace.to_dict()) == trace


def test_lockstep_rows_still_count_once() -> None:
    trace = GenerationTrace(
        t0_ns=0,
        end_ns=10,
        token_timestamps_ns=((3, 5), (3, 5)),
        prompt_tokens=(4, 2),
        generated_tokens=(2, 2),
        output_shape=(2, 6),
    )
    assert distinct_requests(trace) == [0]
    assert sample_values([trace])["ttft_ms"] == [3 / 1_000_000]
    with pytest.raises(ValueError, match="entries"):
        GenerationTrace(0, 1, ((1, 2),), (1,), (2,), (1, 3), request_submitted_ns=(0, 0))
