"""Command line: ``tokbench run ...``. Flags override a config file, which overrides the defaults."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokbench.config import ATTN_IMPLEMENTATIONS, AUTO, COMPILE_MODES, DTYPES, BenchmarkConfig, load_config_file
from tokbench.errors import ConfigError, TokbenchError

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_SKIPPED = 3
EXIT_FAILED = 4

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
    "warmup_min_iterations",
    "warmup_max_iterations",
    "warmup_budget_s",
    "measurement_min_iterations",
    "measurement_max_iterations",
    "measurement_budget_s",
    "target_relative_precision",
)


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
    return parser


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
    except TokbenchError as error:
        print(f"tokbench: {error}", file=sys.stderr)
        return EXIT_FAILED
    parser.error(f"unknown command {args.command}")
    return EXIT_USAGE
