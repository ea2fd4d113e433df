#!/usr/bin/env python3
"""`make gpu-check`: prove tokbench's GPU paths on one real CUDA GPU, in one command, in a few minutes.

It runs every test marked ``cuda``, then short real runs of small-llama on the GPU (bf16 sdpa; compile
``reduce-overhead`` with CUDA graphs; static cache; flex_attention; continuous batching; int4 with ``--tune``
and with the Triton kernel pinned; ``--profile-tokens``; a 2-config sweep in isolated processes), each as its
own subprocess under a hard time limit, and writes ``report.md`` and ``report.json`` into one folder: what
passed, what failed with the error, each run's headline figures, the NVML fields it saw, and whether each
GPU path agrees with what it should show (the expected value is written next to what was observed).

Without CUDA it says so in one line and exits 0 having run nothing. ``--rehearse`` runs the same machinery on
the CPU with tiny-llama (the CUDA-only expectations then fail, saying why): that is how the script's own
behaviour is tested on machines without a GPU.

Exit codes: 0 every step passed (or no CUDA), 1 some step failed or broke an expectation, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_BUDGET_S = 480.0  # the whole check must end inside 8 minutes on one H100
TAIL_CHARS = 2000

# A synchronized decode step of a real model on a GPU (a host copy of the token included) takes well over
# this; stamps read at an asynchronous launch would show gaps of a few microseconds.
MIN_SYNCHRONIZED_GAP_NS = 20_000
# The gap between the last token's stamp and generate's return: larger means the stamps ran ahead of the GPU.
MAX_TRAILING_GAP_FRACTION = 0.10
MAX_TRAILING_GAP_NS = 5_000_000


@dataclass(frozen=True)
class Check:
    """One expectation on a step's outcome: what it should show, what it showed."""

    name: str
    expected: str
    observed: str
    passed: bool


@dataclass(frozen=True)
class Step:
    """One command of the check, run from the repository root under its own time limit."""

    name: str
    description: str
    argv: tuple[str, ...]
    timeout_s: float
    kind: str  # "pytest" | "run" | "sweep"
    output: str = ""  # the result JSON (run) or store (sweep) the step writes, relative to the report folder
    expectations: tuple[str, ...] = ()


@dataclass
class StepOutcome:
    name: str
    description: str
    status: str  # "passed" | "failed" | "timed out" | "not run"
    seconds: float = 0.0
    returncode: int | None = None
    error: str = ""
    headline: dict[str, Any] = field(default_factory=dict)
    nvml_fields: list[str] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)


# --- expectations on one result (pure: a result JSON in, a Check out) -----------------------------------


def _summary_median(result: dict[str, Any], metric: str) -> float | None:
    entry = (result.get("summary") or {}).get(metric) or {}
    value = entry.get("median")
    return float(value) if isinstance(value, (int, float)) else None


def _gpu_series(result: dict[str, Any]) -> dict[str, Any] | None:
    for series in (result.get("monitor") or {}).get("series") or []:
        if series.get("backend") in ("nvml", "amdsmi"):  # "gpu" is the slot that says why there is none
            return series
    return None


def check_status_ok(result: dict[str, Any]) -> Check:
    status = result.get("status")
    return Check("status", "ok", f"{status}: {result.get('reason', '')}".rstrip(": "), status == "ok")


def check_on_cuda(result: dict[str, Any]) -> Check:
    device = str((result.get("effective_settings") or {}).get("device", ""))
    gpus = (result.get("environment") or {}).get("gpus") or []
    name = gpus[0].get("name", "") if gpus and isinstance(gpus[0], dict) else ""
    observed = f"device {device or '?'}" + (f" ({name})" if name else "")
    return Check("ran on the GPU", "effective device cuda:N", observed, device.startswith("cuda"))


