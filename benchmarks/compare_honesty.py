"""How honest is `tokbench ab`? A/A false verdicts, A/B detection of a known slowdown, time to a verdict.

Each comparison is one real `tokbench ab` (the CLI, as a user runs it): interleaved pairs of fresh worker processes
of tiny-llama, sequential looks, until decided or --max-pairs. A/A: both sides identical; any metric called
faster or slower is a false verdict. A/B: before every forward of side B's model, a spin of SLOWDOWN × the previous
forward's thread CPU time (``engine.delay.CpuFractionDelay``: on a shared, loaded machine a wall-clock wait is no
known slowdown, since a sleep wakes late and a timed spin stretches while the process is not scheduled; extra CPU
work in proportion to the forward's own is); detected when the gate trips (a metric "slower"). It is injected
from outside tokbench's measurement, through each side's own environment (PYTHONPATH with a sitecustomize that
calls ``engine.delay.delay_from_environment``); both sides carry the hooks (side A spins 0), so their own cost is
on both sides, and the injected amount is measured (spun CPU ÷ forward CPU, from the hooks' logs).

    python benchmarks/compare_honesty.py --aa 20 --ab 20 --slowdown 0.05 --log honesty.jsonl
    python benchmarks/compare_honesty.py --mode both --aa 10 --ab 10 --log honesty.jsonl  # duet vs sequential
    python benchmarks/compare_honesty.py --summarize honesty.jsonl   # the figures of what has finished so far

--mode: ``duet`` (`tokbench ab --duet`: a pair's processes at once, calls in turns), ``sequential`` (--no-duet: a
pair's processes one after the other) or ``both`` (alternating, so both see the same hours of the machine).
A/A and A/B comparisons alternate, so a partial run still has both. Each line of --log is one comparison;
--keep DIR keeps each comparison's store (DIR/MODE-KIND-INDEX/ab.db) for a later look.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tokbench.engine.delay import FRACTION_VARIABLE, LOG_VARIABLE, logged_fraction

# The side's sitecustomize: engine.delay registers the global hook when TOKBENCH_FORWARD_DELAY_NS is set.
SITECUSTOMIZE = "from tokbench.engine.delay import delay_from_environment\n\ndelay_from_environment()\n"

DECIDED = ("faster", "slower")


def workload_flags(args: argparse.Namespace) -> list[str]:
    return [
        "--model", args.model, "--sequence-length", str(args.sequence_length), "--new-tokens", str(args.new_tokens),
        "--warmup-iterations", str(args.warmup_iterations), "--measurement-iterations",
        str(args.measurement_iterations), "--device", "cpu", "--no-monitor",
    ]  # fmt: skip


def environment() -> dict[str, str]:
    # One thread per process: two processes spinning two threads each on a shared 2-core box crawl.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}


def one_comparison(args: argparse.Namespace, kind: str, index: int, folder: Path, mode: str) -> dict[str, Any]:
    work = (Path(args.keep) if args.keep else folder) / f"{mode}-{kind}-{index}"
    logs = {side: work / f"waits-{side}" for side in "ab"}
    for path in logs.values():
        path.mkdir(parents=True)
    side_flags = []
    for side, fraction in (("a", 0.0), ("b", args.slowdown if kind == "ab" else 0.0)):
        path = os.pathsep.join(filter(None, (str(folder / "inject"), os.environ.get("PYTHONPATH"))))
        variables = (f"PYTHONPATH={path}", f"{FRACTION_VARIABLE}={fraction}", f"{LOG_VARIABLE}={logs[side]}")
        side_flags += [flag for variable in variables for flag in (f"--{side}-env", variable)]
    command = [
        sys.executable, "-m", "tokbench", "ab", *workload_flags(args), *side_flags, "--db", str(work / "ab.db"),
        "--max-pairs", str(args.max_pairs), "--format", "json", "--no-progress", "--order-seed", str(index),
        "--duet" if mode == "duet" else "--no-duet",
    ]  # fmt: skip
    started = time.monotonic()
    done = subprocess.run(command, env=environment(), capture_output=True, text=True, timeout=6 * 3600)
    elapsed = time.monotonic() - started
    if done.returncode != 0:
        return {"kind": kind, "mode": mode, "index": index, "error": done.stderr[-800:], "elapsed_s": elapsed}
    report = json.loads(done.stdout)
    metrics = {m["metric"]: m for w in report["workloads"] for m in w["metrics"]}
    tpot = metrics["tpot_ms"]["median"]
    injected = logged_fraction(str(logs["b"]))  # spun CPU ÷ forward CPU on side B (0 on side A)
    expected = None if injected is None else 1 + injected  # an upper bound: a step is a forward and a bit more
    covered = None
    if expected is not None and tpot["ci_low"] is not None:
        covered = tpot["ci_low"] <= expected <= tpot["ci_high"]
    return {
        "kind": kind,
        "mode": mode,
        "index": index,
        "elapsed_s": elapsed,
        "design": report["workloads"][0]["design"],
        "pairs": report["sequential"]["pairs"],
        "stopped_because": report["sequential"]["stopped_because"],
        "verdicts": {name: m["verdict"] for name, m in metrics.items()},
        "regressed": report["regressed"],
        "tpot_ratio": tpot["ratio"],
        "tpot_interval": [tpot["ci_low"], tpot["ci_high"]],
        "injected_cpu_fraction": injected,
        "expected_tpot_ratio": expected,
        "tpot_interval_covers_injected": covered,
        "load_average": os.getloadavg(),
    }


def summarize(rows: list[dict[str, Any]]) -> None:
    """The figures of each mode in ``rows`` (rows written before modes existed are sequential)."""
    for mode in sorted({row.get("mode", "sequential") for row in rows}):
        print(f"--- {mode} pairs (tokbench ab {'--duet' if mode == 'duet' else '--no-duet'})")
        summarize_mode([row for row in rows if row.get("mode", "sequential") == mode])


def summarize_mode(rows: list[dict[str, Any]]) -> None:
    aa = [row for row in rows if row["kind"] == "aa" and "error" not in row]
    ab = [row for row in rows if row["kind"] == "ab" and "error" not in row]
    errors = [row for row in rows if "error" in row]
    false = sum(any(v in DECIDED for v in row["verdicts"].values()) for row in aa)
    detected = sum(row["regressed"] for row in ab)
    finished = [row for row in rows if "error" not in row]
    decided = [row["elapsed_s"] for row in finished if row["stopped_because"] == "every hypothesis decided"]
    covered = [row["tpot_interval_covers_injected"] for row in ab if row["tpot_interval_covers_injected"] is not None]
    loads = [row["load_average"][0] for row in rows if "load_average" in row]
    print(f"A/A: {false}/{len(aa)} comparisons with a false faster/slower verdict ({false / max(len(aa), 1):.0%})")
    print(f"A/B: {detected}/{len(ab)} detected the injected slowdown as slower ({detected / max(len(ab), 1):.0%}); "
          f"TPOT interval covered the measured injection in {sum(covered)}/{len(covered)}")  # fmt: skip
    injected = [row["expected_tpot_ratio"] for row in ab if row["expected_tpot_ratio"] is not None]
    if injected:
        print(f"A/B: injected ratio (spun CPU ÷ forward CPU, measured) median ×{statistics.median(injected):.3f}")
    if decided:
        pairs = statistics.median(row["pairs"] for row in finished)
        print(f"median time to a decided verdict: {statistics.median(decided) / 60:.1f} min over {len(decided)} "
              f"decided comparisons; median pairs {pairs:.0f}")  # fmt: skip
    if finished:
        widths = [row["tpot_interval"][1] / row["tpot_interval"][0] for row in finished if row["tpot_interval"][0]]
        print(f"median wall time per comparison {statistics.median(r['elapsed_s'] for r in finished) / 60:.1f} min; "
              f"median TPOT interval at the end ×{statistics.median(widths) ** 0.5:.3f} either way")  # fmt: skip
    undecided = [row for row in finished if row["stopped_because"] != "every hypothesis decided"]
    print(f"{len(undecided)} comparison(s) ended undecided (max pairs); {len(errors)} error(s)")
    if loads:
        print(f"1-minute load average during the runs: median {statistics.median(loads):.2f}, max {max(loads):.2f} "
              f"(now {os.getloadavg()[0]:.2f}, {os.cpu_count()} CPUs)")  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aa", type=int, default=20, help="A/A comparisons")
    parser.add_argument("--ab", type=int, default=20, help="A/B comparisons")
    parser.add_argument("--slowdown", type=float, default=0.05, help="injected CPU work, × each forward's own")
    parser.add_argument("--max-pairs", type=int, default=20)
    parser.add_argument("--model", default="tiny-llama")
    parser.add_argument("--sequence-length", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=16)
    parser.add_argument("--warmup-iterations", type=int, default=2)
    parser.add_argument("--measurement-iterations", type=int, default=10)
    parser.add_argument("--log", default="compare-honesty.jsonl", help="one JSON line per comparison (appended)")
    parser.add_argument("--summarize", metavar="LOG", help="only print the figures of LOG")
    parser.add_argument("--mode", choices=("duet", "sequential", "both"), default="duet",
                        help="how a pair's two processes run (default duet)")  # fmt: skip
    parser.add_argument("--keep", metavar="DIR", help="keep each comparison's store under DIR")
    args = parser.parse_args()
    if args.summarize:
        summarize([json.loads(line) for line in Path(args.summarize).read_text().splitlines() if line.strip()])
        return 0
    with tempfile.TemporaryDirectory(prefix="tokbench-honesty-") as name:
        folder = Path(name)
        (folder / "inject").mkdir()
        (folder / "inject" / "sitecustomize.py").write_text(SITECUSTOMIZE)
        print(f"side B spins {args.slowdown:.1%} of each forward's CPU time before the next one", flush=True)
        modes = ("duet", "sequential") if args.mode == "both" else (args.mode,)
        plan = [(kind, i, mode) for mode in modes for kind, count in (("aa", args.aa), ("ab", args.ab))
                for i in range(count)]  # fmt: skip
        plan.sort(key=lambda item: (item[1], item[0], item[2]))  # alternate A/A and A/B, and the modes
        print(f"uptime: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}", flush=True)
        rows = []
        for kind, index, mode in plan:
            row = one_comparison(args, kind, index, folder, mode)
            rows.append(row)
            with open(args.log, "a", encoding="utf-8") as stream:
                stream.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
        summarize(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
