"""``tokbench sweep``: a sweep file's plan printed, then every config run by an executor into the store."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Collection
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
    from tokbench.sweep.plan import SweepPlan, SweepSpec
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
    from tokbench.sweep.plan import EXECUTOR_NAMES, MAX_CPUS_PER_CONFIG, MAX_GPUS_PER_CONFIG, MAX_PARALLEL, MAX_THREADS

    sweep.add_argument(
        "--executor",
        choices=EXECUTOR_NAMES,
        help="local (default: this machine) or ray (a Ray cluster; needs tokbench[ray])",
    )
    sweep.add_argument(
        "--parallel",
        type=options.integer(1, MAX_PARALLEL),
        metavar="N",
        help="local: run N configs at once, each in its own process (with GPUs: each on its own GPUs); their torch "
        "threads share the cores (see --threads), and a sweep of fewer load groups runs fewer at once",
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
        "--threads",
        type=options.integer(1, MAX_THREADS),
        metavar="T",
        help="torch threads per config process (default: local, the cores divided among the configs running at "
        "once; ray, the CPUs each task reserves); more than the cores allow is refused",
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
            threads=args.threads,
        )
        plan = plan_sweep(spec)
    except ConfigError as error:
        print(f"tokbench: invalid sweep: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_USAGE
    done = _already_stored(args.db, plan.sweep_id) if args.resume else set()
    print_plan(plan, console, done=done, repeat=spec.repeat)
    print_load_groups(plan, console, share=spec.share_load)
    if not plan.runnable and not plan.skipped:
        return usage_error(f"invalid sweep: every one of its {len(plan.invalid)} combination(s) is invalid (see "
                           "above); nothing was run or stored")  # fmt: skip
    try:
        lines = executor_lines(spec, plan)
    except ConfigError as error:
        return usage_error(f"invalid sweep: {error}")
    for line in lines:
        console.print(Text(terminal_safe(line), style="yellow" if line.startswith("note") else ""))
    if args.dry_run:
        print_runnable(plan, console, done=done, repeat=spec.repeat)
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


def _already_stored(db: str, sweep_id: str) -> set[tuple[str, int]]:
    """(config hash, repeat) of this sweep already stored ok or skipped: what --resume leaves out."""
    from pathlib import Path

    if not Path(db).is_file():
        return set()
    with open_store(db, must_exist=True) as store:
        return set(store.completed(sweep_id))


def print_plan(
    plan: SweepPlan, console: Console, *, done: Collection[tuple[str, int]] = (), repeat: int = 1
) -> None:
    """The plan before anything runs: what will run (less what --resume leaves out), and what cannot (why)."""
    total = len(plan.runnable) * repeat
    stored = sum(1 for planned in plan.runnable for i in range(repeat) if (planned.config.config_hash, i) in done)
    runs = f"{total - stored} run(s)" if repeat > 1 else f"{total - stored} config(s)"
    console.print(
        f"sweep {plan.sweep_id}: {runs} to run"
        + (f" ({stored} already stored: left out by --resume)" if stored else "")
        + f", {len(plan.skipped)} cannot run here"
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


def print_runnable(
    plan: SweepPlan, console: Console, *, done: set[tuple[str, int]] = frozenset(), repeat: int = 1
) -> None:
    """``--dry-run``: the configs that would run (not those ``--resume`` leaves out: ``done``), at most
    ``MAX_LISTED_RUNS`` lines."""
    to_run = []
    for planned in plan.runnable:
        left = sum(1 for index in range(repeat) if (planned.config.config_hash, index) not in done)
        if left:  # stored before: --resume leaves it out, so the plan does not announce it
            to_run.append((planned, left))
    for planned, left in to_run[:MAX_LISTED_RUNS]:
        repeats = f" × {left}" if repeat > 1 else ""
        line = f"run      {planned.config.name}{repeats}  (config {planned.config.config_hash})"
        console.print(Text(terminal_safe(line)))
    _more(console, len(to_run), "config(s) to run", MAX_LISTED_RUNS)


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


_SUMMARY_METRICS = (("TTFT ms", "ttft_ms"), ("TPOT ms", "tpot_ms"), ("E2E ms", "e2e_latency_ms"),
                    ("decode tok/s", "decode_throughput_tok_s"))  # fmt: skip


def executor_lines(spec: SweepSpec, plan: SweepPlan) -> list[str]:
    """What the executor will do that changes what is measured: threads per process, and a --parallel that
    cannot apply (fewer load groups than slots) or a Ray thread count that differs from a local run's.
    Raises ConfigError for a thread count the machine cannot give (refused before anything runs)."""
    from tokbench.sweep.executors import planned_threads
    from tokbench.sweep.grouping import load_groups
    from tokbench.sweep.threads import local_plan

    lines = []
    units = len(load_groups(plan.configs, share=spec.share_load)) * spec.repeat
    thread_plan, slots = planned_threads(spec, units)
    if thread_plan is not None:
        lines.append(thread_plan.line())
        if thread_plan.warning:
            lines.append(f"note: {thread_plan.warning}")
    else:
        lines.append("threads  configs run in this process (--launcher inline), with its torch threads")
    if slots > 1 and units < slots:
        hint = " (--no-share-load gives each config its own worker)" if spec.share_load else ""
        lines.append(
            f"note: --parallel {slots} cannot apply fully: this sweep has {units} load group(s), each run by one "
            f"worker, so at most {units} run(s) at once{hint}"
        )
    if spec.executor == "ray" and thread_plan is not None:
        local = local_plan(1)
        if local.threads != thread_plan.threads:
            lines.append(
                f"note: ray runs torch on {thread_plan.threads} thread(s) per config, a local sweep here on "
                f"{local.threads}: their figures differ by that, not by the executor (--cpus-per-config sets it)"
            )
    return lines


def sweep_summary_table(outcome: SweepOutcome) -> Table:
    """One row per config of a finished (or interrupted) sweep.

    With ``--repeat`` each figure is the median over the config's processes of each process's median, with the
    range of those per-process medians beside it, and the E2E CV between vs within processes (as the HTML report).
    """
    from tokbench.analysis.variation import flag_counts, median_over_processes, repeat_variation
    from tokbench.report.terminal import busy_flags

    repeated = any(entry.repeat_index > 0 for entry in outcome.entries)
    caption = (
        "figures: median over processes of each process's median [lowest–highest process]; CV between = spread of "
        "the per-process E2E medians, within = mean spread inside one process"
        if repeated
        else None
    )
    table = Table(header_style="bold", caption=caption, caption_justify="left")
    for column in ("config", "status", "run ids", *(label for label, _ in _SUMMARY_METRICS)):
        table.add_column(column, justify="left" if column in ("config", "status") else "right", overflow="fold")
    if repeated:
        table.add_column("E2E CV between proc", justify="right")
        table.add_column("E2E CV within proc", justify="right")
    table.add_column("flags", overflow="fold")
    table.add_column("reason")
    grouped: dict[str, list[SweepEntry]] = {}
    for entry in outcome.entries:
        grouped.setdefault(entry.config.config_hash, []).append(entry)
    for entries in grouped.values():
        results = [entry.result for entry in entries if entry.result is not None]
        statuses = sorted({result.status for result in results}) or ["stored before (resumed)"]
        ok = [result for result in results if result.ok]
        run_ids = ",".join(str(entry.run_id) for entry in entries if entry.run_id is not None)
        cells = []
        for _, metric in _SUMMARY_METRICS:
            over = median_over_processes(ok, metric)
            text = cell_text(over.median if over else None)
            if over is not None and repeated and over.processes > 1:
                text += f"\n[{cell_text(over.low)}–{cell_text(over.high)}]"  # the range on its own line: never split
            cells.append(text)
        reasons = "; ".join(sorted({shorten(result.reason) for result in results if result.reason}))
        status = "/".join(statuses)
        row = [entries[0].config.name, Text(status, style=STATUS_STYLES.get(status, "")), run_ids or "-", *cells]
        if repeated:
            variation = repeat_variation(ok)
            row += (
                [f"{variation.between_cv:.1%}", f"{variation.within_cv:.1%}"] if variation is not None else ["-", "-"]
            )
        counts = flag_counts(results)
        loud = busy_flags(tuple(counts))
        flags = " ".join(
            (flag.upper() if flag in loud else flag) + (f" {count}/{len(results)}" if len(results) > 1 else "")
            for flag, count in counts.items()
        )  # fmt: skip
        table.add_row(*row, Text(flags or "-", style="bold red" if loud else ""), reasons)
    return table
