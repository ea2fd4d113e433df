"""A run measured while a real CPU hog saturates the cores is flagged ``host_busy``, with the evidence.

Only the flag is checked, never a timing; and never that a run without the hog is quiet (this machine is shared).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tokbench.hardware.interference import InterferenceWatch, other_cpu_threshold

HOG = "import time\nend = time.monotonic() + 600\nwhile time.monotonic() < end:\n    pass\n"  # bounded: 10 min at most


@pytest.fixture
def cpu_hog() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Busy-looping processes worth twice the busy threshold (1 on a 2-CPU machine), ended (by pid) after the test."""
    count = min(os.cpu_count() or 1, max(1, math.ceil(2 * other_cpu_threshold(os.cpu_count() or 1))))
    hogs = [subprocess.Popen([sys.executable, "-c", HOG]) for _ in range(count)]
    time.sleep(0.5)  # let them reach the run queue
    try:
        yield hogs
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def test_the_watch_sees_a_hog(cpu_hog: list[subprocess.Popen[bytes]]) -> None:
    watch = InterferenceWatch(window_ns=300_000_000)
    watch.start()
    spin = watch.wrap(lambda: sum(range(20_000)))
    end = time.monotonic() + 1.5
    while time.monotonic() < end:
        spin()
    record = watch.record()
    assert record is not None
    assert record.other_cpu >= other_cpu_threshold(record.cpus)
    assert record.host_busy and "host_busy" in record.flags
    assert len(record.windows) >= 2


def test_a_run_beside_a_hog_is_flagged_in_the_json_and_the_header(
    tmp_path: Path, cpu_hog: list[subprocess.Popen[bytes]]
) -> None:
    output = tmp_path / "busy.json"
    completed = subprocess.run(
        [sys.executable, "-m", "tokbench", "run", "--sequence-length", "8", "--new-tokens", "8",
         "--warmup-iterations", "1", "--measurement-iterations", "4", "--no-monitor", "--no-progress",
         "--no-store", "--output", str(output)],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-2000:]  # a busy machine is flagged, never failed
    data = json.loads(output.read_text(encoding="utf-8"))
    assert data["status"] == "ok"
    assert "host_busy" in data["flags"]
    assert data["interference"]["host_busy_reasons"]
    assert "machine while measuring: BUSY" in completed.stdout
    assert "measured on a BUSY machine" in completed.stdout  # the table says it too
