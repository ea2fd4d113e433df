"""tokbench: trustworthy per-token generation benchmarks for transformers causal LMs."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tokbench.version import __version__

if TYPE_CHECKING:
    from tokbench.config import BenchmarkConfig
    from tokbench.schema.results import BenchmarkResult

__all__ = ["BenchmarkConfig", "BenchmarkResult", "__version__", "load_result", "run", "run_sweep"]


def run(config: BenchmarkConfig, model: Any = None, tokenizer: Any = None, **options: Any) -> BenchmarkResult:
    """Benchmark ``config``; pass an already-loaded ``model`` and ``tokenizer`` to skip loading.

    Never raises for a bad or unsupported config: the result's ``status`` and ``reason`` say why. Shows each
    stage's progress on stderr (bars on a terminal, a few lines otherwise) unless ``progress=False``; any
    ``engine.progress.ProgressHook`` may be passed instead. Other options: ``tokbench.engine.runner.run``'s.
    """
    from tokbench.config import require_config
    from tokbench.engine.runner import run as run_config

    if options.get("progress") is None:  # minutes of silence would look like a hang
        from tokbench.report.progress import RichProgress

        options["progress"] = RichProgress()
    return run_config(require_config(config, "tokbench.run"), model, tokenizer, **options)


def run_sweep(spec: Any, **options: Any) -> Any:
    """Run a sweep (a dict as in a sweep file, a ``SweepSpec``, or a sweep file's path) into the results store.

    Each config runs in its own process by default; see ``tokbench.sweep.runner.run_sweep`` for the options.
    Returns a ``SweepOutcome`` with every config's result and its run id in the store.
    """
    from tokbench.sweep.runner import run_sweep as run_sweep_spec

    return run_sweep_spec(spec, **options)


def load_result(path: Any) -> BenchmarkResult:
    """Read a result JSON written by ``tokbench run --output`` or ``save_result``."""
    from tokbench.schema.results import load_result as load

    return load(path)


def __getattr__(name: str) -> Any:
    # Lazy so `import tokbench` stays cheap (torch is imported only when needed).
    if name == "BenchmarkConfig":
        from tokbench.config import BenchmarkConfig

        return BenchmarkConfig
    if name == "BenchmarkResult":
        from tokbench.schema.results import BenchmarkResult

        return BenchmarkResult
    raise AttributeError(f"module 'tokbench' has no attribute {name!r}")
