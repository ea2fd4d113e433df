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
        help="no hardware sampling, per-iteration memory peaks, or efficiency figures",
    )
    add("--monitor-interval-ms", type=int, help="hardware sampling period while measuring (default: 50)")
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
