"""Command line: ``tokbench run ...``. Flags override a config file, which overrides the defaults."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokbench.config import (
    ATTN_IMPLEMENTATIONS,
    AUTO,
    COMPILE_MODES,
    DTYPES,
    QUANT_GROUP_SIZES,
    QUANT_KERNELS,
    QUANTIZATIONS,
    BenchmarkConfig,
    load_config_file,
)
from tokbench.errors import ConfigError, TokbenchError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SKIPPED = 3
EXIT_FAILED = 4
EXIT_INTERRUPTED = 130

DEFAULT_RESULTS_DIR = Path("tokbench-results")

# CLI flag destination -> BenchmarkConfig field, for the flags that map one to one.
_CONFIG_FLAGS = (
    "model",
    "batch_size",
    "sequence_length",
    "new_tokens",
    "dtype",
    "attn_implementation",
    "compile_mode",
    "static_cache",
    "kernels",
    "device",
    "warmup_iterations",
    "measurement_iterations",
    "monitor",
    "monitor_interval_ms",
    "profile_tokens",
    "seed",
    "trust_remote_code",
    "name",
    "quantization",
    "group_size",
    "quant_kernel",
    "tune",
    "tune_budget_s",
    "continuous_batching",
    "cb_page_size",
    "cb_num_blocks",
    "cb_max_batch_tokens",
    "cb_max_requests_per_batch",
    "warmup_min_iterations",
    "warmup_max_iterations",
    "warmup_budget_s",
    "measurement_min_iterations",
    "measurement_max_iterations",
    "measurement_budget_s",
    "target_relative_precision",
)


def parse_sequence_length(text: str) -> int | list[int] | dict[str, object]:
    """``128`` (every request), ``4,8,16`` (one per request) or ``uniform:MIN:MAX[:SEED]`` (sampled, seeded)."""
    try:
        if text.startswith("uniform:"):
            parts = [int(part) for part in text.split(":")[1:]]
            if len(parts) not in (2, 3):
                raise ValueError(text)
            spec: dict[str, object] = {"distribution": "uniform", "min": parts[0], "max": parts[1]}
            if len(parts) == 3:
                spec["seed"] = parts[2]
            return spec
        if "," in text:
            return [int(part) for part in text.split(",")]
        return int(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a prompt length: use N, N1,N2,... (one per request) or uniform:MIN:MAX[:SEED]"
        ) from error


def count_or_auto(text: str) -> int | str:
    """argparse type of --warmup-iterations / --measurement-iterations: 'auto' or an integer."""
    if text.strip().lower() == AUTO:
        return AUTO
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected 'auto' or an integer, got {text!r}") from None


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", help="YAML or JSON file of config fields; flags given here override it")
    add("--model", help="preset (tiny-llama, small-llama), local folder, or Hub id (default: tiny-llama)")
    add("--batch-size", type=int, help="rows per generate call (default: 1)")
    add(
        "--sequence-length",
        type=parse_sequence_length,
        help="prompt tokens per request, exactly: N, or N1,N2,... (one per request), or uniform:MIN:MAX[:SEED] "
        "(sampled per request); shorter prompts are left-padded on the plain path (default: 128)",
    )
    add("--new-tokens", type=int, help="tokens generated per row, exactly; EOS is disabled (default: 128)")
    add("--dtype", choices=DTYPES, help="weight and activation dtype (default: bfloat16)")
    add(
        "--attn",
        dest="attn_implementation",
        choices=ATTN_IMPLEMENTATIONS,
        help="attention implementation (default: sdpa)",
    )
    add("--compile", dest="compile_mode", choices=COMPILE_MODES, help="torch.compile mode; turns on the static cache")
    add("--static-cache", action="store_true", default=None, help="use a static KV cache")
    add("--kernels", action="store_true", default=None, help="transformers use_kernels (needs the kernels library)")
    add("--device", help="auto, cpu, cuda, cuda:N (default: auto; mps is skipped: its stamps would be late)")
    add(
        "--warmup-iterations",
        type=count_or_auto,
        help="untimed generations after the validation call: a count, or auto = until steady state (default: auto)",
    )
    add("--warmup-min-iterations", type=int, help="auto warmup: at least this many (default: 5)")
    add("--warmup-max-iterations", type=int, help="auto warmup: at most this many (default: 50)")
    add("--warmup-budget-s", type=float, help="auto warmup: stop after this many seconds (default: 30)")
    add(
        "--measurement-iterations",
        type=count_or_auto,
        help="timed generations: a count, or auto = until the median E2E is within --target-precision (default: auto)",
    )
    add("--measurement-min-iterations", type=int, help="auto measurement: at least this many (default: 10)")
    add("--measurement-max-iterations", type=int, help="auto measurement: at most this many (default: 500)")
    add("--measurement-budget-s", type=float, help="auto measurement: stop after this many seconds (default: 15)")
    add(
        "--target-precision",
        dest="target_relative_precision",
        type=float,
        help="auto measurement: 95%% CI half-width of the median E2E, relative (default: 0.01 = ±1%%)",
    )
    add(
        "--no-monitor",
        dest="monitor",
        action="store_false",
        default=None,
        help="no hardware sampling, per-iteration memory peaks, or efficiency figures",
    )
    add("--monitor-interval-ms", type=int, help="hardware sampling period while measuring (default: 50)")
    add(
        "--profile-tokens",
        type=int,
        metavar="K",
        help="after measuring, profile one generation of K tokens with torch.profiler; the gzipped Chrome/Perfetto "
        "trace goes next to the result JSON (NAME.trace.json.gz)",
    )
    add(
        "--continuous-batching",
        action="store_true",
        default=None,
        help="submit the batch_size requests to transformers' continuous-batching manager (built once, untimed)",
    )
    add("--cb-page-size", type=int, metavar="N", help="continuous batching: tokens per KV page (default: derived)")
    add("--cb-num-blocks", type=int, metavar="N", help="continuous batching: KV cache blocks (default: derived)")
    add("--cb-max-batch-tokens", type=int, metavar="N", help="continuous batching: tokens per step (default: derived)")
    add(
        "--cb-max-requests-per-batch",
        type=int,
        metavar="N",
        help="continuous batching: requests per step (default: all)",
    )
    _add_quantization_arguments(parser)
    add("--seed", type=int, help="seed of the preset's random weights (inputs are fixed text) (default: 0)")
    add("--trust-remote-code", action="store_true", default=None, help="allow a Hub model's own Python code")
    add("--name", help="a name for this run (default: derived from the config)")
    add(
        "--output",
        metavar="FILE.json",
        help="where to write the result JSON (default: tokbench-results/NAME-TIME.json)",
    )
    add("--no-progress", action="store_true", help="no progress bars")


def _add_quantization_arguments(parser: argparse.ArgumentParser, tune_flag: bool = True) -> None:
    add = parser.add_argument
    if tune_flag:
        add("--quantization", choices=QUANTIZATIONS, help="weight-only quantization of every linear but the LM head")
    add("--group-size", type=int, choices=QUANT_GROUP_SIZES, help="int4 quantization group size (default: 128)")
    if tune_flag:
        add(
            "--quant-kernel",
            choices=QUANT_KERNELS,
            help="int4 kernel for every layer (default: auto, chosen per input row count)",
        )
        add("--tune", action="store_true", default=None, help="tune the int4 kernels per layer shape (cached)")
    add("--tune-budget-s", type=float, help="tuning time budget per layer shape, seconds (default: 2)")


def _add_tune_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", help="YAML or JSON file of config fields; flags given here override it")
    add("--model", help="preset, local folder, or Hub id (default: tiny-llama)")
    add("--batch-size", type=int, help="batch size to tune for: decode M = batch (default: 1)")
    add(
        "--sequence-length",
        type=parse_sequence_length,
        help="prompt length(s) to tune for, as in run: prefill M = batch × longest (default: 128)",
    )
    add("--dtype", choices=DTYPES, help="activation dtype (default: bfloat16)")
    add("--device", help="auto, cpu, cuda, cuda:N (default: auto)")
    add("--seed", type=int, help="seed of the preset's random weights (default: 0)")
    add("--trust-remote-code", action="store_true", default=None, help="allow a Hub model's own Python code")
    _add_quantization_arguments(parser, tune_flag=False)
    add("--no-cache", action="store_true", help="time every candidate again; neither read nor write the cache")
    add("--output", metavar="FILE.json", help="also write the tuning report as JSON")


def build_parser() -> argparse.ArgumentParser:
    from tokbench import __version__

    parser = argparse.ArgumentParser(
        prog="tokbench",
        description="Measure how fast a transformers causal LM generates text, with a timestamp for every token.",
    )
    parser.add_argument("--version", action="version", version=f"tokbench {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run_parser = commands.add_parser(
        "run",
        help="benchmark one configuration and print its table",
        description=(
            "Load the model with exactly the given settings, make one validation call, warm up, measure, "
            "print a table of TTFT / TPOT / ITL / E2E / throughput and write the full result as JSON. "
            f"Exit codes: {EXIT_OK} ok, {EXIT_USAGE} invalid config, {EXIT_SKIPPED} skipped "
            f"(needs something this machine lacks), {EXIT_FAILED} failed."
        ),
    )
    _add_run_arguments(run_parser)
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
    _add_store_commands(commands)
    return parser


# --- sweep, history, export, show ------------------------------------------------------------------


def _add_store_commands(commands: Any) -> None:
    from tokbench.sweep.plan import COMPILE_CACHE_MODES, LAUNCHER_NAMES, LEVELS, START_METHODS
    from tokbench.sweep.store import DEFAULT_DB_PATH

    db_help = f"results store (SQLite file; default: {DEFAULT_DB_PATH} in the working directory)"
    sweep = commands.add_parser(
        "sweep",
        help="run every combination of a sweep file, each config in its own process, into the results store",
        description=(
            "Expand a sweep file (any config field may be a list: the sweep is the cross product), list the "
            "configs this machine cannot run, then run the rest one by one and store every result. "
            f"Exit codes: {EXIT_OK} nothing failed, {EXIT_USAGE} invalid sweep, {EXIT_FAILED} some config failed, "
            f"{EXIT_INTERRUPTED} interrupted (stored results stay; --resume goes on)."
        ),
    )
    sweep.add_argument("--config", required=True, metavar="FILE", help="YAML or JSON sweep file")
    sweep.add_argument(
        "--level", choices=tuple(LEVELS), help="run only this level's attention/compile/kernels/batching combinations"
    )
    sweep.add_argument(
        "--launcher", choices=LAUNCHER_NAMES, help="process (default: one fresh process per config) or inline"
    )
    sweep.add_argument(
        "--timeout",
        dest="timeout_s",
        type=float,
        metavar="S",
        help="seconds per config before it is ended as failed (default: 1800; an entry of the file may set timeout_s)",
    )
    sweep.add_argument("--repeat", type=int, metavar="K", help="run each config in K separate processes (default: 1)")
    sweep.add_argument(
        "--compile-cache",
        choices=COMPILE_CACHE_MODES,
        help="fresh (default): an empty inductor/Triton cache per config, true cold compiles; shared: one per sweep",
    )
    sweep.add_argument(
        "--start-method",
        choices=START_METHODS,
        help="how the process launcher starts a child: forkserver (default on Linux: forked from a server that "
        "imported torch once, saving seconds per config) or spawn (a new interpreter per config)",
    )
    sweep.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help)
    sweep.add_argument(
        "--resume", action="store_true", help="leave out configs this sweep already stored as ok or skipped"
    )
    sweep.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")

    history = commands.add_parser("history", help="list stored runs")
    history.add_argument("--model", help="only runs of this model")
    history.add_argument("--status", choices=("ok", "skipped", "failed"), help="only runs with this status")
    history.add_argument("--limit", type=int, help="only the latest N runs")
    history.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help)

    export = commands.add_parser("export", help="write stored runs out as JSON (full results) or CSV (columns)")
    export.add_argument("--format", choices=("json", "csv"), default="json")
    export.add_argument("--output", metavar="FILE", help="where to write (default: standard output)")
    export.add_argument("--model", help="only runs of this model")
    export.add_argument("--status", choices=("ok", "skipped", "failed"), help="only runs with this status")
    export.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help)

    show = commands.add_parser("show", help="print one stored run")
    show.add_argument("run_id", type=int, metavar="RUN_ID")
    show.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help)


def _open_store(path: str, must_exist: bool) -> Any:
    from tokbench.errors import StoreError
    from tokbench.sweep.store import ResultStore

    if must_exist and not Path(path).is_file():
        raise StoreError(f"no results store at {path}; run `tokbench sweep` first or pass --db")
    return ResultStore(path)


def command_sweep(args: argparse.Namespace) -> int:
    from tokbench.report.terminal import make_console, print_plan, sweep_summary_table
    from tokbench.sweep.launchers import make_launcher
    from tokbench.sweep.plan import load_sweep_file, plan_sweep
    from tokbench.sweep.runner import execute_plan

    console = make_console()
    try:
        spec = load_sweep_file(args.config).with_options(
            level=args.level,
            launcher=args.launcher,
            timeout_s=args.timeout_s,
            repeat=args.repeat,
            compile_cache=args.compile_cache,
            start_method=args.start_method,
        )
        plan = plan_sweep(spec)
    except ConfigError as error:
        print(f"tokbench: invalid sweep: {error}", file=sys.stderr)
        return EXIT_USAGE
    print_plan(plan, console)
    if args.dry_run:
        for planned in plan.runnable:
            console.print(f"run      {planned.config.name}  (config {planned.config.config_hash})")
        return EXIT_OK
    with (
        _open_store(args.db, must_exist=False) as store,
        make_launcher(spec.launcher, compile_cache=spec.compile_cache, start_method=spec.start_method) as launcher,
    ):
        outcome = execute_plan(
            plan, launcher, store, repeat=spec.repeat, resume=args.resume, progress=not args.no_progress
        )
    console.print(sweep_summary_table(outcome))
    console.print(
        f"{outcome.count('ok')} ok, {outcome.count('skipped')} skipped, {outcome.count('failed')} failed"
        + (f", {outcome.resumed} already stored (resumed)" if outcome.resumed else "")
        + f"; results in {args.db} (sweep {plan.sweep_id})"
    )
    if outcome.interrupted:
        print("tokbench: interrupted; stored results are kept, run again with --resume to go on", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_FAILED if outcome.count("failed") else EXIT_OK


def command_history(args: argparse.Namespace) -> int:
    from tokbench.report.terminal import history_table, make_console

    with _open_store(args.db, must_exist=True) as store:
        runs = store.runs(model=args.model, status=args.status, limit=args.limit)
    make_console().print(history_table(runs))
    return EXIT_OK


def command_export(args: argparse.Namespace) -> int:
    import csv
    import io
    import json

    with _open_store(args.db, must_exist=True) as store:
        runs = store.runs(model=args.model, status=args.status)
        if args.format == "json":
            records = [
                {"run_id": run.run_id, "sweep_id": run.sweep_id, "repeat_index": run.repeat_index, "result": data}
                for run, data in zip(runs, store.result_dicts(runs), strict=True)
            ]
            text = json.dumps(records, indent=1, allow_nan=False) + "\n"
        else:
            buffer = io.StringIO()
            rows = [run.to_dict() for run in runs]
            columns = list(rows[0]) if rows else []
            writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
            if rows:
                writer.writeheader()
                writer.writerows(rows)
            text = buffer.getvalue()
    if args.output:
        from tokbench.fileio import atomic_write_text

        atomic_write_text(args.output, text)
        print(f"{len(runs)} run(s) written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def command_show(args: argparse.Namespace) -> int:
    from tokbench.report.terminal import launch_lines, make_console, print_result

    with _open_store(args.db, must_exist=True) as store:
        result = store.result(args.run_id)
        run = store.run(args.run_id)
    console = make_console()
    console.print(
        f"run {run.run_id}  stored {run.stored_at}"
        + (f"  sweep {run.sweep_id} #{run.repeat_index + 1}" if run.sweep_id else "")
    )
    print_result(result, console)
    for line in launch_lines(result):
        console.print(line, highlight=False, markup=False)
    return EXIT_OK


def config_from_args(args: argparse.Namespace) -> BenchmarkConfig:
    fields: dict[str, Any] = load_config_file(args.config) if args.config else {}
    for name in _CONFIG_FLAGS:
        value = getattr(args, name, None)
        if value is not None:
            fields[name] = value
    return BenchmarkConfig.from_dict(fields)


def command_tune(args: argparse.Namespace) -> int:
    import json

    from tokbench.engine.loading import benchmark_mode, load
    from tokbench.fileio import atomic_write_text
    from tokbench.quant.tuning import render_tuning_table, tune_model
    from tokbench.report.terminal import make_console

    args.quantization = "int4"
    try:
        # Tuned below (with --no-cache honoured), not by the loader; every kernel stays a candidate.
        config = config_from_args(args).replace(tune=False, quant_kernel="auto")
    except ConfigError as error:
        print(f"tokbench: invalid config: {error}", file=sys.stderr)
        return EXIT_USAGE
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


def default_output_path(name: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return DEFAULT_RESULTS_DIR / f"{name}-{stamp}.json"


def command_run(args: argparse.Namespace) -> int:
    from tokbench.engine.profiling import trace_path_for
    from tokbench.engine.runner import run
    from tokbench.report.terminal import make_console, print_result
    from tokbench.schema.results import save_result

    try:
        config = config_from_args(args)
    except ConfigError as error:
        print(f"tokbench: invalid config: {error}", file=sys.stderr)
        return EXIT_USAGE
    output = Path(args.output) if args.output else default_output_path(config.name)
    result = run(config, progress=not args.no_progress, profile_path=trace_path_for(output))
    save_result(result, output)
    print_result(result, make_console())
    print(f"result written to {output}")
    if result.status == "ok":
        return EXIT_OK
    print(f"tokbench: {result.status}: {result.reason}", file=sys.stderr)
    return EXIT_SKIPPED if result.status == "skipped" else EXIT_FAILED


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_USAGE
    try:
        if args.command == "run":
            return command_run(args)
        if args.command == "tune":
            return command_tune(args)
        if args.command == "sweep":
            return command_sweep(args)
        if args.command == "history":
            return command_history(args)
        if args.command == "export":
            return command_export(args)
        if args.command == "show":
            return command_show(args)
    except TokbenchError as error:
        print(f"tokbench: {error}", file=sys.stderr)
        return EXIT_FAILED
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE
