"""time_generate on the real tiny model: a stamp per token, exact counts, injectable clock."""

from __future__ import annotations

import pytest
import torch

from tokbench.clock import FakeClock
from tokbench.config import BenchmarkConfig
from tokbench.errors import GenerationError
from tokbench.generation import GenerationTrace, TimestampStreamer, time_generate
from tokbench.loading import LoadedModel, load


@pytest.fixture(scope="module")
def loaded() -> LoadedModel:
    return load(BenchmarkConfig(device="cpu", dtype="float32", batch_size=2, sequence_length=12, new_tokens=5))


def _generate(loaded: LoadedModel, new_tokens: int = 5, **kwargs: object) -> GenerationTrace:
    return time_generate(
        loaded.model,
        loaded.inputs.input_ids,
        loaded.inputs.attention_mask,
        loaded.generation_config,
        new_tokens,
        tokenizer=loaded.tokenizer,
        **kwargs,  # type: ignore[arg-type]
    )


def test_streamer_skips_the_prompt_and_stamps_each_step() -> None:
    streamer = TimestampStreamer(batch_size=2, clock=FakeClock(start_ns=100, step_ns=10))
    streamer.put(torch.zeros(2, 7, dtype=torch.long))  # the prompt
    streamer.put(torch.zeros(2, dtype=torch.long))
    streamer.put(torch.zeros(2, dtype=torch.long))
    streamer.end()
    assert streamer.step_timestamps_ns == [110, 120]
    assert streamer.ended_ns == 130


def test_every_row_gets_exactly_new_tokens_stamps(loaded: LoadedModel) -> None:
    trace = _generate(loaded, decode_sample=True)
    assert trace.batch_size == 2
    assert all(len(row) == 5 for row in trace.token_timestamps_ns)
    assert trace.generated_tokens == (5, 5)
    assert trace.prompt_tokens == (12, 12)
    assert trace.output_shape == (2, 17)
    stamps = trace.token_timestamps_ns[0]
    assert trace.t0_ns < stamps[0] and list(stamps) == sorted(stamps) and stamps[-1] <= trace.end_ns
    assert all(isinstance(t, int) for t in stamps)
    assert GenerationTrace.from_dict(trace.to_dict()) == trace


def test_fake_clock_makes_timing_deterministic(loaded: LoadedModel) -> None:
    # t0, prompt put, 5 token puts, end() and the final end stamp: one tick of 1 ms each
    trace = _generate(loaded, clock=FakeClock(start_ns=0, step_ns=1_000_000))
    assert trace.t0_ns == 0
    assert trace.token_timestamps_ns[0] == (2_000_000, 3_000_000, 4_000_000, 5_000_000, 6_000_000)
    assert trace.end_ns == 8_000_000


def test_generation_does_not_stop_at_eos(loaded: LoadedModel) -> None:
    eos = loaded.tokenizer.eos_token_id
    head = loaded.model.get_output_embeddings()
    saved = head.weight.detach().clone()
    try:
        with torch.no_grad():
            head.weight.zero_()
            head.weight[eos] = 1.0  # EOS is now the argmax at every step
        trace = _generate(loaded)
    finally:
        with torch.no_grad():
            head.weight.copy_(saved)
    assert trace.generated_tokens == (5, 5)


def test_a_wrong_token_count_is_an_error_not_a_number(loaded: LoadedModel) -> None:
    with pytest.raises(GenerationError, match="exactly 7 new tokens"):
        _generate(loaded, new_tokens=7)  # the generation config asks for 5
