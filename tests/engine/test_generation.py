"""time_generate on the real tiny model: a stamp per token, exact counts, injectable clock."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch

from tokbench.clock import FakeClock
from tokbench.config import BenchmarkConfig
from tokbench.engine.generation import GenerationTrace, TimestampStreamer, time_generate
from tokbench.engine.loading import LoadedModel, benchmark_mode, load
from tokbench.errors import GenerationError


@pytest.fixture(scope="module")
def loaded() -> Iterator[LoadedModel]:
    loaded = load(BenchmarkConfig(device="cpu", dtype="float32", batch_size=2, sequence_length=12, new_tokens=5))
    with benchmark_mode(loaded.model):
        yield loaded


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
    streamer = TimestampStreamer(clock=FakeClock(start_ns=100, step_ns=10))
    streamer.put(torch.zeros(2, 7, dtype=torch.long))  # the prompt
    streamer.put(torch.zeros(2, dtype=torch.long))
    streamer.put(torch.zeros(2, dtype=torch.long))
    streamer.end()
    assert streamer.step_timestamps_ns == [110, 120]


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
    # t0, the prompt's put, 5 token puts, then the end stamp: one tick of 1 ms each
    trace = _generate(loaded, clock=FakeClock(start_ns=0, step_ns=1_000_000))
    assert trace.t0_ns == 0
    assert trace.token_timestamps_ns[0] == (2_000_000, 3_000_000, 4_000_000, 5_000_000, 6_000_000)
    assert trace.end_ns == 7_000_000


def test_generation_does_not_stop_at_eos(loaded: LoadedModel) -> None:
    eos = loaded.tokenizer.eos_token_id

    def eos_always_wins(module: torch.nn.Module, args: object, logits: torch.Tensor) -> torch.Tensor:
        logits = logits.clone()
        logits[..., eos] = 1e4
        return logits

    handle = loaded.model.get_output_embeddings().register_forward_hook(eos_always_wins)
    try:
        # Control: with EOS enabled, every row stops after its first token.
        with_eos = copy.deepcopy(loaded.generation_config)
        with_eos.eos_token_id = eos
        stopped = loaded.model.generate(
            input_ids=loaded.inputs.input_ids,
            attention_mask=loaded.inputs.attention_mask,
            generation_config=with_eos,
        )
        assert stopped.shape[1] == loaded.inputs.sequence_length + 1
        # tokbench refuses to time a call that can stop at EOS...
        with pytest.raises(GenerationError, match="eos_token_id"):
            time_generate(loaded.model, loaded.inputs.input_ids, loaded.inputs.attention_mask, with_eos, 5)
        # ...and its own settings generate all 5 tokens although EOS is the argmax at every step.
        trace = _generate(loaded)
    finally:
        handle.remove()
    assert trace.generated_tokens == (5, 5)
    assert all(len(row) == 5 for row in trace.token_timestamps_ns)


def test_benchmark_mode_restores_the_model() -> None:
    loaded = load(BenchmarkConfig(device="cpu", dtype="float32", sequence_length=8, new_tokens=3))
    model = loaded.model
    model.train()
    own = model.generation_config
    own.repetition_penalty = 5.0
    with benchmark_mode(model):
        assert not model.training
        assert model.generation_config.repetition_penalty is None  # transformers' neutral default
        assert model.generation_config.eos_token_id is None
    assert model.training
    assert model.generation_config is own and own.repetition_penalty == 5.0


def test_a_wrong_token_count_is_an_error_not_a_number(loaded: LoadedModel) -> None:
    with pytest.raises(GenerationError, match="exactly 7 new tokens"):
        _generate(loaded, new_tokens=7)  # the generation config asks for 5
