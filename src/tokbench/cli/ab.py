"""``tokbench ab``: two sides (configs and/or environments) in interleaved pairs of processes until decided."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from typing import Any

from tokbench.cli import options
from tokbench.cli.common import EXIT_FAILED, EXIT_OK, EXIT_REGRESSION, EXIT_USAGE, db_help, open_store, usage_error
from tokbench.cli.flags import add_config_flags, config_overrides
from tokbench.errors import ConfigError, TokbenchError

_SIDE_HELP = "FIELD=VALUE: a config field of side {side} (repeatable; VALUE read as YAML: 16, float32, [4, 8])"


def add_ab_parser(commands: Any) -> None:
    from tokbench.analysis.sequential import DEFAULT_MAX_PAIRS, DEFAULT_MIN_PAIRS
    from tokbench.analysis.thresholds import DEFAULT_ALPHA, DEFAULT_MIN_EFFECT
    from tokbench.results.store import DEFAULT_DB_PATH

    ab = commands.add_parser(
        "ab",
        help="A/B: two configs or environments, interleaved pairs of fresh processes until the verdict is decided",
        description=(
            "Measure side A and side B in pairs of fresh processes (one of each, random order within a pair) "
            "until every metric is decided: slower / faster beyond --min-effect, or an interval inside "
            "±min-effect; or until --max-pairs or --budget ends. A side is the base config (--config and the "
            "config flags) with its own --a / --b FIELD=VALUE overrides, and/or its own interpreter "
            "(--a-python: another virtualenv), environment variables (--a-env) and working directory (--a-cwd). "
            "Every run is stored under one ab id; the output is compare's table. Exit codes: "
            f"{EXIT_OK} done, {EXIT_REGRESSION} side B is slower (with --fail-on regression), {EXIT_USAGE} usage "
            f"error, {EXIT_FAILED} a side kept failing, 130 / 143 interrupted (stored results stay)."
        ),
    )
    add = ab.add_argument
    add("--config", metavar="FILE", help="base config of both sides (YAML or JSON); the config flags override it")
    for side in ("a", "b"):
        add(f"--{side}", dest=f"{side}_fields", action="append", default=[], metavar="FIELD=VALUE",
            help=_SIDE_HELP.format(side=side.upper()))  # fmt: skip
        add(f"--{side}-config", metavar="FILE", help=f"side {side.upper()}'s own config file instead of --config")
        add(f"--{side}-python", metavar="PATH", help=f"side {side.upper()}'s Python (default: this one)")
        add(f"--{side}-env", action="append", default=[], metavar="NAME=VALUE",
            help=f"an environment variable of side {side.upper()}'s processes (repeatable)")  # fmt: skip
        add(f"--{side}-cwd", metavar="DIR", help=f"side {side.upper()}'s working directory")
        add(f"--{side}-url", metavar="URL", help=f"serving: side {side.upper()} is the server running at URL")
        add(f"--{side}-launch", metavar="CMD", help=f"serving: side {side.upper()} is this server command, launched "
            "fresh for each run ({port} becomes a free loopback port); --" + side + "-env / --" + side + "-cwd "
            "apply to it")  # fmt: skip
        add(f"--{side}-label", default=side.upper(), help=f"serving: side {side.upper()}'s label (default "
            f"{side.upper()})")  # fmt: skip
    add("--min-pairs", type=options.integer(2, 10_000), default=DEFAULT_MIN_PAIRS,
        help=f"pairs before the first look (default {DEFAULT_MIN_PAIRS})")  # fmt: skip
    add("--max-pairs", type=options.integer(2, 10_000), default=DEFAULT_MAX_PAIRS,
        help=f"pairs at most (default {DEFAULT_MAX_PAIRS})")  # fmt: skip
    add("--budget", type=options.number(1, 7 * 86400), metavar="S", help="stop starting pairs after S seconds")
    add("--min-effect", type=options.number(0, 1, exclusive=False), default=DEFAULT_MIN_EFFECT, metavar="F",
        help="smallest change that counts, as a fraction (default 0.02 = 2%%)")  # fmt: skip
    add("--alpha", type=options.number(0, 1, exclusive=True), default=DEFAULT_ALPHA,
        help="family-wise error rate over every look and metric (default 0.05)")  # fmt: skip
    add("--order-seed", dest="order_seed", type=options.integer(0),
        help="seed of the order within each pair (default: drawn, printed)")
    add("--timeout", dest="timeout_s", type=options.number(1, 7 * 86400), default=1800.0, metavar="S",
        help="seconds per process before it is ended as failed (default 1800)")  # fmt: skip
    add("--start-method", choices=("forkserver", "spawn"), help="how each side's processes start (as in sweep)")
    add("--duet", action=argparse.BooleanOptionalAction, default=None,
        help="duet pairs (the default for config sides): a pair's A and B processes run at the same time and take "
             "turns call by call (A's call i and B's call i back to back, order drawn per round), so both see the "
             "machine's load of the same seconds; --no-duet: one after the other (serving sides always)")  # fmt: skip
    add("--db", default=str(DEFAULT_DB_PATH), help=db_help())
    add("--format", choices=("terminal", "markdown", "json"), default="terminal")
    add("--output", metavar="FILE", help="also write the report to FILE (in --format; Markdown for terminal)")
    add("--force", action="store_true", help="let --output replace an existing plain file")
    add("--fail-on", choices=("never", "regression"), default="never",
        help=f"regression: exit {EXIT_REGRESSION} when side B is significantly slower (the CI gate)")  # fmt: skip
    add("--no-progress", action="store_true", help="no progress bar")
    _add_serving_flags(ab)
    add_config_flags(ab)
    ab.set_defaults(handler=command_ab)


def _add_serving_flags(ab: argparse.ArgumentParser) -> None:
    from tokbench.cli.serve import MAX_CLIENTS, add_workload_flags

    serving = ab.add_argument_group(
        "serving sides (--a-url / --a-launch and --b-url / --b-launch)",
        "Both sides run one serve-bench workload (these flags; --model is the model name sent, --seed the "
        "workload's seed). One process of a side is one serve-bench run from fresh client processes, against a "
        "server launched fresh for it (--X-launch) or the one running at the URL (--X-url). --timeout ends a "
        "run's clients; --request-timeout is per request.",
    )  # fmt: skip
    load = serving.add_mutually_exclusive_group()
    actions = [
        load.add_argument("--concurrency", type=options.integer(1, 100_000), metavar="N",
                          help="closed loop: N requests in flight (default 1)"),
        load.add_argument("--rate", type=options.number(0, 1e7, exclusive=True), metavar="R",
                          help="open loop: R requests/s"),
        *add_workload_flags(serving, "--request-timeout"),
        serving.add_argument("--clients", type=options.integer(1, MAX_CLIENTS), default=1, metavar="N",
                             help="client processes per run, the schedule split between them (default 1)"),
    ]  # fmt: skip
    # what a config A/B must not be given (it would be ignored): the serving flags whose value is not the default
    ab.set_defaults(serving_defaults={action.dest: action.default for action in actions})


def _pairs(items: list[str], what: str) -> dict[str, str]:
    parsed = {}
    for item in items:
        name, equals, value = item.partition("=")
        if not equals or not name.strip():
            raise ConfigError(what, f"{item!r} is not NAME=VALUE", f"e.g. {what} dtype=float32")
        parsed[name.strip()] = value
    return parsed


def _side_config(args: argparse.Namespace, side: str) -> Any:
    import yaml

    from tokbench.config import BenchmarkConfig, load_config_file

    path = getattr(args, f"{side}_config") or args.config
    fields: dict[str, Any] = load_config_file(path) if path else {}
    fields.update(config_overrides(args))
    for name, text in _pairs(getattr(args, f"{side}_fields"), f"--{side}").items():
        try:
            fields[name] = yaml.safe_load(text) if text else text
        except yaml.YAMLError as error:
            raise ConfigError(f"--{side}", f"{name}={text!r} is not a value: {error}", "quote it") from error
    return BenchmarkConfig.from_dict(fields)


def serving_mode(args: argparse.Namespace) -> bool:
    return any(getattr(args, f"{side}_{kind}", None) for side in ("a", "b") for kind in ("url", "launch"))


# Flags of config sides that mean nothing for a serving side (refused, never silently ignored).
_CONFIG_SIDE_FLAGS = ("config", "a_config", "b_config", "a_fields", "b_fields", "a_python", "b_python",
                      "start_method")  # fmt: skip


def _refuse_config_flags(args: argparse.Namespace) -> None:
    from tokbench.cli.flags import config_overrides

    given = [name for name in _CONFIG_SIDE_FLAGS if getattr(args, name, None)]
    given += [name for name in config_overrides(args) if name not in ("model", "seed")]
    if given:
        flags = ", ".join("--" + name.replace("_fields", "").replace("_", "-") for name in given)
        raise ConfigError(flags, "configures an in-process side", "a serving A/B takes the serving flags only")


def serving_sides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The two ``ServingSide`` of a serving A/B: one workload, each side a URL or a launch command."""
    from tokbench.cli.serve import serving_settings
    from tokbench.serving.http import Endpoint
    from tokbench.serving.runner import ServingRun, check_run
    from tokbench.serving.sides import ServingSide

    _refuse_config_flags(args)
    settings = serving_settings(args, args.model or "served-model")  # one model label: one workload key
    sides = {}
    for side in ("a", "b"):
        url, launch = getattr(args, f"{side}_url"), getattr(args, f"{side}_launch")
        environment = _pairs(getattr(args, f"{side}_env"), f"--{side}-env")
        cwd = getattr(args, f"{side}_cwd")
        if bool(url) == bool(launch):
            raise ConfigError(f"--{side}-url", "a serving side is a URL or a launch command, one of them",
                              f"give --{side}-url or --{side}-launch")  # fmt: skip
        if url:
            Endpoint.parse(url)
            if environment or cwd:
                raise ConfigError(f"--{side}-env", "applies to a launched server", f"use --{side}-launch, or drop it")
        elif "{port}" not in launch:
            raise ConfigError(f"--{side}-launch", "the command names no {port}", "each run gets a fresh port: put "
                              "{port} where the server takes its port")  # fmt: skip
        if cwd is not None and not os.path.isdir(cwd):
            raise ConfigError(f"--{side}-cwd", f"{cwd!r} is not a folder", "pass an existing folder")
        run = ServingRun(url=url or "", settings=replace(settings, label=getattr(args, f"{side}_label")),
                         served_model=args.model, tokenizer=args.tokenizer, dataset=args.dataset,
                         allow_early_stop=args.allow_early_stop, clients=args.clients)  # fmt: skip
        sides[side] = ServingSide(side, run, launch, environment, cwd, args.launch_timeout)
    check_run(sides["a"].run)  # a tokenizer or dataset that cannot be read: refused before any server starts
    return sides


