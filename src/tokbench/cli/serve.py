"""``tokbench serve-bench [URL]``: benchmark an OpenAI-compatible endpoint with the in-process definitions.

With no URL it saves a tiny preset and starts ``transformers serve`` on it on loopback (the offline default);
``--launch "CMD"`` starts any server and stops it after. Results go to a JSON file per run and, with ``--db``,
the results store, as ``BenchmarkResult`` records that ``compare``, ``history``, ``regressions`` and ``report``
read like in-process runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from tokbench.cli import options
from tokbench.cli.common import EXIT_FAILED, EXIT_OK, EXIT_SKIPPED, EXIT_USAGE, usage_error
from tokbench.errors import ConfigError, TokbenchError
from tokbench.text import terminal_safe

DEFAULT_PRESET = "tiny-llama"
MAX_CLIENTS = 256


def add_serve_parser(commands: Any) -> None:
    parser = commands.add_parser(
        "serve-bench",
        help="benchmark an OpenAI-compatible serving endpoint (default: transformers serve on a tiny preset)",
        description=(
            "Stream requests to /v1/completions or /v1/chat/completions, stamp every SSE event's arrival (integer "
            "ns), and report TTFT / TPOT / ITL / E2E / throughput with the in-process definitions, goodput against "
            "an SLO, send lag and errors. Open-loop latencies count from the intended send time. Exit codes: "
            f"{EXIT_OK} ok, {EXIT_USAGE} bad arguments, {EXIT_SKIPPED} the server cannot run the workload, "
            f"{EXIT_FAILED} failed or invalid."
        ),
    )
    add = parser.add_argument
    add("url", nargs="?", help="the server's base URL (http://host:port); none: launch transformers serve")
    add("--model", help="model name to send (default: the first the server lists)")
    add("--preset", default=DEFAULT_PRESET, help=f"with no URL: the preset to serve (default {DEFAULT_PRESET})")
    add("--continuous-batching", action="store_true", help="with no URL: transformers serve --continuous-batching")
    add("--launch", metavar="CMD", help='start this server command first ("{port}" becomes a free loopback port '
        "and the URL), wait for /health, stop it after")
    load = parser.add_mutually_exclusive_group()
    load.add_argument("--concurrency", metavar="N[,N...]", help="closed loop: N requests in flight (a list sweeps)")
    load.add_argument("--rate", metavar="R[,R...]", help="open loop: R requests/s (a list sweeps)")
    load.add_argument("--auto-sweep", type=options.integer(1, 50), metavar="K",
                      help="synchronous, then max throughput, then K rates between")  # fmt: skip
    load.add_argument("--slo-search", metavar="LOW:HIGH", help="highest rate in [LOW, HIGH] req/s meeting --slo")
    add_workload_flags(parser, "--timeout")
    add("--clients", type=options.integer(1, MAX_CLIENTS), metavar="N",
        help="offer the load from N fresh client processes, the schedule split between them (default: this "
        "process); each one's send lag is reported")  # fmt: skip
    add("--slo", metavar="SPEC", help="e.g. ttft=200ms,tpot=50ms,e2e=5s: goodput and an SLO verdict")
    add("--slo-percentile", type=options.number(1, 99.99), default=99.0, help="the SLO percentile (default 99)")
    add("--max-concurrency", type=options.integer(1, 100_000), default=64, help="--auto-sweep's saturating load")
    add("--seed", type=options.integer(0, 2**31 - 1), default=0)
    add("--label", default="", help="which server this is (kept in the result, not in the workload)")
    add("--versus", metavar="URL", help="A/B: run the same workload against this second server too, interleaved "
        "(ABBA) for --rounds pairs, and print compare's verdict (the URL's server is the contender; `tokbench ab "
        "--a-url --b-url` runs the sequential, randomized A/B)")  # fmt: skip
    add("--versus-label", default="contender", help="the second server's label (default contender)")
    add("--rounds", type=options.integer(1, 1000), default=2, help="--versus: pairs of runs (default 2)")
    add("--db", metavar="STORE.db", help="also store every result in this results store")
    add("--output-dir", metavar="DIR", default="tokbench-results", help="where result JSON files go")
    parser.set_defaults(handler=command_serve_bench)


def add_workload_flags(parser: Any, timeout_flag: str) -> list[argparse.Action]:
    """The request shape, arrivals, limits and API key of a serving run: ``serve-bench``'s and ``ab``'s serving
    sides' (the request timeout is ``timeout_flag``: ``ab`` has its own --timeout per process); the actions added."""
    actions: list[argparse.Action] = []

    def add(*names: str, **options: Any) -> None:
        actions.append(parser.add_argument(*names, **options))

    add("--api", choices=("completions", "chat"), default="completions", help="endpoint (default completions)")
    add("--tokenizer", help="preset / folder / Hub id of the served model's tokenizer: exact prompt lengths and "
        "token counts (default: the launched preset's; without one, prompts are words and counts the server's)")
    add("--launch-timeout", type=options.number(1, 3600), default=300.0, help="seconds to wait for health")
    add("--arrival", choices=("constant", "poisson", "gamma"), default="poisson", help="open-loop arrivals")
    add("--burstiness", type=options.number(0.01, 100), default=1.0, help="gamma shape (1 = Poisson, <1 burstier)")
    add("--requests", type=options.integer(1, 1_000_000), default=64, help="measured requests per run (default 64)")
    add("--warmup", type=options.integer(0, 100_000), default=4, help="warmup requests before each run")
    add("--input-tokens", default="32", metavar="SPEC", help="N | uniform:MIN:MAX | normal:MEAN:STD[:MIN:MAX] | "
        "lognormal:...")
    add("--output-tokens", default="32", metavar="SPEC", help="as --input-tokens; at least 2")
    add("--dataset", metavar="FILE", help="ShareGPT-style JSON or JSONL prompts (output lengths from the answers "
        "unless --output-tokens is given)")
    add("--allow-early-stop", action="store_true", help="run even if the server cannot fix output lengths")
    add("--lag-budget-ms", type=options.number(0.001, 60_000), default=1.0,
        help="open loop: p99 send lag above this marks the run invalid (default 1 ms)")
    add(timeout_flag, dest="request_timeout", type=options.number(0.1, 86_400), default=120.0,
        help="seconds per request (default 120)")
    add("--stall-timeout", type=options.number(0.1, 86_400), default=30.0, help="seconds without a byte mid-stream")
    add("--api-key-env", metavar="VAR", help="read the API key from this environment variable")
    add("--api-key-file", metavar="FILE", help="read the API key from this file")
    return actions


def _numbers(text: str, what: str, integer: bool) -> list[float]:
    values = []
    for part in text.split(","):
        try:
            value = int(part) if integer else float(part)
        except ValueError:
            raise ConfigError(what, f"{part!r} is not a number", f"give {what} as N or N1,N2,...") from None
        if not 0 < value < 1e7 or value != value:
            raise ConfigError(what, f"{part!r} is out of range", "use a positive number")
        values.append(value)
    return values


def _first(value: str | float, what: str, integer: bool) -> float:
    """A load value: a number (``ab``'s options), or the first of a list (``serve-bench``'s, a list sweeps)."""
    return value if isinstance(value, (int, float)) else _numbers(value, what, integer)[0]


def api_key_from(args: argparse.Namespace) -> str | None:
    """The key, from the named variable or file only (never a flag value: it would show in ps and history)."""
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise ConfigError("--api-key-env", f"${args.api_key_env} is not set or empty", "export it first")
        return key.strip()
    if args.api_key_file:
        try:
            key = Path(args.api_key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as error:
            raise ConfigError("--api-key-file", f"cannot read it: {error}", "check the path") from error
        if not key:
            raise ConfigError("--api-key-file", "the file is empty", "put the key in it")
        return key
    return None


def serving_settings(args: argparse.Namespace, model_label: str) -> Any:
    from tokbench.schema.serving import LengthSpec, ServingSettings
    from tokbench.serving.workload import parse_length

    inputs = parse_length(args.input_tokens, "--input-tokens")
    outputs = parse_length(args.output_tokens, "--output-tokens") if not (
        args.dataset and args.output_tokens == "32") else LengthSpec("dataset")  # fmt: skip
    if outputs.kind != "dataset" and (outputs.value or outputs.minimum or 0) < 2:
        raise ConfigError("--output-tokens", "TPOT and ITL need at least 2 output tokens", "use 2 or more")
    if args.dataset:
        inputs = LengthSpec("dataset")
    load, concurrency, rate = "concurrency", 1, None
    if args.rate:
        load, rate = "rate", _first(args.rate, "--rate", False)
    elif args.concurrency:
        concurrency = int(_first(args.concurrency, "--concurrency", True))
    return ServingSettings(
        api=args.api, model=model_label, load=load, concurrency=concurrency if load == "concurrency" else None,
        rate=rate, arrival=args.arrival, burstiness=args.burstiness, requests=args.requests,
        warmup_requests=args.warmup, input_tokens=inputs, output_tokens=outputs, seed=args.seed or 0,
        lag_budget_ms=args.lag_budget_ms, timeout_s=args.request_timeout, stall_timeout_s=args.stall_timeout,
        label=getattr(args, "label", ""),
    )  # fmt: skip


@contextlib.contextmanager
def _server(args: argparse.Namespace) -> Iterator[tuple[str, Any, str | None, str | None, str]]:
    """(url, server record, tokenizer source, model name to send, model label) for the run's duration."""
    from tokbench.schema.serving import ServerRecord
    from tokbench.serving import launch

    if args.launch:
        command, url = launch.launch_command(args.launch)
        url = args.url or url
        if not url:
            raise ConfigError("--launch", "no URL: give the server's URL or put {port} in the command", "add a URL")
        with launch.launched(command, url.rstrip("/"), timeout_s=args.launch_timeout) as server:
            yield url, server, args.tokenizer, args.model, args.model or "served-model"
            return
    if args.url:
        yield args.url, ServerRecord(), args.tokenizer, args.model, args.model or ""
        return
    print(f"starting transformers serve on preset {args.preset} (loopback)...", file=sys.stderr)
    serving = launch.transformers_serve_preset(
        args.preset, continuous_batching=args.continuous_batching, seed=args.seed, timeout_s=args.launch_timeout
    )
    with serving as (server, folder):
        label = args.preset + ("-cb" if args.continuous_batching else "")
        yield server.url, server, str(folder), str(folder), label  # the saved tokenizer has the chat template


def command_serve_bench(args: argparse.Namespace) -> int:
    from tokbench.serving.http import EndpointError

    try:
        api_key = api_key_from(args)
        if args.slo_search and not args.slo:
            raise ConfigError("--slo-search", "needs an objective", "add --slo ttft=...,tpot=...")
    except (ConfigError, EndpointError) as error:
        return usage_error(error)
    from tokbench.results.outputs import OutputLocationError

    try:
        return _run(args, api_key)
    except (ConfigError, EndpointError, OutputLocationError) as error:
        return usage_error(error)


def _run(args: argparse.Namespace, api_key: str | None) -> int:
    from tokbench.report.serving_view import definitions_card, render_serving, sweep_table
    from tokbench.report.terminal import make_console
    from tokbench.results.outputs import plan_result_target
    from tokbench.schema.results import BenchmarkResult
    from tokbench.serving.http import Endpoint
    from tokbench.serving.runner import ServingRun, auto_sweep, parse_slo, run_serving, slo_search, sweep

    if args.url:
        Endpoint.parse(args.url)  # a bad URL is a usage error before anything starts
    plan_result_target(str(Path(args.output_dir)) + "/", "check")  # an unwritable folder: refused before running
    slo = parse_slo(args.slo, args.slo_percentile) if args.slo else None
    console = make_console()
    store = _open_store(args.db)
    results: list[BenchmarkResult] = []

    def deliver(result: BenchmarkResult) -> None:
        results.append(result)
        _keep(result, args.output_dir, store)  # kept first: a rendering problem never costs a measurement
        console.print(render_serving(result))

    try:
        with _server(args) as (url, server, tokenizer, served_model, label):
            record = server.record() if hasattr(server, "record") else server
            settings = serving_settings(args, label)
            run = ServingRun(url=url, settings=settings, served_model=served_model, tokenizer=tokenizer, slo=slo,
                             dataset=args.dataset, allow_early_stop=args.allow_early_stop, server=record,
                             clients=args.clients or 0)  # fmt: skip
            outcome = None
            if args.versus:
                return _versus(args, run, api_key, deliver, console)
            if args.auto_sweep:
                outcome = auto_sweep(run, args.auto_sweep, deliver, api_key, args.max_concurrency)
            elif args.slo_search:
                low, high = _numbers(args.slo_search.replace(":", ","), "--slo-search", False)[:2]
                outcome = slo_search(run, low, high, deliver, api_key)
            elif args.rate and "," in args.rate:
                outcome = sweep(run, _numbers(args.rate, "--rate", False), deliver, api_key)
            elif args.concurrency and "," in args.concurrency:
                outcome = sweep(run, _numbers(args.concurrency, "--concurrency", True), deliver, api_key)
            else:
                deliver(run_serving(run, api_key))
    except TokbenchError as error:
        if not results:
            raise
        print(f"tokbench: {terminal_safe(error, newlines=False)} (kept {len(results)} results)", file=sys.stderr)
    finally:
        if store is not None:
            store.close()
    if len(results) > 1:
        console.print(sweep_table(results))
    if outcome is not None:
        for note in outcome.notes:
            console.print(f"sweep: {note}")
        if outcome.saturation is not None:
            verdict = outcome.saturation
            console.print(f"saturation: {'SATURATED' if verdict.saturated else 'not saturated'}: {verdict.reason}; "
                          f"max throughput {verdict.max_throughput:.3g} req/s")  # fmt: skip
        if args.slo_search:
            console.print(f"SLO search ({slo.describe() if slo else ''}): highest rate meeting it with 95% "
                          f"confidence: {outcome.slo_rate if outcome.slo_rate is not None else 'none in range'}; "
                          f"lowest rate missing it: {outcome.slo_failed_rate}")  # fmt: skip
    console.print(definitions_card())
    return _exit_code(results)


def _versus(args: argparse.Namespace, run: Any, api_key: str | None, deliver: Any, console: Any) -> int:
    """A/B of two servers: interleaved runs, then ``compare``'s verdict on them (pooled runs a side)."""
    from tokbench.report.compare_view import render_terminal
    from tokbench.results.comparison import ComparisonRefused, compare
    from tokbench.results.selectors import SelectedRun
    from tokbench.serving.http import Endpoint
    from tokbench.serving.runner import interleaved

    Endpoint.parse(args.versus)
    baseline = replace(run, settings=replace(run.settings, label=args.label or "baseline"))
    contender = replace(run, url=args.versus, server=type(run.server)(),
                        settings=replace(run.settings, label=args.versus_label))  # fmt: skip
    sides = interleaved(baseline, contender, args.rounds, deliver, (api_key, api_key))
    selected = [[SelectedRun(r, f"{r.serving.settings.label} run {i + 1}") for i, r in enumerate(side)]
                for side in sides]  # fmt: skip
    try:
        report = compare(selected[0], selected[1], baseline_source=baseline.url, contender_source=contender.url)
    except ComparisonRefused as error:
        print(f"tokbench: no verdict: {terminal_safe(error, newlines=False)}", file=sys.stderr)
        return EXIT_FAILED
    console.print(render_terminal(report))
    return _exit_code([*sides[0], *sides[1]])


def _exit_code(results: list[Any]) -> int:
    if not results:
        return EXIT_FAILED
    if all(r.status == "skipped" for r in results):
        return EXIT_SKIPPED
    if any(r.status == "failed" or (r.serving is not None and not r.serving.valid) for r in results):
        return EXIT_FAILED
    return EXIT_OK


def _open_store(path: str | None) -> Any:
    if not path:
        return None
    from tokbench.cli.common import open_store

    return open_store(path, must_exist=False)


def _keep(result: Any, output_dir: str, store: Any) -> None:
    from tokbench.interrupts import signals_deferred
    from tokbench.results.outputs import plan_result_target, write_result_json

    with signals_deferred():
        target = plan_result_target(str(Path(output_dir)) + "/", result.config.name)
        path = write_result_json(result.to_dict(), target)
        print(terminal_safe(f"result written to {path}", newlines=False))
        if store is not None:
            run_id = store.add(result)
            print(f"stored as run {run_id} in {store.path}")
