"""``tokbench run`` and ``tokbench tune``: one configuration, measured (or its int4 kernels tuned) here."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokbench.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE
from tokbench.cli.flags import add_config_flags, config_overrides
from tokbench.config import BenchmarkConfig, load_config_file
from tokbench.errors import ConfigError
from tokbench.text import terminal_safe

if TYPE_CHECKING:
    from tokbench.engine.quiet import HeldBack

# `tokbench tune` takes these config fields, with help that says what each means for tuning.
_TUNE_FIELDS = ("model", "batch_size", "sequence_length", "dtype", "device", "seed", "trust_remote_code")
_TUNE_HELP = {
    "batch_size": "batch size to tune for: decode M = batch",
    "sequence_length": "prompt length(s) to tune for, as in run: prefill M = batch × longest",
    "dtype": "activation dtype",
}


def add_run_parsers(commands: Any) -> None:
    run_parser = commands.add_parser(
        "run",
        help="benchmark one configuration and print its table",
        description=(
            "Load the model with exactly the given settings, make one validation call, warm up, measure, "
            "print a table of TTFT / TPOT / ITL / E2E / throughput and write the full result as JSON. "
            f"Exit codes: {EXIT_OK} ok, {EXIT_USAGE} invalid config, {EXIT_SKIPPED} skipped "
            f"(needs something this machine lacks), {EXIT_FAILED} failed, {EXIT_INTERRUPTED} / 143 interrupted by "
            "Ctrl-C / SIGTERM (what was measured is kept as an interrupted result)."
        ),
    )
    _add_run_arguments(run_parser)
    run_parser.set_defaults(handler=command_run)
    tune_parser = commands.add_parser(
        "tune",
        help="tune the int4 kernels of a model's quantized layers and print a table per shape",
        description=(
            "Quantize the model to int4, then for every unique layer shape and the row counts the model "
            "will run (prefill M = batch × sequence length, decode M = batch) time each kernel candidate "
            "round-robin and keep the fastest (ties within noise go to the simpler kernel). Winners are "
            "cached on disk ($TOKBENCH_CACHE_DIR/tuning, else ~/.cache/tokbench/tuning): a second run "
            "reuses them."
        ),
    )
    _add_tune_arguments(tune_parser)
    tune_parser.set_defaults(handler=command_tune)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", help="YAML or JSON file of config fields; flags given here override it")
    add_config_flags(parser)  # one flag per config field, from its declaration in config.py
    add(
        "--output",
        metavar="FILE.json",
        help="where to write the result JSON (default: tokbench-results/NAME-TIME.json)",
    )
    add("--no-progress", action="store_true", help="no progress bars")


def _add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", help="YAML or JSON file of config fields; flags given here override it")
    add_config_flags(parser, (*_TUNE_FIELDS, "group_size", "tune_budget_s"), help_overrides=_TUNE_HELP)
    add("--no-cache", action="store_true", help="time every candidate again; neither read nor write the cache")
    add("--output", metavar="FILE.json", help="also write the tuning report as JSON")


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    fields: dict[str, Any] = load_config_file(args.config) if args.config else {}
    fields.update(config_overrides(args))
    return BenchmarkConfig.from_dict(fields)


def command_tune(args: argparse.Namespace) -> int:
    import json

    from tokbench.engine.loading import benchmark_mode, load
    from tokbench.engine.quiet import libraries_quiet
    from tokbench.fileio import atomic_write_text
    from tokbench.quant.tune import tune_model
    from tokbench.report.terminal import make_console
    from tokbench.report.tuning import render_tuning_table

    args.quantization = "int4"
    try:
        # Tuned below (with --no-cache honoured), not by the loader; every kernel stays a candidate.
        config = config_from_args(args).replace(tune=False, quant_kernel="auto")
    except ConfigError as error:
        print(f"tokbench: invalid config: {error}", file=sys.stderr)
        return EXIT_USAGE
    with libraries_quiet():  # tokbench's own warnings (the tuner's) still reach the terminal
        loaded = load(config, reference_output=False)  # quantized, untuned: tuned below, with the cache flag applied
        with benchmark_mode(loaded.model):
            report = tune_model(
                loaded.model,
                config.batch_size,
                max(config.prompt_lengths),
                device=loaded.device,
                budget_s_per_shape=config.tune_budget_s,
                use_cache=not args.no_cache,
                prefill_rows=config.prefill_rows,
            )
    make_console().print(render_tuning_table(report))
    if args.output:
        atomic_write_text(args.output, json.dumps(report.to_dict(), indent=1, allow_nan=False))
        print(f"tuning report written to {args.output}")
    return EXIT_OK


def command_run(args: argparse.Namespace) -> int:
    from tokbench.engine.quiet import libraries_quiet

    try:
        config = config_from_args(args)
    except ConfigError as error:
        print(f"tokbench: invalid config: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE
    with libraries_quiet() as held:  # what the libraries say while importing and running goes into the result
        return _run_and_keep(args, config, held)


def _run_and_keep(args: argparse.Namespace, config: BenchmarkConfig, held: HeldBack) -> int:
    from tokbench.engine.profiling import trace_path_for
    from tokbench.engine.runner import RunInterrupted, run, with_library_output
    from tokbench.interrupts import interruptible, signals_deferred
    from tokbench.report.progress import RichProgress
    from tokbench.report.terminal import make_console, print_result
    from tokbench.results.outputs import OutputLocationError, plan_result_target

    try:
        target = plan_result_target(args.output, config.name)
    except OutputLocationError as error:
        print(f"tokbench: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE
    hook = None if args.no_progress else RichProgress()
    interrupted: RunInterrupted | None = None
    with interruptible():  # SIGTERM like Ctrl-C: the run stops and keeps what it measured
        try:
            result = run(config, progress=hook, profile_path=trace_path_for(target.planned_path))
        except RunInterrupted as stop:
            interrupted, result = stop, stop.result
        result = with_library_output(result, held, notes=False)  # the imports' messages too
        with signals_deferred():  # the table and the save are never cut in half by a signal
            print_result(result, make_console())
            written = _keep_result(result, target)
    if written is None:
        return EXIT_FAILED
    if interrupted is not None:
        reason = terminal_safe(result.reason, newlines=False)
        print(f"tokbench: {result.status}: {reason}; what was measured is in {written}", file=sys.stderr)
        return interrupted.exit_code
    if result.status == "ok":
        return EXIT_OK
    print(f"tokbench: {result.status}: {terminal_safe(result.reason, newlines=False)}", file=sys.stderr)
    return EXIT_SKIPPED if result.status == "skipped" else EXIT_FAILED


def _keep_result(result: Any, target: Any) -> Path | None:
    """Write the result as planned; if that fails now (disk full, folder gone), keep it elsewhere and say where."""
    from tokbench.results.outputs import keep_somewhere_safe, write_result_json

    data = result.to_dict()
    try:
        path = write_result_json(data, target)
    except OSError as error:
        kept, errors = keep_somewhere_safe(data, target.stem)
        where = f"kept it in {kept} instead" if kept else f"and no fallback took it ({'; '.join(errors)})"
        print(
            terminal_safe(f"tokbench: could not write the result to {target.planned_path}: "
                          f"{error.strerror or error}; {where}", newlines=False),
            file=sys.stderr,
        )  # fmt: skip
        return None
    print(terminal_safe(f"result written to {path}", newlines=False))
    return path
