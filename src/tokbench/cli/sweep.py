"""``tokbench sweep``: a sweep file's plan printed, then every config run by an executor into the store."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tokbench.cli import options
from tokbench.cli.common import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    db_help,
    open_store,
    usage_error,
)
from tokbench.errors import ConfigError
from tokbench.report.terminal import STATUS_STYLES, cell_text, shorten
from tokbench.sweep.plan import shorten_repr
from tokbench.text import terminal_safe

MAX_LISTED = 20  # skipped / invalid lines of a plan; the rest are counted
MAX_LISTED_RUNS = 1_000  # `--dry-run` lines

if TYPE_CHECKING:
    from tokbench.schema.results import BenchmarkResult
    from tokbench.sweep.plan import SweepPlan
    from tokbench.sweep.runner import SweepEntry, SweepOutcome


def add_sweep_parser(commands: Any) -> None:
    from tokbench.results.store import DEFAULT_DB_PATH
    from tokbench.sweep.plan import (
        COMPILE_CACHE_MODES,
        LAUNCHER_NAMES,
        LEVELS,
        MAX_REPEAT,
        MAX_TIMEOUT_S,
        START_METHODS,
    )

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
        type=options.number(0, MAX_TIMEOUT_S, exclusive=True),
        metavar="S",
        help="seconds per config before it is ended as failed (default: 1800; an entry of the file may set timeout_s)",
    )
    sweep.add_argument(
        "--repeat",
        type=options.integer(1, MAX_REPEAT),
        metavar="K",
        help="run each config in K separate processes (default: 1)",
    )
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
    sweep.add_argument("--db", default=str(DEFAULT_DB_PATH), help=db_help())
    sweep.add_argument(
        "--resume", action="store_true", help="leave out configs this sweep already stored as ok or skipped"
    )
    sweep.add_argument("--dry-run", action="store_true", help="print the plan and stop")
    sweep.add_argument(
        "--baseline", metavar="SELECTOR", help="compare the sweep's results with these at the end (see `compare`)"
    )
    sweep.add_argument("--no-progress", action="store_true", help="no progress bar")
    sweep.set_defaults(handler=command_sweep)


def _add_executor_arguments(sweep: argparse.ArgumentParser) -> None:
    from tokbench.sweep.plan import EXECUTOR_NAMES, MAX_CPUS_PER_CONFIG, MAX_GPUS_PER_CONFIG, MAX_PARALLEL

    sweep.add_argument(
        "--executor",
        choices=EXECUTOR_NAMES,
        help="local (default: this machine) or ray (a Ray cluster; needs tokbench[ray])",
    )
    sweep.add_argument(
        "--parallel",
        type=options.integer(1, MAX_PARALLEL),
        metavar="N",
        help="local: run N configs at once, each in its own process (with GPUs: each on its own GPUs)",
    )
    sweep.add_argument(
        "--gpus-per-config",
        type=options.integer(1, MAX_GPUS_PER_CONFIG),
        metavar="K",
        help="GPUs each config gets: local, its child sees only those (CUDA_VISIBLE_DEVICES) and every visible "
        "GPU is kept busy; ray, its task reserves K GPUs on one node (default 1)",
    )
    sweep.add_argument(
        "--cpus-per-config",
        type=options.number(0, MAX_CPUS_PER_CONFIG),
        metavar="C",
        help="ray: CPUs each config's task reserves (default 1)",
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


def command_sweep(args: argparse.Namespace) -> int:
    from tokbench.errors import LaunchError, TokbenchError
    from tokbench.report.terminal import make_console
    from tokbench.sweep.executors import open_executor
    from tokbench.sweep.plan import load_sweep_file, plan_sweep

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
        print(f"tokbench: invalid sweep: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE
    print_plan(plan, console)
    print_load_groups(plan, console, share=spec.share_load)
    if not plan.runnable and not plan.skipped:
        return usage_error(f"invalid sweep: every one of its {len(plan.invalid)} combination(s) is invalid (see "
                           "above); nothing was run or stored")  # fmt: skip
    if args.dry_run:
        print_runnable(plan, console)
        return EXIT_OK
    try:
        _check_before_running(args)
    except TokbenchError as error:
        return usage_error(error)
    try:
        executor = open_executor(spec)
    except (ConfigError, LaunchError) as error:
        print(f"tokbench: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE
    try:
        check_feasible = getattr(executor, "check_feasible", None)  # ray: can the cluster run each config at all?
        if check_feasible is not None:
            check_feasible(plan.configs)
    except LaunchError as error:
        executor.close()
        return usage_error(error)
    return _run_and_report(args, spec, plan, executor, console)


def _check_before_running(args: argparse.Namespace) -> None:
    """What can be found wrong before minutes of measuring: the store path, the --baseline selection."""
    from tokbench.errors import StoreError
    from tokbench.fileio import file_kind

    kind = file_kind(args.db)
    if kind not in ("a file", "missing"):
        raise StoreError(f"--db {args.db} is {kind}, not a results store file; pass a file path")
    if args.baseline:
        from tokbench.errors import TokbenchError
        from tokbench.results.selectors import select

        try:
            select(args.baseline, args.db)
        except TokbenchError as error:
            raise StoreError(f"--baseline {args.baseline}: {error}") from error


def _run_and_report(args: argparse.Namespace, spec: Any, plan: SweepPlan, executor: Any, console: Console) -> int:
    from tokbench.interrupts import exit_code, interruptible
    from tokbench.report.progress import RichProgress
    from tokbench.results.store import sweep_lock
    from tokbench.sweep.runner import execute_plan

    try:
        # SIGTERM ends the sweep like Ctrl-C: the running child ended, temporary folders removed, the store
        # kept. Installed after the executor opened: ray.init sets a SIGTERM handler of its own.
        with (
            sweep_lock(args.db, plan.sweep_id),
            interruptible() as stopped_by,
            open_store(args.db, must_exist=False) as store,
        ):
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
        from tokbench.cli.compare import print_sweep_comparison

        print_sweep_comparison(args.baseline, args.db, plan.sweep_id)
    if outcome.interrupted:
        print("tokbench: interrupted; stored results are kept, run again with --resume to go on", file=sys.stderr)
        return exit_code(stopped_by)
    return EXIT_FAILED if outcome.count("failed") else EXIT_OK


def print_plan(plan: SweepPlan, console: Console) -> None:
    """The plan before anything runs: what will run, and what cannot (with the reason)."""
    console.print(
        f"sweep {plan.sweep_id}: {len(plan.runnable)} config(s) to run, {len(plan.skipped)} cannot run here"
        + (f", {plan.duplicates} duplicate(s) collapsed" if plan.duplicates else "")
        + (f", {len(plan.invalid)} invalid combination(s)" if plan.invalid else "")
    )
    for note in plan.notes:
        console.print(Text(terminal_safe(f"note: {note}")))
    for skipped in plan.skipped[:MAX_LISTED]:
        console.print(
            Text(terminal_safe(f"skipped  {skipped.config.name}: {shorten(skipped.reason, 300)}"), style="yellow")
        )
    _more(console, len(plan.skipped), "config(s) that cannot run here")
    for invalid in plan.invalid[:MAX_LISTED]:
        line = f"invalid  {shorten_repr(invalid.fields, 200)}: {shorten(invalid.reason, 300)}"
        console.print(Text(terminal_safe(line), style="red"))
    _more(console, len(plan.invalid), "invalid combination(s)")


def print_runnable(plan: SweepPlan, console: Console) -> None:
    """``--dry-run``: the configs that would run, at most ``MAX_LISTED_RUNS`` lines."""
    for planned in plan.runnable[:MAX_LISTED_RUNS]:
        console.print(Text(terminal_safe(f"run      {planned.config.name}  (config {planned.config.config_hash})")))
    _more(console, len(plan.runnable), "config(s) to run", MAX_LISTED_RUNS)


def _more(console: Console, count: int, what: str, listed: int | None = None) -> None:
    listed = MAX_LISTED if listed is None else listed
    if count > listed:
        console.print(f"... and {count - listed:,} more {what} (not listed)")


def print_load_groups(plan: SweepPlan, console: Console, *, share: bool = True) -> None:
    """Which runnable configs share one model load (one worker loads it once and measures each in turn)."""
    from tokbench.sweep.grouping import load_groups

    configs = plan.configs
    groups = [group for group in load_groups(configs, share=share) if group.shared]
    if not share:
        console.print("load     not shared: every config loads its model in its own worker (--no-share-load)")
    for number, group in enumerate(groups, start=1):
        names = ", ".join(configs[index].name for index in group.indexes[:MAX_LISTED])
        names += f" and {len(group.indexes) - MAX_LISTED:,} more" if len(group.indexes) > MAX_LISTED else ""
        line = f"load     shared {number}: {len(group.indexes)} configs on one load: {names}"
        console.print(Text(terminal_safe(line)))


def sweep_summary_table(outcome: SweepOutcome) -> Table:
    """One row per config of a finished (or interrupted) sweep; repeats add between/within-process CV."""
    from tokbench.analysis.variation import repeat_variation

    table = Table(header_style="bold")
    for column in ("config", "status", "run ids", "TTFT ms", "TPOT ms", "E2E ms", "decode tok/s"):
        table.add_column(column, justify="left" if column in ("config", "status") else "right", overflow="fold")
    repeated = any(entry.repeat_index > 0 for entry in outcome.entries)
    if repeated:
        table.add_column("E2E CV between proc", justify="right")
        table.add_column("E2E CV within proc", justify="right")
    table.add_column("reason")
    grouped: dict[str, list[SweepEntry]] = {}
    for entry in outcome.entries:
        grouped.setdefault(entry.config.config_hash, []).append(entry)
    for entries in grouped.values():
        results = [entry.result for entry in entries if entry.result is not None]
        statuses = sorted({result.status for result in results}) or ["stored before (resumed)"]
        ok = [result for result in results if result.ok]
        last = ok[-1] if ok else (results[-1] if results else None)
        run_ids = ",".join(str(entry.run_id) for entry in entries if entry.run_id is not None)

        def median(metric: str, result: BenchmarkResult | None = last) -> str:
            summary = result.summary.get(metric) if result is not None else None
            return cell_text(summary.median if summary else None)

        reasons = "; ".join(sorted({shorten(result.reason) for result in results if result.reason}))
        status = "/".join(statuses)
        row = [
            entries[0].config.name,
            Text(status, style=STATUS_STYLES.get(status, "")),
            run_ids or "-",
            median("ttft_ms"),
            median("tpot_ms"),
            median("e2e_latency_ms"),
            median("decode_throughput_tok_s"),
        ]
        if repeated:
            variation = repeat_variation(ok)
            row += (
                [f"{variation.between_cv:.1%}", f"{variation.within_cv:.1%}"] if variation is not None else ["-", "-"]
            )
        table.add_row(*row, reasons)
    return table