def check_stamps_synchronized(result: dict[str, Any]) -> Check:
    """Stamps taken after the token reached the host: ordered, real gaps, and no long tail before the return."""
    problems: list[str] = []
    smallest_gap: int | None = None
    largest_tail_fraction = 0.0
    iterations = result.get("iterations") or []
    for index, trace in enumerate(iterations):
        t0, end = int(trace["t0_ns"]), int(trace["end_ns"])
        submitted = trace.get("request_submitted_ns") or []
        for row, stamps in enumerate(trace.get("token_timestamps_ns") or []):
            start = int(submitted[row]) if row < len(submitted) else t0
            if not stamps:
                problems.append(f"iteration {index} row {row} has no stamps")
                continue
            if stamps[0] <= start or stamps[-1] > end:
                problems.append(f"iteration {index} row {row}: stamps outside [t0, end]")
            gaps = [b - a for a, b in itertools.pairwise(stamps)]
            if any(gap <= 0 for gap in gaps):
                problems.append(f"iteration {index} row {row}: stamps not strictly increasing")
            if gaps:
                smallest_gap = min(gaps) if smallest_gap is None else min(smallest_gap, min(gaps))
        last = max((s[-1] for s in trace.get("token_timestamps_ns") or [] if s), default=end)
        if end > t0:
            largest_tail_fraction = max(largest_tail_fraction, (end - last) / (end - t0))
            if end - last > max(MAX_TRAILING_GAP_NS, MAX_TRAILING_GAP_FRACTION * (end - t0)):
                problems.append(f"iteration {index}: {((end - last) / 1e6):.2f} ms between the last stamp and return")
    if not iterations:
        problems.append("no measured iterations")
    if smallest_gap is not None and smallest_gap < MIN_SYNCHRONIZED_GAP_NS:
        problems.append(f"smallest inter-token gap {smallest_gap / 1e3:.1f} µs (an asynchronous stamp?)")
    observed = (
        f"{len(iterations)} iterations; smallest gap {smallest_gap / 1e3:.1f} µs; "
        f"largest tail {largest_tail_fraction:.1%} of E2E"
        if smallest_gap is not None
        else "no gaps"
    )
    expected = (
        f"stamps strictly increasing inside [t0, end], every gap ≥ {MIN_SYNCHRONIZED_GAP_NS / 1e3:.0f} µs, "
        f"last stamp within max({MAX_TRAILING_GAP_NS / 1e6:.0f} ms, {MAX_TRAILING_GAP_FRACTION:.0%} of E2E) of return"
    )
    return Check("token stamps after synchronization", expected, "; ".join(problems) or observed, not problems)


def check_nvml_sampled(result: dict[str, Any]) -> Check:
    series = _gpu_series(result)
    if series is None:
        return Check("NVML sampled", "an nvml series with samples", "no GPU series in the result", False)
    columns = series.get("columns") or {}
    count = len(series.get("timestamps_ns") or [])
    seen = sorted(name for name, values in columns.items() if any(v is not None for v in values))
    needed = {"gpu_util_percent", "memory_used_bytes", "power_w"}
    missing = sorted(needed - set(seen))
    ok = series.get("status") == "ok" and count >= 2 and not missing
    observed = f"status {series.get('status')}, {count} samples on {series.get('device')}; fields: {', '.join(seen)}"
    if missing:
        observed += f"; missing {', '.join(missing)}"
    return Check("NVML sampled", "status ok, ≥ 2 samples with utilization, memory and power", observed, ok)


def check_energy_increasing(result: dict[str, Any]) -> Check:
    series = _gpu_series(result)
    readings = [v for v in ((series or {}).get("columns") or {}).get("energy_mj") or [] if v is not None]
    efficiency = result.get("efficiency") or {}
    energy_j = efficiency.get("energy_j")
    monotonic = all(b >= a for a, b in itertools.pairwise(readings))
    ok = len(readings) >= 2 and monotonic and readings[-1] > readings[0] and bool(energy_j) and energy_j > 0
    observed = (
        f"{len(readings)} readings, {'never decreasing' if monotonic else 'DECREASED'}, "
        f"delta {((readings[-1] - readings[0]) / 1000.0 if len(readings) >= 2 else 0):.2f} J; "
        f"energy_j {energy_j}; per token {efficiency.get('energy_per_token_j')}; {efficiency.get('energy_status', '')}"
    )
    return Check("energy counter increasing", "counter never decreases and grows over the window; energy_j > 0",
                 observed, ok)  # fmt: skip


def check_mbu_plausible(result: dict[str, Any]) -> Check:
    efficiency = result.get("efficiency") or {}
    mbu = efficiency.get("mbu")
    peak = efficiency.get("peak") or {}
    ok = isinstance(mbu, (int, float)) and 0 < mbu <= 1 and peak.get("kind") == "table"
    observed = (
        f"MBU {mbu if mbu is None else f'{mbu:.2%}'} of {peak.get('memory_bandwidth_bytes_s', 0) / 1e12:.2f} TB/s "
        f"({peak.get('kind')}: {peak.get('device')}); {efficiency.get('peak_unavailable', '')}"
    )
    return Check("decode MBU plausible", "0 < MBU ≤ 100% against the GPU's table entry (kind table)", observed, ok)


def check_compiled(result: dict[str, Any]) -> Check:
    compile_record = (result.get("phases") or {}).get("compile") or {}
    ok = bool(compile_record.get("compiled")) and compile_record.get("recompiles_during_measurement", 1) == 0
    observed = (
        f"compiled {compile_record.get('compiled')}, forward compiled {compile_record.get('forward_compiled')}, "
        f"graphs {compile_record.get('graphs_before')}→{compile_record.get('graphs_after_measurement')}, "
        f"recompiles while measuring {compile_record.get('recompiles_during_measurement')}"
    )
    return Check("compiled, no recompiles", "compiled true and 0 recompiles while measuring", observed, ok)


def check_continuous_batching(result: dict[str, Any]) -> Check:
    setup = (result.get("phases") or {}).get("continuous_batching_setup")
    iterations = result.get("iterations") or []
    per_request = all(len(t.get("request_submitted_ns") or []) == len(t.get("token_timestamps_ns") or [])
                      for t in iterations)  # fmt: skip
    ok = bool(setup) and bool(iterations) and per_request
    observed = f"setup {'recorded' if setup else 'missing'}; per-request submission stamps {per_request}"
    return Check("continuous batching", "manager set up once; every request has its own submission stamp", observed, ok)


def check_triton_kernel(result: dict[str, Any]) -> Check:
    quantization = (result.get("effective_settings") or {}).get("quantization") or {}
    per_shape = quantization.get("kernels") or {}
    found = sorted({str(label) for by_m in per_shape.values() for label in by_m.values()})
    ok = any(label.startswith("triton") for label in found)
    observed = f"kernels in use: {', '.join(found) or 'none recorded'}"
    return Check("Triton int4 kernel used", "at least one layer runs the triton kernel", observed, ok)


def check_tuned(result: dict[str, Any]) -> Check:
    quantization = result.get("quantization") or {}
    tuning = quantization.get("tuning") or {}
    warnings = quantization.get("tuning_warnings") or []
    ok = bool(tuning) and result.get("status") == "ok"
    observed = f"tuning report {'present' if tuning else 'missing'}; warnings: {len(warnings)}"
    return Check("int4 tuned on the GPU", "a tuning report (candidates timed per shape and M)", observed, ok)


def check_profile(result: dict[str, Any], folder: Path) -> Check:
    profile = result.get("profile") or {}
    trace = Path(str(profile.get("trace_path", "")))
    trace = trace if trace.is_absolute() else folder / trace
    activities = profile.get("activities") or []
    ok = profile.get("forward_passes", 0) >= profile.get("tokens", 1) > 0 and "CUDA" in activities and trace.is_file()
    observed = (
        f"{profile.get('forward_passes')} forwards for {profile.get('tokens')} tokens, activities "
        f"{activities}, trace {'written' if trace.is_file() else 'missing'}"
    )
    return Check("profile with CUDA activity", "one forward per token, CUDA activity, a trace file", observed, ok)


