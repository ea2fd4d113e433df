"""Device warmup: bring the device out of its cold state before anything is timed.

The seeds' system (llm-awq) queued 100 matmuls and returned before they ran; here the loop runs
until a time budget is spent and the device is synchronized at the end, so the warmup has really
happened when this function returns.
"""

from __future__ import annotations

import torch

from tokbench.clock import Clock, perf_counter_ns
from tokbench.hardware.devices import synchronize
from tokbench.schema.records import DeviceWarmupReport


def default_matrix_size(device: torch.device) -> int:
    """Big enough to reach full clocks on an accelerator, small enough to be quick on 2 CPU cores."""
    return 4096 if device.type in ("cuda", "xpu") else 512


def device_warmup(
    device: torch.device,
    budget_s: float = 0.5,
    matrix_size: int | None = None,
    dtype: torch.dtype = torch.float32,
    clock: Clock = perf_counter_ns,
    max_matmuls: int = 10_000,
) -> DeviceWarmupReport:
    """Run dummy matmuls on ``device`` until ``budget_s`` seconds have passed, then synchronize.

    The budget is checked after a synchronize every few launches, so queued-but-unrun work does not
    count as time spent. ``max_matmuls`` bounds the loop even if the clock does not advance.
    """
    size = matrix_size or default_matrix_size(device)
    budget_ns = int(budget_s * 1e9)
    generator = torch.Generator(device="cpu").manual_seed(0)
    left = torch.randn(size, size, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    right = torch.randn(size, size, generator=generator, dtype=torch.float32).to(device=device, dtype=dtype)
    launches_between_checks = 8 if device.type != "cpu" else 1
    matmuls = 0
    start_ns = clock()
    while True:
        for _ in range(launches_between_checks):
            torch.matmul(left, right)
            matmuls += 1
        synchronize(device)
        if clock() - start_ns >= budget_ns or matmuls >= max_matmuls:
            break
    elapsed_ns = clock() - start_ns
    return DeviceWarmupReport(str(device), size, matmuls, elapsed_ns)