def _config_sides(args: argparse.Namespace) -> list[Any]:
    from tokbench.sweep.ab import AbSide

    given = [dest for dest, default in getattr(args, "serving_defaults", {}).items() if getattr(args, dest) != default]
    given += [f"{side}_label" for side in ("a", "b") if getattr(args, f"{side}_label") != side.upper()]
    if given:
        flags = ", ".join("--" + dest.replace("_", "-") for dest in given)
        raise ConfigError(flags, "configures a serving side", "give --a-url / --a-launch and --b-url / --b-launch")
    sides = []
    for side in ("a", "b"):
        python = getattr(args, f"{side}_python") or sys.executable
        cwd = getattr(args, f"{side}_cwd")
        if not (os.path.isfile(python) and os.access(python, os.X_OK)):
            raise ConfigError(f"--{side}-python", f"{python!r} is not an executable file", "pass a Python's path")
        if cwd is not None and not os.path.isdir(cwd):
            raise ConfigError(f"--{side}-cwd", f"{cwd!r} is not a folder", "pass an existing folder")
        environment = _pairs(getattr(args, f"{side}_env"), f"--{side}-env")
        sides.append(AbSide(side, _side_config(args, side), python, environment, cwd))
    return sides


def spec_from_args(args: argparse.Namespace, served: dict[str, Any] | None = None) -> Any:
    """The A/B's spec: config sides, or with ``served`` (``serving_sides_from_args``) serving sides."""
    from tokbench.sweep.ab import AbSide, AbSpec
    from tokbench.sweep.launchers import DEFAULT_START_METHOD

    if served is not None:
        sides = [AbSide(name, None, details=side.describe()) for name, side in served.items()]
    else:
        sides = _config_sides(args)
    if args.duet is True and served is not None:
        raise ConfigError("--duet", "a serving side brings its own processes", "drop --duet for serving sides")
    if args.min_pairs > args.max_pairs:
        raise ConfigError("--min-pairs", f"{args.min_pairs} is more than --max-pairs {args.max_pairs}", "lower it")
    return AbSpec(
        a=sides[0],
        b=sides[1],
        min_pairs=args.min_pairs,
        max_pairs=args.max_pairs,
        budget_s=args.budget,
        min_effect=args.min_effect,
        alpha=args.alpha,
        seed=args.order_seed,
        timeout_s=args.timeout_s,
        start_method=args.start_method or DEFAULT_START_METHOD,
        duet=args.duet,
    )