RESULT_CHECKS: dict[str, Callable[[dict[str, Any]], Check]] = {
    "status": check_status_ok,
    "cuda": check_on_cuda,
    "stamps": check_stamps_synchronized,
    "nvml": check_nvml_sampled,
    "energy": check_energy_increasing,
    "mbu": check_mbu_plausible,
    "compiled": check_compiled,
    "continuous": check_continuous_batching,
    "triton": check_triton_kernel,
    "tuned": check_tuned,
}


def headline(result: dict[str, Any]) -> dict[str, Any]:
    """The figures a person looks at first, in ms and tok/s."""
    efficiency = result.get("efficiency") or {}
    return {
        "status": result.get("status"),
        "ttft_ms": _summary_median(result, "ttft_ms"),
        "tpot_ms": _summary_median(result, "tpot_ms"),
        "e2e_ms": _summary_median(result, "e2e_latency_ms"),
        "decode_tok_s": _summary_median(result, "decode_throughput_tok_s"),
        "iterations": len(result.get("iterations") or []),
        "mbu": efficiency.get("mbu"),
        "energy_per_token_j": efficiency.get("energy_per_token_j"),
        "peak_memory_bytes": efficiency.get("peak_memory_bytes"),
    }


def nvml_fields_seen(result: dict[str, Any]) -> list[str]:
    series = _gpu_series(result)
    columns = (series or {}).get("columns") or {}
    return sorted(name for name, values in columns.items() if any(v is not None for v in values))


# --- the plan -------------------------------------------------------------------------------------------


def cuda_test_files() -> list[str]:
    """Only the test modules that hold cuda tests: the GPU machine may lack what other modules import."""
    tests = REPO_ROOT / "tests"
    return sorted(
        str(path.relative_to(REPO_ROOT))
        for path in tests.rglob("test_*.py")
        if "mark.cuda" in path.read_text(encoding="utf-8", errors="replace")
    )


