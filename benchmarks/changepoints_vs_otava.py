"""tokbench's change-point detector beside Apache Otava, on one seeded, labelled set of series.

    python benchmarks/changepoints_vs_otava.py [--otava-python /tmp/otava-venv/bin/python] [--quick]

Otava runs in its own virtualenv (it pins its own numpy): ``python3 -m venv /tmp/otava-venv &&
/tmp/otava-venv/bin/pip install apache-otava==0.8.0``. Without it only tokbench is scored. Nothing of Otava's
is copied here: a few lines call its public functions in a subprocess.

The set (seeded; level 100; noise σ): single steps of 2-10σ (n 30/60/120); regressions fixed after 3-10 runs
(otava-test-data's ``regression_fix`` shape, noise-free and noisy); 10σ changes in the newest 1, 2 and 3 runs;
heavy tails (log-normal, t₃) flat and with a step; two +30% outliers; slow linear drift (no labelled change);
flat independent series; flat AR(1) series with ρ 0.5 and 0.8. Scoring: a detection within ±2 runs of a labelled
change is a true positive (one-to-one, nearest first); every detection on a series without a label is a false
alarm. Prints precision, recall, F1 per detector overall and per group, false alarms per flat series and the time
per series.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tokbench.analysis.changepoints import find_change_points

TOLERANCE = 2
OTAVA_RUNNER = """
import json, sys, time
from otava.analysis import compute_change_points, compute_change_points_orig
series = json.load(sys.stdin)
out = {"otava-orig": [], "otava": [], "otava-orig-s": [], "otava-s": []}
for x in series:
    started = time.process_time()
    found, _ = compute_change_points_orig(list(x), seed=0)
    out["otava-orig-s"].append(time.process_time() - started)
    out["otava-orig"].append(sorted(int(p.index) for p in found))
    started = time.process_time()
    found, _ = compute_change_points(list(x))
    out["otava-s"].append(time.process_time() - started)
    out["otava"].append(sorted(int(p.index) for p in found))
