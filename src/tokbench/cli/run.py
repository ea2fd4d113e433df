"""``tokbench run`` and ``tokbench tune``: one configuration, measured (or its int4 kernels tuned) here."""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tokbench.cli.common import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, db_help, usage_error
from tokbench.cli.flags import add_config_flags, config_overrides
from tokbench.config import BenchmarkConfig, load_config_file
from tokbench.errors import ConfigError, StoreError
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
    add(
        "--db",
        default=None,
        help=db_help() + "; the result is stored there too, so history, show, compare and regressions see it",
    )
    add("--no-store", action="store_true", help="write the result JSON only, not into the results store")
    add(
        "--retune",
        action="store_true",
        help="with --tune: time the int4 kernels again and replace their cached picks (also TOKBENCH_RETUNE=1)",
    )
    add("--no-progress", action="store_true", help="no progress bars")


def _add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", help="YAML or JSON file of config fields; flags given here override it")
    add_config_flags(parser, (*_TUNE_FIELDS, "group_size", "tune_budget_s"), help_overrides=_TUNE_HELP)
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument("--no-cache", action="store_true", help="time every candidate; neither read nor write the cache")
    cache.add_argument(
        "--retune",
        action="store_true",
        help="time every candidate again and replace the cached picks (a pick not separated from noise is not kept)",
    )
    add("--output", metavar="FILE.json", help="also write the tuning report as JSON")
    add("--force", action="store_true", help="let --output replace an existing plain file")


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    fields: dict[str, Any] = load_config_file(args.config) if args.config else {}
    fields.update(config_overrides(args))
    return BenchmarkConfig.from_dict(fields)


def command_tune(args: argparse.Namespace) -> int:
    import json

    from tokbench.engine.loading import benchmark_mode, load
    from tokbench.engine.quiet import libraries_quiet
    from tokbench.quant.tune import CACHE_OFF, CACHE_REFRESH, CACHE_USE, tune_model
    from tokbench.report.terminal import make_console
    from tokbench.report.tuning import confidence_lines, render_tuning_table, tuner_warning_lines
    from tokbench.results.outputs import OutputLocationError, check_output_file, write_output_text

    args.quantization = "int4"
    try:
        # Tuned below (with --no-cache honoured), not by the loader; every kernel stays a candidate.
        config = config_from_args(args).replace(tune=False, quant_kernel="auto")
    except ConfigError as error:
        print(f"tokbench: invalid config: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE
    output = None
    if args.output:  # checked before minutes of tuning, under the one output rule (never the config, a store...)
        try:
            output = check_output_file(args.output, inputs=[args.config] if args.config else [], force=args.force)
        except OutputLocationError as error:
            return usage_error(error)
    mode = CACHE_OFF if args.no_cache else CACHE_REFRESH if args.retune else CACHE_USE
    with libraries_quiet():  # tokbench's own warnings (the tuner's) are caught below and printed one line each
        loaded = load(config, reference_output=False)  # quantized, untuned: tuned below, with the cache flag applied
        with benchmark_mode(loaded.model), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = tune_model(
                loaded.model,
                config.batch_size,
                max(config.prompt_lengths),
                device=loaded.device,
                budget_s_per_shape=config.tune_budget_s,
                cache_mode=mode,
                prefill_rows=config.prefill_rows,
            )
    console = make_console()
    console.print(render_tuning_table(report))
    for line in confidence_lines(report):
        console.print(f"note: {line}")
    # the tuner's own words, one line each (not Python's file:line warning format)
    for line in tuner_warning_lines([str(warning.message) for warning in caught]):
        print(terminal_safe(f"tokbench: tuner: {line}", newlines=False), file=sys.stderr)
    if output is not None:
        write_output_text(output, json.dumps(report.to_dict(), indent=1, allow_nan=False))
        print(terminal_safe(f"tuning report written to {args.output}"))
    return EXIT_OK


def command_run(args: argparse.Namespace) -> int:
    from tokbench.engine.quiet import libraries_quiet
    from tokbench.quant.tune import RETUNE_ENV

    try:
        config = config_from_args(args)
    except ConfigError as error:
        print(f"tokbench: invalid config: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE
    if args.retune:
        if not config.tune:
            return usage_error("--retune re-tunes the int4 kernels: it needs --quantization int4 --tune")
        os.environ[RETUNE_ENV] = "1"  # read by the tuner when the loader tunes (quant.tune.default_cache_mode)
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
    try:  # checked before anything is measured: a wrong --db never costs a run
        store = None if args.no_store else _open_run_store(args.db)
    except StoreError as error:
        print(f"tokbench: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE
    hook = None if args.no_progress else RichProgress()
    interrupted: RunInterrupted | None = None
    with interruptible(), store if store is not None else nullcontext():  # SIGTERM like Ctrl-C: keeps what it measured
        try:
            result = run(config, progress=hook, profile_path=trace_path_for(target.planned_path))
        except RunInterrupted as stop:
            interrupted, result = stop, stop.result
        result = with_library_output(result, held, notes=False)  # the imports' messages too
        with signals_deferred():  # the table and the saves are never cut in half by a signal
            print_result(result, make_console())
            written = _keep_result(result, target)
            stored = _store_result(result, store) if store is not None else True
    if written is None or not stored:
        return EXIT_FAILED
    if interrupted is not None:
        reason = terminal_safe(result.reason, newlines=False)
        print(f"tokbench: {result.status}: {reason}; what was measured is in {written}", file=sys.stderr)
        return interrupted.exit_code
    if result.status == "ok":
        return EXIT_OK
    print(f"tokbench: {result.status}: {terminal_safe(result.reason, newlines=False)}", file=sys.stderr)
    return EXIT_SKIPPED if result.status == "skipped" else EXIT_FAILED


def _open_run_store(db: str | None) -> Any:
    from tokbench.results.store import DEFAULT_DB_PATH, ResultStore

    return ResultStore(db if db is not None else DEFAULT_DB_PATH)


def _store_result(result: Any, store: Any) -> bool:
    """Add the result to the store (its JSON is already written, so a failure here loses nothing)."""
    from tokbench.errors import StoreWriteError

    try:
        run_id = store.add(result)
    except StoreWriteError as error:
        print(f"tokbench: {terminal_safe(error, newlines=False)}; the result JSON above has it all", file=sys.stderr)
        return False
    print(terminal_safe(f"stored as run {run_id} in {store.path} (tokbench history / show {run_id} --db "
                        f"{store.path}; --no-store leaves it out)", newlines=False))  # fmt: skip
    return True


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