def plan_steps(python: str, folder: Path, model: str, device: str, fast: bool) -> list[Step]:
    """The steps in order; ``fast`` (rehearsal) shortens every run."""
    new_tokens, iterations = ("8", "2") if fast else ("64", "10")
    common = (
        "--model", model, "--device", device, "--batch-size", "1", "--sequence-length", "32" if fast else "128",
        "--new-tokens", new_tokens, "--warmup-iterations", "2" if fast else "3",
        "--measurement-iterations", iterations, "--monitor-interval-ms", "10", "--no-progress",
    )  # fmt: skip
    gpu_checks = ("status", "cuda", "stamps", "nvml", "energy", "mbu")

    def run(name: str, description: str, extra: Sequence[str], timeout_s: float, checks: Sequence[str]) -> Step:
        output = f"{name}.json"
        argv = (python, "-m", "tokbench", "run", *common, *extra, "--name", name, "--output", str(folder / output))
        return Step(name, description, argv, timeout_s, "run", output, tuple(checks))

    sweep_file = folder / "sweep.yaml"
    steps = [
        Step(
            "cuda-tests",
            "every test marked cuda",
            (python, "-m", "pytest", "-q", "-m", "cuda", "-p", "no:cacheprovider", *cuda_test_files()),
            150.0,
            "pytest",
        ),
        run("bf16-sdpa", "bfloat16, sdpa, dynamic cache", ("--dtype", "bfloat16", "--attn", "sdpa"), 90.0, gpu_checks),
        run(
            "compile-reduce-overhead",
            "torch.compile mode reduce-overhead (CUDA graphs) with the static cache",
            ("--dtype", "bfloat16", "--compile", "reduce-overhead"),
            240.0,
            (*gpu_checks, "compiled"),
        ),
        run("static-cache", "static KV cache, eager", ("--dtype", "bfloat16", "--static-cache"), 90.0, gpu_checks),
        run("flex-attention", "flex_attention", ("--dtype", "bfloat16", "--attn", "flex_attention"), 120.0, gpu_checks),
        run(
            "continuous-batching",
            "transformers continuous batching, 4 requests",
            ("--dtype", "bfloat16", "--continuous-batching", "--batch-size", "4"),
            120.0,
            (*gpu_checks, "continuous"),
        ),
        run(
            "int4-tune",
            "tokbench int4 with --tune (kernels timed per shape and M on the GPU)",
            ("--dtype", "bfloat16", "--quantization", "int4", "--tune", "--tune-budget-s", "1"),
            150.0,
            (*gpu_checks, "tuned"),
        ),
        run(
            "int4-triton",
            "tokbench int4 with the Triton kernel pinned",
            ("--dtype", "bfloat16", "--quantization", "int4", "--quant-kernel", "triton"),
            120.0,
            (*gpu_checks, "triton"),
        ),
        run(
            "profile-tokens",
            "--profile-tokens 8: a profiled generation after the measurement",
            ("--dtype", "bfloat16", "--profile-tokens", "8"),
            90.0,
            ("status", "cuda", "profile"),
        ),
        Step(
            "sweep-2-configs",
            "a 2-config sweep in isolated processes (fork server) into a fresh store",
            (
                python,
                "-m",
                "tokbench",
                "sweep",
                "--config",
                str(sweep_file),
                "--db",
                str(folder / "sweep.sqlite"),
                "--timeout",
                "120",
                "--no-share-load",  # one isolated process per config, as a user's first sweep would check
            ),
            180.0,
            "sweep",
            "sweep.sqlite",
        ),
    ]
    sweep_fields = {
        "model": model, "device": device, "dtype": "bfloat16", "sequence_length": 32 if fast else 128,
        "new_tokens": int(new_tokens), "batch_size": [1, 2], "warmup_iterations": 2, "measurement_iterations": 3,
    }  # fmt: skip
    sweep_file.parent.mkdir(parents=True, exist_ok=True)
    sweep_file.write_text(json.dumps(sweep_fields, indent=2) + "\n", encoding="utf-8")
    return steps


# --- running --------------------------------------------------------------------------------------------


