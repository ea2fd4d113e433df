"""Per-iteration peak memory: the torch allocator's peaks on CUDA, the process's peak RSS (``VmHWM``) on CPU."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from tokbench.schema.monitor import MemoryPeak

if TYPE_CHECKING:
    import torch

T = TypeVar("T")

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def _read_vm_hwm_bytes() -> int | None:
    try:
        for line in _STATUS.read_text(encoding="ascii").splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # reported in kB
    except (OSError, ValueError):
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux >= 4.0); False where that is impossible."""
    try:
        _CLEAR_REFS.write_text("5", encoding="ascii")
    except OSError:
        return False
    return True


class PeakMemoryTracker:
    """Wraps a generate-once callable so each call records its memory peak into ``peaks``."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peaks: list[MemoryPeak] = []

    @contextmanager
    def measure(self) -> Iterator[None]:
        if self.device.type == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats(self.device)
            yield
            self.peaks.append(
                MemoryPeak(
                    "torch.cuda allocator",
                    peak_allocated_bytes=int(torch.cuda.max_memory_allocated(self.device)),
                    peak_reserved_bytes=int(torch.cuda.max_memory_reserved(self.device)),
                    peak_rss_bytes=_read_vm_hwm_bytes(),
                )
            )
            return
        hwm_resettable = reset_peak_rss() and _read_vm_hwm_bytes() is not None
        yield
        if hwm_resettable:
            self.peaks.append(MemoryPeak("VmHWM (peak RSS)", peak_rss_bytes=_read_vm_hwm_bytes()))
        else:  # no per-call peak here: the RSS right after the call is a lower bound
            import psutil

            self.peaks.append(MemoryPeak("RSS after the call", peak_rss_bytes=int(psutil.Process().memory_info().rss)))

    def wrap(self, generate_once: Callable[[], T]) -> Callable[[], T]:
        def measured() -> T:
            with self.measure():
                return generate_once()

        return measured
