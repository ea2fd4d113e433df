"""The continuous-batching backend: transformers' manager built once, every request submitted per iteration.

The manager's creation, sizing, warmup and start are ``setup`` (``ContinuousBatchingSetup``), timed once
before the validation call; the per-request stamps and checks live in ``engine.continuous``.
"""

from __future__ import annotations

from tokbench.clock import Clock
from tokbench.config import BenchmarkConfig
from tokbench.engine.continuous import ContinuousBatchingSession
from tokbench.engine.loading import LoadedModel
from tokbench.schema.records import ContinuousBatchingSetup, GenerationTrace


class ContinuousBatchingBackend:
    """A started ``ContinuousBatchingSession``; ``close`` stops the manager and restores the attention."""

    name = "continuous-batching"

    def __init__(self, session: ContinuousBatchingSession) -> None:
        self._session = session
        self.setup: ContinuousBatchingSetup | None = session.setup

    @classmethod
    def open(cls, loaded: LoadedModel, config: BenchmarkConfig, clock: Clock) -> ContinuousBatchingBackend:
        return cls(ContinuousBatchingSession.open(loaded, config, clock))

    def generate_once(self, *, decode_sample: bool = False, new_tokens: int | None = None) -> GenerationTrace:
        return self._session.generate_once(decode_sample=decode_sample, new_tokens=new_tokens)

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> ContinuousBatchingBackend:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