def _tail(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return text[-TAIL_CHARS:]


def run_command(argv: Sequence[str], timeout_s: float, log: Path, env: dict[str, str]) -> tuple[int | None, bool]:
    """Run ``argv`` in its own process group; on timeout kill the whole group. Returns (returncode, timed_out)."""
    with log.open("wb") as output:
        process = subprocess.Popen(
            list(argv), cwd=REPO_ROOT, stdout=output, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        try:
            return process.wait(timeout=timeout_s), False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            return None, True


def evaluate_step(step: Step, folder: Path, returncode: int | None, timed_out: bool, log: Path) -> StepOutcome:
    """Turn a finished command into an outcome: status, headline figures, NVML fields, expectation checks."""
    outcome = StepOutcome(step.name, step.description, "passed", returncode=returncode)
    if timed_out:
        outcome.status = "timed out"
        outcome.error = f"killed after its {step.timeout_s:.0f} s limit; output tail:\n{_tail(log)}"
        return outcome
    if step.kind == "pytest":
        if returncode not in (0, 5):  # 5: no test collected (none marked cuda is not a GPU failure)
            outcome.status = "failed"
            outcome.error = _tail(log)
        outcome.headline = {"summary": _pytest_summary(log)}
        return outcome
    if step.kind == "sweep":
        outcome.checks.append(_check_sweep_store(folder / step.output))
    else:
        path = folder / step.output
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            outcome.status = "failed"
            outcome.error = f"no readable result ({error}); exit code {returncode}; output tail:\n{_tail(log)}"
            return outcome
        outcome.headline = headline(result)
        outcome.nvml_fields = nvml_fields_seen(result)
        for name in step.expectations:
            check = check_profile(result, folder) if name == "profile" else RESULT_CHECKS[name](result)
            outcome.checks.append(check)
    if any(not check.passed for check in outcome.checks):
        outcome.status = "failed"
        if not outcome.error:
            failed = [c.name for c in outcome.checks if not c.passed]
            outcome.error = f"expectations not met: {', '.join(failed)}"
    if returncode not in (0, None) and outcome.status == "passed":
        outcome.status = "failed"
        outcome.error = f"exit code {returncode}; output tail:\n{_tail(log)}"
    return outcome


def _pytest_summary(log: Path) -> str:
    lines = [line for line in _tail(log).splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", line)]
    return lines[-1].strip("= ") if lines else "no summary line"


def _check_sweep_store(path: Path) -> Check:
    expected = "2 configs stored, both ok, each from its own process"
    if not path.is_file():
        return Check("sweep stored", expected, "no store written", False)
    connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT status, result_json FROM results").fetchall()
    except sqlite3.Error as error:
        return Check("sweep stored", expected, f"store unreadable: {error}", False)
    finally:
        connection.close()
    statuses = [status for status, _ in rows]
    pids = {json.loads(payload).get("launch", {}).get("pid") for _, payload in rows}
    observed = f"{len(rows)} stored: {', '.join(statuses)}; {len(pids)} distinct worker pids"
    return Check("sweep stored", expected, observed, len(rows) == 2 and statuses == ["ok", "ok"] and len(pids) == 2)


# --- the report -----------------------------------------------------------------------------------------


def environment_facts(python: str) -> dict[str, Any]:
    """torch / CUDA / GPU facts from the Python that runs the steps, and nvidia-smi's view, best effort."""
    probe = (
        "import json, torch; c = torch.cuda.is_available(); print(json.dumps({'torch': torch.__version__, "
        "'cuda': torch.version.cuda, 'cuda_available': c, 'device_name': torch.cuda.get_device_name(0) if c else None,"
        "'device_count': torch.cuda.device_count() if c else 0}))"
    )
    facts: dict[str, Any] = {"python": python}
    try:
        completed = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120, check=False)
        facts.update(json.loads(completed.stdout.strip().splitlines()[-1]))
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired) as error:
        facts["probe_error"] = str(error)
    try:
        query = "name,driver_version,memory.total,power.limit,clocks.max.sm,clocks.max.mem,persistence_mode"
        completed = subprocess.run(
            ["nvidia-smi", f"--query-gpu={query}", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        facts["nvidia_smi"] = completed.stdout.strip() or completed.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as error:
        facts["nvidia_smi"] = f"unavailable: {error}"
    facts["visible_devices"] = os.environ.get("CUDA_VISIBLE_DEVICES")
    return facts


def write_report(folder: Path, facts: dict[str, Any], outcomes: list[StepOutcome], elapsed_s: float) -> None:
    passed = sum(o.status == "passed" for o in outcomes)
    payload = {
        "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "elapsed_s": round(elapsed_s, 1),
        "passed": passed,
        "total": len(outcomes),
        "environment": facts,
        "steps": [asdict(o) for o in outcomes],
    }
    (folder / "report.json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    lines = [
        "# tokbench gpu-check",
        "",
        f"{passed} of {len(outcomes)} steps passed in {elapsed_s:.0f} s; "
        f"{facts.get('device_name') or 'no CUDA device'}; torch {facts.get('torch')} (CUDA {facts.get('cuda')}); "
        f"nvidia-smi: {facts.get('nvidia_smi', '')}",
        "",
        "| step | status | s | TTFT ms | TPOT ms | decode tok/s | MBU | J/token |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for o in outcomes:
        h = o.headline

        def fmt(key: str, spec: str, h: dict[str, Any] = h) -> str:
            value = h.get(key)
            return format(value, spec) if isinstance(value, (int, float)) else "–"

        lines.append(
            f"| {o.name} | {o.status} | {o.seconds:.0f} | {fmt('ttft_ms', '.2f')} | {fmt('tpot_ms', '.3f')} | "
            f"{fmt('decode_tok_s', ',.0f')} | {fmt('mbu', '.2%')} | {fmt('energy_per_token_j', '.4f')} |"
        )
    for o in outcomes:
        lines += ["", f"## {o.name}: {o.status}", "", o.description]
        if o.headline.get("summary"):
            lines.append(f"pytest: {o.headline['summary']}")
        if o.nvml_fields:
            lines.append(f"NVML fields seen: {', '.join(o.nvml_fields)}")
        for check in o.checks:
            mark = "✓" if check.passed else "✗"
            lines.append(f"- {mark} **{check.name}**: expected {check.expected}; observed {check.observed}")
        if o.error:
            lines += ["", "```", o.error.strip()[-TAIL_CHARS:], "```"]
    (folder / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="report folder (default: gpu-check-<UTC time> here)")
    parser.add_argument("--steps", help="comma-separated step names to run (default: all)")
    parser.add_argument("--budget-s", type=float, default=DEFAULT_BUDGET_S, help="whole-check time limit")
    parser.add_argument("--python", default=sys.executable, help="the Python that runs the steps")
    parser.add_argument(
        "--rehearse", action="store_true", help="run on the CPU with tiny-llama (tests the script; GPU checks fail)"
    )
    args = parser.parse_args(argv)
    if not args.budget_s > 0:
        parser.error("--budget-s must be a positive number of seconds")

    if not args.rehearse:
        import torch

        if not torch.cuda.is_available():
            print(f"gpu-check: no CUDA GPU visible (torch {torch.__version__}); nothing run")
            return 0
    model, device = ("tiny-llama", "cpu") if args.rehearse else ("small-llama", "cuda")
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    folder = (args.out or Path(f"gpu-check-{stamp}")).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    steps = plan_steps(args.python, folder, model, device, fast=args.rehearse)
    if args.steps:
        wanted = [name.strip() for name in args.steps.split(",") if name.strip()]
        unknown = sorted(set(wanted) - {s.name for s in steps})
        if unknown:
            parser.error(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(s.name for s in steps)}")
        steps = [s for s in steps if s.name in wanted]

    env = dict(os.environ)
    # Runs from a checkout without an install (the GPU machine may have no registry): the source tree first.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT / "src"), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.setdefault("TOKBENCH_CACHE_DIR", str(folder / "cache"))

    facts = environment_facts(args.python)
    started = time.monotonic()
    outcomes: list[StepOutcome] = []
    for step in steps:
        left = args.budget_s - (time.monotonic() - started)
        if left < 10:
            outcomes.append(StepOutcome(step.name, step.description, "not run", error="the time budget ran out"))
            continue
        print(f"gpu-check: {step.name} (limit {min(step.timeout_s, left):.0f} s) ...", flush=True)
        log = folder / f"{step.name}.log"
        step_started = time.monotonic()
        returncode, timed_out = run_command(step.argv, min(step.timeout_s, left), log, env)
        outcome = evaluate_step(step, folder, returncode, timed_out, log)
        outcome.seconds = time.monotonic() - step_started
        outcomes.append(outcome)
        print(f"gpu-check: {step.name}: {outcome.status} in {outcome.seconds:.0f} s", flush=True)
    elapsed = time.monotonic() - started
    write_report(folder, facts, outcomes, elapsed)
    passed = sum(o.status == "passed" for o in outcomes)
    print(f"gpu-check: {passed} of {len(outcomes)} steps passed in {elapsed:.0f} s; report: {folder / 'report.md'}")
    return 0 if passed == len(outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
