"""Command line: ``tokbench run ...``. Flags override a config file, which overrides the defaults."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokbench.config import ATTN_IMPLEMENTATIONS, COMPILE_MODES, DTYPES, BenchmarkConfig, load_config_file
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
    "profile_tokens",
    "seed",
    "trust_remote_code",
    "name",
)


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    add = parser.add_argument
    add("--config", metavar="FILE", help="YAML or JSON file of config fields; flags given here override it")
    add("--model", help="preset (tiny-llama, small-llama), local folder, or Hub id (default: tiny-llama)")
    add("--batch-size", type=int, help="rows per generate call (default: 1)")
    add("--sequence-length", type=int, help="prompt tokens per row, exactly (default: 128)")
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
    add("--warmup-iterations", type=int, help="untimed generations after the validation call (default: 5)")
    add("--measurement-iterations", type=int, help="timed generations (default: 20)")
    add(
        "--no-monitor",
        dest="monitor",
        action="store_false",
        default=None,
        help="do not sample hardware (sampling is not implemented yet; the result notes that)",
    )
    add(
        "--profile-tokens",
        type=int,
        help="profile this many tokens after measuring (accepted; not implemented yet, the result notes that)",
    )
    add("--seed", type=int, help="seed of the preset's random weights (inputs are fixed text) (default: 0)")
    add("--trust-remote-code", action="store_true", default=None, help="allow a Hub model's own Python code")
    add("--name", help="a name for this run (default: derived from the config)")
    add(
        "--output",
        metavar="FILE.json",
        help="where to write the result JSON (default: tokbench-results/NAME-TIME.json)",
    )
    add("--no-progress", action="store_true", help="no progress bars")


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
    _add_store_commands(commands)
    return parser


# --- sweep, history, export, show ------------------------------------------------------------------


def _add_store_commands(commands: Any) -> None:
    from tokbench.store import DEFAULT_DB_PATH
    from tokbench.sweep import COMPILE_CACHE_MODES, LAUNCHER_NAMES, LEVELS

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
    from tokbench.store import ResultStore

    if must_exist and not Path(path).is_file():
        raise StoreError(f"no results store at {path}; run `tokbench sweep` first or pass --db")
    return ResultStore(path)


def command_sweep(args: argparse.Namespace) -> int:
    from tokbench.launchers import make_launcher
    from tokbench.report import make_console, print_plan, sweep_summary_table
    from tokbench.sweep import load_sweep_file, plan_sweep
    from tokbench.sweep_runner import execute_plan

    console = make_console()
    try:
        spec = load_sweep_file(args.config).with_options(
            level=args.level,
            launcher=args.launcher,
            timeout_s=args.timeout_s,
            repeat=args.repeat,
            compile_cache=args.compile_cache,
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
        make_launcher(spec.launcher, compile_cache=spec.compile_cache) as launcher,
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
    from tokbench.report import history_table, make_console

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
    from tokbench.report import launch_lines, make_console, print_result

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


def default_output_path(name: str) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return DEFAULT_RESULTS_DIR / f"{name}-{stamp}.json"


def command_run(args: argparse.Namespace) -> int:
    from tokbench.report import make_console, print_result
    from tokbench.results import save_result
    from tokbench.runner import run

    try:
        config = config_from_args(args)
    except ConfigError as error:
        print(f"tokbench: invalid config: {error}", file=sys.stderr)
        return EXIT_USAGE
    result = run(config, progress=not args.no_progress)
    output = Path(args.output) if args.output else default_output_path(config.name)
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
