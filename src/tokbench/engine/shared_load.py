"""Measure several configs on one model load (a load group of ``sweep.grouping``).

The model and tokenizer are loaded once, for the group's first config, with ``loading.load`` (each
phase timed as usual); every config is then measured by ``runner.run(config, model, tokenizer)``, the
runner's path for a ready-made model, which checks the model matches the config. Each result still
gets a full load record: the shared load's timings, marked ``shared`` with the number of configs that
shared it, and the real model source (not "provided"). If the shared load itself fails, every config
runs alone (``runner.run(config)``), so each gets the very result (skipped or failed, with its reason)
it would have got without sharing.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from tokbench.clock import Clock, monotonic_ns
from tokbench.config import BenchmarkConfig
from tokbench.engine.loading import LoadedModel, TokenizerCache, load
from tokbench.engine.runner import run
from tokbench.schema.results import BenchmarkResult


def measure_group(
    configs: Sequence[BenchmarkConfig],
    *,
    on_start: Callable[[int], None] | None = None,
    tokenizers: TokenizerCache | None = None,
    clock: Clock = monotonic_ns,
    progress: bool = False,
    **run_options: Any,
) -> Iterator[BenchmarkResult]:
    """The results of ``configs``, in order, each as soon as it exists, measured on one load.

    ``on_start(i)`` is called before config i starts (the shared load counts as config 0's).
    """
    tokenizers = tokenizers if tokenizers is not None else TokenizerCache()
    if not configs:
        return
    if on_start is not None:
        on_start(0)
    shared: LoadedModel | None
    try:
        shared = load(configs[0], tokenizers, clock=clock) if len(configs) > 1 else None
    except Exception:  # whatever it was, each config's own run reports it the way it always does
        shared = None
    for index, config in enumerate(configs):
        if index > 0 and on_start is not None:
            on_start(index)
        if shared is None:
            yield run(config, tokenizers=tokenizers, clock=clock, progress=progress, **run_options)
        else:
            result = run(config, shared.model, shared.tokenizer, clock=clock, progress=progress, **run_options)
            yield _as_shared(result, shared, len(configs))


def _as_shared(result: BenchmarkResult, shared: LoadedModel, configs: int) -> BenchmarkResult:
    """The result of a config run on the shared model, with the shared load's record instead of an empty one."""
    load_record = dataclasses.replace(shared.timings, shared=True, shared_by=configs)
    return dataclasses.replace(
        result,
        phases=dataclasses.replace(result.phases, load=load_record),
        model_source=shared.source.to_dict() if result.model_source else result.model_source,
    )