json.dump(out, sys.stdout)
"""


@dataclass
class Labelled:
    group: str
    values: list[float]
    changes: list[int]
    flat: bool = False  # no labelled change: every detection is a false alarm


@dataclass
class Score:
    truths: int = 0
    detections: int = 0
    hits: int = 0
    series: int = 0
    alarmed: int = 0  # flat series with any detection
    seconds: list[float] = field(default_factory=list)

    def add(self, item: Labelled, found: list[int], seconds: float) -> None:
        self.truths += len(item.changes)
        self.detections += len(found)
        self.hits += _matches(item.changes, found)
        self.series += 1
        self.alarmed += bool(item.flat and found)
        self.seconds.append(seconds)

    @property
    def precision(self) -> float:
        return self.hits / self.detections if self.detections else math.nan

    @property
    def recall(self) -> float:
        return self.hits / self.truths if self.truths else math.nan

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r > 0 else math.nan


def _matches(truths: list[int], found: list[int]) -> int:
    pairs = sorted((abs(t - f), i, j) for i, t in enumerate(truths) for j, f in enumerate(found))
    used_t: set[int] = set()
    used_f: set[int] = set()
    for distance, i, j in pairs:
        if distance <= TOLERANCE and i not in used_t and j not in used_f:
            used_t.add(i)
            used_f.add(j)
    return len(used_t)


def _ar1(rng: np.random.Generator, n: int, rho: float) -> np.ndarray:
    noise = rng.normal(size=n)
    series = np.empty(n)
    series[0] = noise[0] / math.sqrt(1 - rho * rho)
    for t in range(1, n):
        series[t] = rho * series[t - 1] + noise[t]
    return series


def labelled_set(reps: int) -> list[Labelled]:
    items: list[Labelled] = []
    for n in (30, 60, 120):
        for size in (2, 3, 5, 10):
            for rep in range(reps):
                rng = np.random.default_rng([1, n, size, rep])
                at = int(rng.integers(int(0.2 * n), int(0.8 * n) + 1))
                x = 100 + rng.normal(0, 1, n)
                x[at:] += size * (1 if rep % 2 == 0 else -1)
                items.append(Labelled(f"step {size}σ", x.tolist(), [at]))
    for n, duration in ((50, 10), (50, 4), (60, 3), (60, 5), (60, 8), (120, 12)):
        for sigma in (0.0, 1.0, 3.0):  # noise-free +30%; +10 at σ 1 (10σ) and 3 (3.3σ)
            for rep in range(max(1, reps // 2)):
                rng = np.random.default_rng([2, n, duration, int(sigma), rep])
                start = n // 3
                x = np.full(n, 100.0) + (rng.normal(0, sigma, n) if sigma else 0)
                x[start : start + duration] += 30 if sigma == 0 else 10
                items.append(Labelled("regression then fix", x.tolist(), [start, start + duration]))
    for newest in (1, 2, 3):
        for rep in range(reps):
            rng = np.random.default_rng([3, newest, rep])
            x = 100 + rng.normal(0, 1, 60)
            x[60 - newest :] += 10
            items.append(Labelled(f"newest {newest} run(s) 10σ", x.tolist(), [60 - newest]))
    for n in (30, 60, 120):
        for rep in range(reps):
            rng = np.random.default_rng([4, n, rep])
            items.append(Labelled("heavy tails, flat", (100 * np.exp(rng.normal(0, 0.05, n))).tolist(), [], True))
            items.append(Labelled("heavy tails, flat", (100 + 2 * rng.standard_t(3, n)).tolist(), [], True))
            x = 100 * np.exp(rng.normal(0, 0.03, n))
            x[n // 2 :] *= 1.10
            items.append(Labelled("heavy tails, 10% step", x.tolist(), [n // 2]))
            x = 100 + rng.normal(0, 2, n)
            x[rng.choice(n, 2, replace=False)] *= 1.3
            items.append(Labelled("two +30% outliers, flat", x.tolist(), [], True))
            drift = np.linspace(0, 100 * rng.choice([0.1, 0.2]), n)
            items.append(Labelled("slow drift (no label)", (100 + drift + rng.normal(0, 2, n)).tolist(), [], True))
    for n in (30, 60, 120):
        for rep in range(20 * reps):
            rng = np.random.default_rng([5, n, rep])
            items.append(Labelled("flat independent", (100 + rng.normal(0, 3, n)).tolist(), [], True))
    for rho in (0.5, 0.8):
        for n in (30, 60):
            for rep in range(10 * reps):
                rng = np.random.default_rng([6, int(10 * rho), n, rep])
                items.append(Labelled(f"flat AR(1) ρ {rho}", (100 + 2 * _ar1(rng, n, rho)).tolist(), [], True))
    return items


def run_tokbench(items: list[Labelled]) -> tuple[list[list[int]], list[float]]:
    found, seconds = [], []
    for item in items:
        started = time.process_time()
        found.append([point.index for point in find_change_points(item.values)])
        seconds.append(time.process_time() - started)
    return found, seconds


def run_otava(items: list[Labelled], python: str) -> dict[str, tuple[list[list[int]], list[float]]]:
    done = subprocess.run(
        [python, "-c", OTAVA_RUNNER], input=json.dumps([item.values for item in items]), capture_output=True,
        text=True, timeout=3600, check=True,
    )  # fmt: skip
    out = json.loads(done.stdout)
    return {name: (out[name], out[f"{name}-s"]) for name in ("otava-orig", "otava")}


def _fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.2f}"


def report(items: list[Labelled], results: dict[str, tuple[list[list[int]], list[float]]]) -> None:
    scores: dict[str, dict[str, Score]] = {}
    for name, (found, seconds) in results.items():
        table = scores.setdefault(name, {})
        for item, hits, cost in zip(items, found, seconds, strict=True):
            for key in ("all", "all but drift" if "drift" not in item.group else "", item.group):
                if key:
                    table.setdefault(key, Score()).add(item, hits, cost)
    print(f"{len(items)} series; a detection within ±{TOLERANCE} runs of a labelled change is a hit\n")
    print("| detector | precision | recall | F1 | F1 without drift | false alarms / flat independent series "
          "| flat AR(1) ρ 0.5 alarmed | ρ 0.8 alarmed | regression-then-fix recall | newest 2 runs 10σ recall "
          "| ms / series (mean) |")  # fmt: skip
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name, table in scores.items():
        flat = table["flat independent"]
        print(
            f"| {name} | {_fmt(table['all'].precision)} | {_fmt(table['all'].recall)} | {_fmt(table['all'].f1)} "
            f"| {_fmt(table['all but drift'].f1)} | {flat.detections / flat.series:.3f} ({flat.alarmed}/{flat.series}) "
            f"| {_alarm_share(table['flat AR(1) ρ 0.5'])} | {_alarm_share(table['flat AR(1) ρ 0.8'])} "
            f"| {_fmt(table['regression then fix'].recall)} | {_fmt(table['newest 2 run(s) 10σ'].recall)} "
            f"| {1000 * float(np.mean(table['all'].seconds)):.0f} |"
        )
    print("\nPer group: precision / recall (labelled groups), share of series alarmed (flat groups)\n")
    groups = [key for key in next(iter(scores.values())) if key not in ("all", "all but drift")]
    print("| group | series | " + " | ".join(scores) + " |")
    print("|---|--:|" + "--:|" * len(scores))
    for group in groups:
        cells = []
        for table in scores.values():
            score = table[group]
            found = f"{_fmt(score.precision)} / {_fmt(score.recall)}"
            cells.append(_alarm_share(score) if score.truths == 0 else found)
        print(f"| {group} | {next(iter(scores.values()))[group].series} | " + " | ".join(cells) + " |")


def _alarm_share(score: Score) -> str:
    share = score.alarmed / score.series
    error = math.sqrt(share * (1 - share) / score.series)
    return f"{share:.0%} ±{error:.0%}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--otava-python", default="/tmp/otava-venv/bin/python", help="python of Otava's venv")
    parser.add_argument("--quick", action="store_true", help="one series per cell instead of three")
    args = parser.parse_args(argv)
    items = labelled_set(1 if args.quick else 3)
    results: dict[str, tuple[list[list[int]], list[float]]] = {"tokbench": run_tokbench(items)}
    if Path(args.otava_python).is_file():
        results.update(run_otava(items, args.otava_python))
    else:
        print(f"(no Otava at {args.otava_python}: tokbench only)", file=sys.stderr)
    report(items, results)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
