"""The plain backend: one ``model.generate`` call per iteration, timed by the timestamp streamer.

Nothing to set up: the model, inputs and generation config come ready from ``engine.loading``. The timing
itself (synchronize, ``t0``, the streamer's per-step stamps, ``end``, the token-count checks) lives in
``engine.generation.time_generate``.
"""

from __future__ import annotations

import copy

from tokbench.clock import Clock
from tokbench.config import BenchmarkConfig
from tokbench.engine.generation import time_generate
from tokbench.engine.gradmode import run_grad_mode
from tokbench.engine.loading import LoadedModel
from tokbench.schema.records import ContinuousBatchingSetup, GenerationTrace


class PlainGenerateBackend:
    """``generate`` on the loaded model, all rows of the batch in one lockstep call."""

    name = "plain"

    def __init__(self, loaded: LoadedModel, config: BenchmarkConfig, clock: Clock) -> None:
        self._loaded = loaded
        self._config = config
        self._clock = clock
        self.setup: ContinuousBatchingSetup | None = None

    @classmethod
    def open(cls, loaded: LoadedModel, config: BenchmarkConfig, clock: Clock) -> PlainGenerateBackend:
        return cls(loaded, config, clock)

    def generate_once(self, *, decode_sample: bool = False, new_tokens: int | None = None) -> GenerationTrace:
        loaded = self._loaded
        generation_config = loaded.generation_config
        tokens = self._config.new_tokens if new_tokens is None else new_tokens
        if tokens != generation_config.max_new_tokens:  # e.g. the profiled generation: a copy, never the shared one
            generation_config = copy.deepcopy(generation_config)
            generation_config.max_new_tokens = tokens
        return time_generate(
            loaded.model,
            loaded.inputs.input_ids,
            loaded.inputs.attention_mask,
            generation_config,
            tokens,
            tokenizer=loaded.tokenizer,
            clock=self._clock,
            decode_sample=decode_sample,
            grad_mode=run_grad_mode(self._config)[0],
        )

    def close(self) -> None:
        """Nothing was opened."""

    def __enter__(self) -> PlainGenerateBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