def _serving_runners(served: dict[str, Any], api_key: str | None) -> Any:
    """Each side's ``ServingSideRunner`` (one API key for both, from its variable or file only)."""
    from tokbench.serving.sides import ServingSideRunner

    for name, side in served.items():
        print(f"tokbench ab: side {name.upper()}: {side.unit}", file=sys.stderr)
    return lambda side: ServingSideRunner(served[side.name], api_key)


def command_ab(args: argparse.Namespace) -> int:
    from tokbench.cli.compare import emit_report
    from tokbench.cli.serve import api_key_from
    from tokbench.interrupts import exit_code, interruptible
    from tokbench.report.compare_view import ab_side_lines
    from tokbench.report.progress import RichProgress
    from tokbench.results.outputs import OutputLocationError, check_output_file
    from tokbench.sweep.ab import AbRefused, AbRunner, compared_fields

    try:
        served = serving_sides_from_args(args) if serving_mode(args) else None
        spec = spec_from_args(args, served)
        compared_fields(spec.a, spec.b)  # refused before a store is opened (or created)
        runners = _serving_runners(served, api_key_from(args)) if served is not None else None
    except ConfigError as error:
        return usage_error(f"invalid A/B: {error}")
    except (AbRefused, TokbenchError) as error:
        return usage_error(error)
    try:  # --output is checked before any process runs: a refused path must not cost the whole A/B
        output = check_output_file(args.output, inputs={args.db}, force=args.force) if args.output else None
    except OutputLocationError as error:
        return usage_error(error)
    try:
        with interruptible() as stopped_by, open_store(args.db, must_exist=False) as store:
            runner = AbRunner(spec, store, progress=None if args.no_progress else RichProgress(), runners=runners)
            mode = "duet pairs (calls in turns)" if runner.duet else "sequential pairs"
            print(f"tokbench ab {runner.outcome.ab_id}: {mode}, pairs at looks {list(runner.looks.pairs)}, order seed "
                  f"{runner.outcome.seed}; results in {args.db}", file=sys.stderr)  # fmt: skip
            outcome = runner.run()
    except AbRefused as error:
        return usage_error(error)
    except TokbenchError as error:
        return usage_error(error)
    report = outcome.report
    for line in ab_side_lines(outcome.ab_id, spec.a.describe(), spec.b.describe(), outcome.ignored):
        print(line, file=sys.stderr)
    print(f"tokbench ab: {outcome.complete_pairs} complete pair(s), {outcome.failed} failed or invalid run(s), "
          f"{outcome.elapsed_s:.0f} s; {outcome.stopped_because}", file=sys.stderr)  # fmt: skip
    if report is None:
        print("tokbench ab: no side has an ok result to compare", file=sys.stderr)
        return exit_code(stopped_by) if outcome.interrupted else EXIT_FAILED
    try:
        emit_report(report, args.format, output)
    except OutputLocationError as error:  # the runs are stored: only the extra copy of the table is lost
        usage_error(f"{error}; every run is in {args.db} (ab {outcome.ab_id}): `tokbench compare` prints it again")
    if outcome.interrupted:
        return exit_code(stopped_by)
    if args.fail_on == "regression" and report.regressed:
        print("tokbench: regression: side B is significantly slower beyond --min-effect", file=sys.stderr)
        return EXIT_REGRESSION
    return EXIT_OK
