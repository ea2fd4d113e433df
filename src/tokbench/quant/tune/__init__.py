"""Kernel autotuner for int4 ``QuantizedLinear`` layers, with an on-disk cache (its table: ``report.tuning``).

Modules: ``timing`` (round timers, round-robin measurement), ``selection`` (median / IQR, near-ties,
winner), ``cache`` (the on-disk cache), ``orchestration`` (``tune_model``).

What it tunes: for every unique layer shape, the kernel (and split_k) used at each ``M`` the model
will really run: ``M = batch * sequence_length`` (prefill) and ``M = batch`` (decode). llm-awq's
tuner timed ``M = 1`` only, which its GEMV path never split, so it never changed anything.

How it times (the practice of Triton's do_bench, torch.utils.benchmark and pyperf):

* every candidate is called once untimed (first-call costs); one that raises there is dropped with a
  CandidateRejectedWarning and its reason kept in the report. The untuned default is always timed too
  (as a baseline when it is not a candidate, it cannot win then) so the speedup is always measured;
* one timed round gives an estimate;
  the remaining budget picks the number of warmup rounds (~10 %) and timed rounds;
* candidates are interleaved round-robin, the starting candidate rotating each round, so clock drift
  and thermal or frequency changes spread over all candidates instead of biasing the last one;
* CUDA: events around each call and a single synchronize per round; elsewhere the injectable clock
  around each call (with a device synchronize on non-CPU devices);
* statistics: median and IQR per candidate, a warning when IQR / median > 0.1;
* the lowest median wins, unless another candidate is a near-tie, in which case the simplest of the
  tied candidates wins (:func:`tokbench.quant.kernels.simplicity_rank`). A near-tie is a median
  difference within ``max(1 % of the best median, 2 standard errors of the difference of medians)``,
  the standard error of a median estimated as ``0.93 * IQR / sqrt(n)`` (normal approximation:
  ``1.2533 * sigma / sqrt(n)`` with ``sigma = IQR / 1.349``). This is a noise-aware version of "within
  the IQR" that still separates candidates whose medians are well measured;
* every pick says how sure it is (``ShapeTuning.confidence``, :mod:`tokbench.analysis.picks`): clear (it beat
  the runner-up in its paired rounds, exact sign test p < 0.01), a measured tie, or noise (including timings in
  a busy CPU's time slices, or a machine found busy while timing by ``hardware.interference``).

Winners are cached as JSON, one file per key, keyed by everything that changes the answer (the kernel
code's :data:`tokbench.quant.kernels.KERNEL_REVISION` and the selection rule included); a noise pick is used
for the run and never cached (PickNotCachedWarning). ``cache_mode="refresh"`` (``tokbench tune --retune``,
``tokbench run --retune``, ``TOKBENCH_RETUNE=1``) times again and replaces the entries. An entry whose winner
cannot run the layer now, or whose candidates differ, is ignored with a TuningCacheWarning.
"""

from tokbench.quant.tune.cache import (
    CACHE_ENV_VAR,
    CACHE_SCHEMA_VERSION,
    TuningCache,
    TuningCacheWarning,
    cache_key,
    default_cache_dir,
    triton_version,
)
from tokbench.quant.tune.orchestration import (
    CACHE_MODES,
    CACHE_OFF,
    CACHE_REFRESH,
    CACHE_USE,
    RETUNE_ENV,
    CandidateRejectedWarning,
    PickNotCachedWarning,
    default_cache_mode,
    time_layer,
    tune_model,
    tuned_ms,
)
from tokbench.quant.tune.selection import (
    HIGH_DISPERSION,
    TIE_RELATIVE,
    HighDispersionWarning,
    candidate_timing,
    is_near_tie,
    pick_confidence,
    pick_winner,
    warn_dispersion,
)
from tokbench.quant.tune.timing import (
    ClockTimer,
    CudaEventTimer,
    RoundTimer,
    TuningError,
    default_timer,
    measure_round_robin,
    plan_rounds,
    round_robin_order,
)

__all__ = [
    "CACHE_ENV_VAR",
    "CACHE_MODES",
    "CACHE_OFF",
    "CACHE_REFRESH",
    "CACHE_SCHEMA_VERSION",
    "CACHE_USE",
    "HIGH_DISPERSION",
    "RETUNE_ENV",
    "TIE_RELATIVE",
    "CandidateRejectedWarning",
    "ClockTimer",
    "CudaEventTimer",
    "HighDispersionWarning",
    "PickNotCachedWarning",
    "RoundTimer",
    "TuningCache",
    "TuningCacheWarning",
    "TuningError",
    "cache_key",
    "candidate_timing",
    "default_cache_dir",
    "default_cache_mode",
    "default_timer",
    "is_near_tie",
    "measure_round_robin",
    "pick_confidence",
    "pick_winner",
    "plan_rounds",
    "round_robin_order",
    "time_layer",
    "triton_version",
    "tune_model",
    "tuned_ms",
    "warn_dispersion",
]
