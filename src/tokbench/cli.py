"""Command line: ``tokbench run ...``. Flags override a config file, which overrides the defaults."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from tokbench.config import BenchmarkConfig, load_config_file
from tokbench.errors import ConfigError, TokbenchError
from tokbench.flags import add_config_flags, config_overrides, count_or_auto, parse_sequence_length
from tokbench.text import spreadsheet_safe, terminal_safe

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SKIPPED = 3
EXIT_FAILED = 4
EXIT_INTERRUPTED = 130  # 128 + SIGINT; SIGTERM gives 143 (interrupts.exit_code)


__all__ = ["build_parser", "config_from_args", "count_or_auto", "main", "parse_sequence_length"]

# `tokbench tune` takes these config fields, with help that says what each means for tuning.
_TUNE_FIELDS = ("model", "batch_size", "sequence_length", "dtype", "device", "seed", "trust_remote_code")
_TUNE_HELP = {
    "batch_size": "batch size to tune for: decode M = batch",
    "sequence_length": "prompt length(s) to tune for, as in run: prefill M = batch × longest",
    "dtype": "activation dtype",
}


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
            f"(needs something this machine lacks), {EXIT_FAILED} failed, {EXIT_INTERRUPTED} / 143 interrupted by "
            "Ctrl-C / SIGTERM (what was measured is kept as an interrupted result)."
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
    from tokbench.report.command import add_report_parser

    add_report_parser(commands)
    from tokbench.cli_compare import add_compare_commands
    from tokbench.sweep.store import DEFAULT_DB_PATH

    add_compare_commands(commands, str(DEFAULT_DB_PATH))
    return parser


# --- sweep, history, export, show ------------------------------------------------------------------


def _add_store_commands(commands: Any) -> None:
    from tokbench.schema.results import STATUSES
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
            f"{EXIT_INTERRUPTED} / 143 interrupted by Ctrl-C / SIGTERM (stored results stay; --resume goes on)."
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
    _add_executor_arguments(sweep)
    sweep.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help)
    sweep.add_argument(
        "--resume", action="store_true", help="leave out configs this sweep already stored as ok or skipped"
    )
    sweep.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    sweep.add_argument(
        "--baseline", metavar="SELECTOR", help="compare the sweep's results with these at the end (see `compare`)"
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")

    history = commands.add_parser("history", help="list stored runs")
    history.add_argument("--model", help="only runs of this model")
    history.add_argument("--status", choices=STATUSES, help="only runs with this status")
    history.add_argument("--limit", type=int, help="only the latest N runs")
    history.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help)
    history.add_argument(
        "--changes", action="store_true", help="find change points per workload (as `tokbench regressions`)"
    )

    export = commands.add_parser("export", help="write stored runs out as JSON (full results) or CSV (columns)")
    export.add_argument("--format", choices=("json", "csv"), default="json")
    export.add_argument("--output", metavar="FILE", help="where to write (default: standard output)")
    export.add_argument("--model", help="only runs of this model")
    export.add_argument("--status", choices=STATUSES, help="only runs with this status")
    export.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help)

    show = commands.add_parser("show", help="print one stored run")
    show.add_argument("run_id", type=int, metavar="RUN_ID")
    show.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help)


def _add_executor_arguments(sweep: argparse.ArgumentParser) -> None:
    from tokbench.sweep.plan import EXECUTOR_NAMES

    sweep.add_argument(
        "--executor",
        choices=EXECUTOR_NAMES,
        help="local (default: this machine) or ray (a Ray cluster; needs tokbench[ray])",
    )
    sweep.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="local: run N configs at once, each in its own process (with GPUs: each on its own GPUs)",
    )
    sweep.add_argument(
        "--gpus-per-config",
        type=int,
        metavar="K",
        help="GPUs each config gets: local, its child sees only those (CUDA_VISIBLE_DEVICES) and every visible "
        "GPU is kept busy; ray, its task reserves K GPUs on one node (default 1)",
    )
    sweep.add_argument(
        "--cpus-per-config", type=float, metavar="C", help="ray: CPUs each config's task reserves (default 1)"
    )
    sweep.add_argument(
        "--ray-address",
        metavar="auto|ADDR",
        help="ray: the cluster to use (auto: the one `ray start` runs here; default: a local one for this sweep)",
    )
    sweep.add_argument(
        "--share-load",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="configs that differ only in batch, prompt, new tokens, batching or measurement policy are measured "
        "on one model load in one worker (default: on; the plan lists them)",
    )


def _open_store(path: str, must_exist: bool) -> Any:
    from tokbench.errors import StoreError
    from tokbench.sweep.store import ResultStore

    if must_exist and not Path(path).is_file():
        raise StoreError(f"no results store at {path}; run `tokbench sweep` first or pass --db")
    # Reading commands (must_exist) open it read-only: they never add tables, migrate or write anything.
    return ResultStore(path, read_only=must_exist)


def command_sweep(args: argparse.Namespace) -> int:
    from tokbench.errors import LaunchError
    from tokbench.interrupts import exit_code, interruptible
    from tokbench.report.progress import RichProgress
    from tokbench.report.terminal import make_console, print_load_groups, print_plan, sweep_summary_table
    from tokbench.sweep.executors import open_executor
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
            executor=args.executor,
            parallel=args.parallel,
            gpus_per_config=args.gpus_per_config,
            cpus_per_config=args.cpus_per_config,
            ray_address=args.ray_address,
            share_load=args.share_load,
        )
        plan = plan_sweep(spec)
    except ConfigError as error:
        print(f"tokbench: invalid sweep: {error}", file=sys.stderr)
        return EXIT_USAGE
    print_plan(plan, console)
    print_load_groups(plan, console, share=spec.share_load)
    if args.dry_run:
        for planned in plan.runnable:
            console.print(f"run      {planned.config.name}  (config {planned.config.config_hash})")
        return EXIT_OK
    try:
        executor = open_executor(spec)
    except (ConfigError, LaunchError) as error:
        print(f"tokbench: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        # SIGTERM ends the sweep like Ctrl-C: the running child ended, temporary folders removed, the store
        # kept. Installed after the executor opened: ray.init sets a SIGTERM handler of its own.
        with interruptible() as stopped_by, _open_store(args.db, must_exist=False) as store:
            hook = None if args.no_progress else RichProgress()
            outcome = execute_plan(
                plan,
                executor,
                store,
                repeat=spec.repeat,
                resume=args.resume,
                progress=hook,
                share_load=spec.share_load,
            )
    finally:
        executor.close()
    console.print(sweep_summary_table(outcome))
    console.print(
        f"{outcome.count('ok')} ok, {outcome.count('skipped')} skipped, {outcome.count('failed')} failed"
        + (f", {outcome.count('interrupted')} interrupted" if outcome.count("interrupted") else "")
        + (f", {outcome.resumed} already stored (resumed)" if outcome.resumed else "")
        + f"; results in {args.db} (sweep {plan.sweep_id})"
    )
    if args.baseline and not outcome.interrupted:
        from tokbench.cli_compare import print_sweep_comparison

        print_sweep_comparison(args.baseline, args.db, plan.sweep_id)
    if outcome.interrupted:
        print("tokbench: interrupted; stored results are kept, run again with --resume to go on", file=sys.stderr)
        return exit_code(stopped_by)
    return EXIT_FAILED if outcome.count("failed") else EXIT_OK


def command_history(args: argparse.Namespace) -> int:
    from tokbench.report.terminal import history_table, make_console

    if args.changes:
        from tokbench.cli_compare import command_regressions

        return command_regressions(args)
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
            rows = [{key: spreadsheet_safe(value) for key, value in run.to_dict().items()} for run in runs]
            columns = list(rows[0]) if rows else []
            writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
            if rows:
                writer.writeheader()
                writer.writerows(rows)
            text = buffer.getvalue()
    if args.output:
        _write_export(args.output, args.db, text)
        print(terminal_safe(f"{len(runs)} run(s) written to {args.output}", newlines=False), file=sys.stderr)
    else:
        sys.stdout.write(text)
    return EXIT_OK


def _write_export(output: str, db: str, text: str) -> None:
    """Write an export file; never onto the store itself or any other SQLite database."""
    from tokbench.errors import StoreError
    from tokbench.fileio import atomic_write_text
    from tokbench.sweep.store import is_sqlite_file

    target, store = Path(output), Path(db)
    if target.exists() and ((store.exists() and target.resolve() == store.resolve()) or is_sqlite_file(target)):
        raise StoreError(f"--output {output} is a results database; exporting would replace it: choose another file")
    try:
        atomic_write_text(target, text)
    except OSError as error:
        raise StoreError(f"could not write the export to {output}: {error.strerror or error}") from error


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
    fields.update(config_overrides(args))
    return BenchmarkConfig.from_dict(fields)


def command_tune(args: argparse.Namespace) -> int:
    import json

    from tokbench.engine.loading import benchmark_mode, load
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
    from tokbench.engine.profiling import trace_path_for
    from tokbench.engine.runner import RunInterrupted, run
    from tokbench.interrupts import interruptible, signals_deferred
    from tokbench.outputs import OutputLocationError, plan_result_target
    from tokbench.report.progress import RichProgress
    from tokbench.report.terminal import make_console, print_result

    try:
        config = config_from_args(args)
    except ConfigError as error:
        print(f"tokbench: invalid config: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE
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
    from tokbench.outputs import keep_somewhere_safe, write_result_json

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
        if args.command == "report":
            from tokbench.report.command import command_report

            return command_report(args)
        if args.command in ("compare", "regressions"):
            from tokbench import cli_compare

            if args.command == "compare":
                return cli_compare.command_compare(args)
            return cli_compare.command_regressions(args)
    except TokbenchError as error:
        print(f"tokbench: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as interrupt:  # stopped outside a stage that keeps a result: no traceback
        from tokbench.interrupts import signal_of

        print("tokbench: interrupted", file=sys.stderr)
        return 128 + signal_of(interrupt)
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE
