"""The sampler: one thread sampling every backend around the measured loop, and sample attribution."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from tokbench.clock import Clock, perf_counter_ns
from tokbench.schema.monitor import STATUS_OK, MonitorRecord, SampleSeries, Value

if TYPE_CHECKING:
    import torch

from tokbench.hardware.monitor.backends import (
    GPU,
    Backend,
    BackendUnavailable,
    HostBackend,
    describe_error,
    gpu_backend_for,
    unavailable,
)

DEFAULT_INTERVAL_MS = 50


class _Series:
    """A backend's samples while running (mutable; frozen into a SampleSeries by ``stop``)."""

    def __init__(self, backend: Backend | None, status: str, name: str, device: str = "") -> None:
        self.backend = backend
        self.status = status
        self.name = name
        self.device = device
        self.timestamps_ns: list[int] = []
        self.rows: list[dict[str, Value]] = []

    def sample(self, clock: Clock) -> None:
        if self.backend is None or self.status != STATUS_OK:
            return
        try:
            values = self.backend.read()
        except Exception as error:  # a backend that breaks mid-run stops; the others go on
            self.status = f"failed after {len(self.rows)} samples: {describe_error(error)}"
            return
        self.timestamps_ns.append(clock())
        self.rows.append(values)

    def freeze(self) -> SampleSeries:
        names: list[str] = []
        for row in self.rows:
            names.extend(name for name in row if name not in names)
        columns = {name: tuple(row.get(name) for row in self.rows) for name in names}
        return SampleSeries(self.name, self.status, self.device, tuple(self.timestamps_ns), columns)


class Sampler:
    """Samples its backends from ``start`` to ``stop``; use as ``with sampler: <measured loop>``.

    Opening the backends (``open``, done by the constructor) happens before the measurement so the
    library start-up cost never lands inside it. After ``stop``, ``record`` holds the frozen result.
    """

    def __init__(
        self,
        backends: list[Backend | tuple[str, str]],
        interval_ms: int = DEFAULT_INTERVAL_MS,
        clock: Clock = perf_counter_ns,
    ) -> None:
        if interval_ms < 1:
            raise ValueError(f"interval_ms must be >= 1, got {interval_ms}")
        self.interval_ms = interval_ms
        self.clock = clock
        self._series: list[_Series] = []
        for backend in backends:
            if isinstance(backend, tuple):  # (name, status): a slot that records only why it is empty
                self._series.append(_Series(None, backend[1], backend[0]))
                continue
            try:
                backend.open()
            except BackendUnavailable as error:
                self._series.append(_Series(None, unavailable(str(error)), backend.name))
                continue
            except Exception as error:
                backend.close()
                self._series.append(_Series(None, unavailable(describe_error(error)), backend.name))
                continue
            self._series.append(_Series(backend, STATUS_OK, backend.name, backend.device))
        self._stop_event = threading.Event()
        self._thread: threading.Thread | None = None
        self._start_ns: int | None = None
        self.record: MonitorRecord | None = None

    @classmethod
    def for_device(
        cls, device: torch.device, interval_ms: int = DEFAULT_INTERVAL_MS, clock: Clock = perf_counter_ns
    ) -> Sampler:
        """The host, plus the GPU backend for ``device`` (or a ``gpu`` slot saying why there is none)."""
        try:
            gpu = gpu_backend_for(device)
        except Exception as error:  # e.g. torch cannot describe the device: no GPU samples, still a result
            gpu = unavailable(f"the GPU backend could not be set up: {describe_error(error)}")
        return cls([HostBackend(), gpu if isinstance(gpu, Backend) else (GPU, gpu)], interval_ms, clock)

    def _sample_all(self) -> None:
        for series in self._series:
            series.sample(self.clock)

    def _loop(self) -> None:
        interval_s = self.interval_ms / 1000.0
        next_due = time.monotonic() + interval_s
        while not self._stop_event.wait(max(0.0, next_due - time.monotonic())):
            self._sample_all()
            next_due += interval_s
            now = time.monotonic()
            if next_due < now:  # fell behind (a long sample, a descheduled thread): skip, don't burst
                next_due = now + interval_s

    def start(self) -> None:
        if self._start_ns is not None:
            raise RuntimeError("a Sampler is started once")
        self._start_ns = self.clock()
        self._sample_all()  # a sample at the very start of the window
        self._thread = threading.Thread(target=self._loop, name="tokbench-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> MonitorRecord:
        if self._start_ns is None or self._thread is None:
            raise RuntimeError("stop() before start()")
        if self.record is not None:
            return self.record
        self._stop_event.set()
        self._thread.join()
        self._sample_all()  # and one at its very end
        end_ns = self.clock()
        self.close()
        self.record = MonitorRecord(
            self.interval_ms, self._start_ns, end_ns, tuple(series.freeze() for series in self._series)
        )
        return self.record

    def close(self) -> None:
        """Release the vendor libraries (also for a sampler that never started)."""
        for series in self._series:
            if series.backend is not None:
                series.backend.close()

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


# --- attribution -------------------------------------------------------------------------------------

PHASE_PREFILL = "prefill"
PHASE_DECODE = "decode"
PHASE_OUTSIDE = "outside"
