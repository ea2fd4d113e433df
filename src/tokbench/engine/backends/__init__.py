"""Generation backends: how one timed generation of the config's requests is made.

Every backend is opened once per run (its setup, if it has one, is timed as its own phase and never
inside an iteration), then ``generate_once`` is called for the validation call, every warmup and
measured iteration and the profiled generation, each returning a ``GenerationTrace`` whose stamps
follow the timing rules of docs/architecture.md; ``close`` releases what ``open`` built. The runner
only sees this protocol, so another engine or a serving endpoint is one new module here plus a line
in ``open_backend``.

- ``plain``: one ``model.generate`` call with the timestamp streamer (``engine.generation``);
- ``continuous``: transformers' continuous-batching manager (``engine.continuous``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tokbench.clock import Clock
    from tokbench.config import BenchmarkConfig
    from tokbench.engine.loading import LoadedModel
    from tokbench.schema.records import ContinuousBatchingSetup, GenerationTrace


class GenerationBackend(Protocol):
    """An opened backend: ``generate_once`` as often as needed, then ``close`` (also as a context manager)."""

    name: str
    # The timed one-off setup (continuous batching's manager); None for a backend without one.
    setup: ContinuousBatchingSetup | None

    def generate_once(self, *, decode_sample: bool = False, new_tokens: int | None = None) -> GenerationTrace:
        """One timed generation of every request: ``new_tokens`` each (default: the config's), exactly.

        ``decode_sample`` keeps row 0's generated ids and text (the validation call does).
        """
        ...

    def close(self) -> None: ...

    def __enter__(self) -> GenerationBackend: ...

    def __exit__(self, *exc_info: object) -> None: ...


def backend_name(config: BenchmarkConfig) -> str:
    """The backend ``config`` runs on (what a failure of its setup is called)."""
    return "continuous-batching" if config.continuous_batching else "plain"


def open_backend(loaded: LoadedModel, config: BenchmarkConfig, clock: Clock) -> GenerationBackend:
    """Open the backend ``config`` asks for; raises ``UnavailableFeatureError`` where it cannot run here."""
    if config.continuous_batching:
        from tokbench.engine.backends.continuous import ContinuousBatchingBackend

        return ContinuousBatchingBackend.open(loaded, config, clock)
    from tokbench.engine.backends.plain import PlainGenerateBackend

    return PlainGenerateBackend.open(loaded, config, clock)
