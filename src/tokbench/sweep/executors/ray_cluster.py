"""The Ray executor: every unit (a config, or a load group) is a Ray task on some node of a Ray cluster.

The task reserves the CPUs and GPUs its configs need (``num_cpus``, ``num_gpus``: one task always runs on
one node, so a config that needs several GPUs gets them together on one node; Ray sets the task's
``CUDA_VISIBLE_DEVICES``) and runs, inside, the very same ``ProcessLauncher`` as the local executor:
each config in an isolated ``tokbench.sweep.worker`` child, with its timeout, crash capture and compile
cache. The task is a Ray generator: it yields each result as JSON as soon as it exists (never pickle),
with ``launch.ray`` saying where it ran (node, node IP, GPUs, Ray task id). The driver alone writes the
store.

A task that dies (its worker process killed, its node lost) fails the config it was on, with Ray's
reason, and the rest of its unit is submitted again as a new task; the sweep goes on. Ctrl-C cancels
every outstanding task: Ray raises KeyboardInterrupt inside a running one, whose launcher then ends its
child. Without Ray installed, creating the executor raises ``LaunchError`` saying how to get it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timezone
from typing import Any

from tokbench.config import BenchmarkConfig
from tokbench.engine.quiet import libraries_quiet, merged
from tokbench.errors import LaunchError, ResultFormatError
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.records import RayPlacement
from tokbench.schema.results import STATUS_FAILED, BenchmarkResult
from tokbench.sweep.executors import Deliver, WorkItem, WorkUnit
from tokbench.sweep.threads import ray_plan

INSTALL_HINT = "install the extra: pip install 'tokbench[ray]' (Ray 2.60, pinned so it never replaces your torch)"
# How long an address gets to answer before the sweep is refused (Ray itself retries for minutes, silently).
CONNECT_TIMEOUT_S = 10.0
# With tasks outstanding and no result for this long, one line says what is pending and what the cluster has free.
PENDING_REPORT_S = 60.0
# How long the driver waits for a result before it looks again (keeps Ctrl-C responsive).
_WAIT_S = 0.5
# After Ctrl-C: how long cancelled tasks get to end their children before they are force-killed.
_CANCEL_GRACE_S = 10.0
_REASON_CHARS = 300


def import_ray() -> Any:
    try:
        import ray
    except ImportError as error:
        raise LaunchError(f"the ray executor needs Ray, which is not installed ({error}); {INSTALL_HINT}") from error
    return ray


def run_unit_task(payload: str) -> Iterator[str]:
    """The body of the Ray task (a generator): the unit's configs through a ``ProcessLauncher``, one result
    JSON per config, in order. Runs on a cluster node, in a Ray worker process."""
    import ray

    from tokbench.sweep.launchers import ProcessLauncher

    unit = json.loads(payload)
    configs = [BenchmarkConfig.from_dict(data) for data in unit["configs"]]
    context = ray.get_runtime_context()
    where = {
        "node_id": context.get_node_id(),
        "node_ip": ray.util.get_node_ip_address(),
        "task_id": context.get_task_id(),
        "gpu_ids": [str(gpu) for gpu in context.get_accelerator_ids().get("GPU", [])],
        "worker_pid": os.getpid(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    start_method = unit["start_method"] or "spawn"  # a fork server per task would cost what a spawn costs
    threads = {key: str(value) for key, value in unit.get("thread_environment", {}).items()}
    with ProcessLauncher(
        compile_cache=unit["compile_cache"], start_method=start_method, child_environment=threads
    ) as launcher:
        for result in launcher.launch_group(configs, unit["timeouts_s"]):
            launch = dataclasses.replace(result.launch, executor="ray", ray=RayPlacement.from_dict(where))
            yield json.dumps(dataclasses.replace(result, launch=launch).to_dict(), allow_nan=False)


@dataclasses.dataclass
class _Submitted:
    unit: WorkUnit
    delivered: int = 0  # items of the unit whose result came back


class RayExecutor:
    """Units as Ray tasks on the cluster at ``address`` ("auto": the one ``ray start`` runs on this node;
    None: a cluster Ray is already connected to in this process, else a local one started for the sweep)."""

    name = "ray"

    def __init__(
        self,
        *,
        address: str | None = None,
        compile_cache: str = "fresh",
        start_method: str | None = None,
        gpus_per_config: int | None = None,
        cpus_per_config: float | None = None,
        threads: int | None = None,
        init_options: dict[str, Any] | None = None,
        notify: Callable[[str], None] | None = None,
    ) -> None:
        # The same policy as the local executor: a config's process runs on the CPUs reserved for it (checked
        # before Ray starts, so a wrong --threads costs nothing).
        self.thread_plan = ray_plan(1.0 if cpus_per_config is None else float(cpus_per_config), threads)
        ray = import_ray()
        self._ray = ray
        self._started_here = False
        self._notify = notify or _print_status
        # Ray's own warnings and info lines (token authentication, "Started a local Ray instance") are held back
        # for the executor's lifetime, and kept in the results it delivers.
        self._quiet = contextlib.ExitStack()
        self._held = self._quiet.enter_context(libraries_quiet(engine=False))
        if not ray.is_initialized():
            if address not in (None, "auto"):
                check_reachable(address)
            try:
                # log_to_driver off: the children's output stays in their launch records, never raw on a terminal.
                ray.init(address=address, log_to_driver=False, include_dashboard=False, **(init_options or {}))
            except ConnectionError as error:
                self._quiet.close()
                raise LaunchError(
                    f"cannot connect to the Ray cluster at {address!r}: {error}; start one with `ray start --head` "
                    "(then use --ray-address auto) or pass its address"
                ) from error
            self._started_here = True
        self.address = address
        self.compile_cache = compile_cache
        self.start_method = start_method
        self.gpus_per_config = gpus_per_config or 1
        self.cpus_per_config = 1.0 if cpus_per_config is None else float(cpus_per_config)
        self._task = ray.remote(max_retries=0)(run_unit_task)
        self._cluster_gpus = float(ray.cluster_resources().get("GPU", 0))
        self._environment: EnvironmentRecord | None = None

    def gpus_for(self, config: BenchmarkConfig) -> int:
        """GPUs a config's task reserves: none for a CPU config; ``gpus_per_config`` for a CUDA one, and for
        ``auto`` when the cluster has GPUs."""
        device = str(config.device)
        if device.startswith("cuda") or (device == "auto" and self._cluster_gpus > 0):
            return self.gpus_per_config
        return 0

    def needs(self, config: BenchmarkConfig) -> dict[str, float]:
        """What a config's task reserves on one node."""
        return {"CPU": self.cpus_per_config, "GPU": float(self.gpus_for(config))}

    def check_feasible(self, configs: Sequence[BenchmarkConfig]) -> None:
        """Refuse, before anything is submitted, a config no node of the cluster could ever run: Ray would
        keep its task pending forever, silently."""
        nodes = [node.get("Resources", {}) for node in self._ray.nodes() if node.get("Alive")]
        for config in configs:
            need = self.needs(config)
            if any(all(node.get(kind, 0.0) >= amount for kind, amount in need.items()) for node in nodes):
                continue
            largest = max(nodes, key=lambda node: (node.get("GPU", 0.0), node.get("CPU", 0.0)), default={})
            raise LaunchError(
                f"no node of the Ray cluster can run {config.name}: its task reserves {need['CPU']:g} CPU(s) and "
                f"{need['GPU']:g} GPU(s) on one node, the largest of the {len(nodes)} node(s) has "
                f"{largest.get('CPU', 0.0):g} CPU(s) and {largest.get('GPU', 0.0):g} GPU(s); lower "
                "--cpus-per-config / --gpus-per-config, or add a node that has them"
            )

    def execute(self, units: Sequence[WorkUnit], deliver: Deliver) -> None:
        ray = self._ray
        self.check_feasible([config for unit in units for config in unit.configs])
        outstanding: dict[Any, _Submitted] = {}
        for unit in units:
            outstanding[self._submit(unit)] = _Submitted(unit)
        last_news = time.monotonic()
        try:
            while outstanding:
                ready, _ = ray.wait(list(outstanding), num_returns=1, timeout=_WAIT_S)
                for generator in ready:
                    self._collect(generator, outstanding, deliver)
                if ready:
                    last_news = time.monotonic()
                elif time.monotonic() - last_news >= PENDING_REPORT_S:
                    self._notify(self._pending_line(outstanding, time.monotonic() - last_news))
                    last_news = time.monotonic()
        except BaseException:
            self._cancel(list(outstanding))
            raise

    def _pending_line(self, outstanding: dict[Any, _Submitted], quiet_s: float) -> str:
        """What is pending and why: the tasks outstanding, what each reserves, what the cluster has free."""
        free, total = self._ray.available_resources(), self._ray.cluster_resources()
        need = self.needs(next(iter(outstanding.values())).unit.configs[0])
        return (
            f"ray: {len(outstanding)} task(s) outstanding, no result for {quiet_s:.0f} s; each reserves "
            f"{need['CPU']:g} CPU(s) and {need['GPU']:g} GPU(s), the cluster has {free.get('CPU', 0.0):g} of "
            f"{total.get('CPU', 0.0):g} CPU(s) and {free.get('GPU', 0.0):g} of {total.get('GPU', 0.0):g} GPU(s) "
            "free (tasks wait for a free slot; a running config can take up to its timeout)"
        )

    def _submit(self, unit: WorkUnit) -> Any:
        payload = json.dumps(
            {
                "configs": [config.to_dict() for config in unit.configs],
                "timeouts_s": list(unit.timeouts_s),
                "compile_cache": self.compile_cache,
                "start_method": self.start_method,
                "thread_environment": self.thread_plan.environment(),
            }
        )
        options = {"num_cpus": self.cpus_per_config, "num_gpus": self.gpus_for(unit.configs[0])}
        return self._task.options(**options).remote(payload)

    def _collect(self, generator: Any, outstanding: dict[Any, _Submitted], deliver: Deliver) -> None:
        """The next result of a ready task; a task that died fails its current config and resubmits the rest."""
        ray = self._ray
        submitted = outstanding[generator]
        try:
            reference = next(generator)
            data = ray.get(reference)
        except StopIteration:
            del outstanding[generator]
            if submitted.delivered < len(submitted.unit.items):  # ended early without an error: never lose a config
                self._task_died(submitted, "the Ray task ended without a result for it", outstanding, deliver)
            return
        except ray.exceptions.RayError as error:
            del outstanding[generator]
            self._task_died(submitted, _describe(error), outstanding, deliver)
            return
        item = submitted.unit.items[submitted.delivered]
        submitted.delivered += 1
        deliver(item, self._with_driver_output(self._read(item, data)))

    def _task_died(self, submitted: _Submitted, why: str, outstanding: dict[Any, _Submitted], deliver: Deliver) -> None:
        items = submitted.unit.items
        item = items[submitted.delivered]
        reason = f"the Ray task running it died: {why}"
        rest = items[submitted.delivered + 1 :]
        if rest:
            unit = WorkUnit(rest)
            outstanding[self._submit(unit)] = _Submitted(unit)
        failed = self._failed(item.config, reason, {"executor": self.name, "ray": {"error": why}})
        deliver(item, self._with_driver_output(failed))

    def _with_driver_output(self, result: BenchmarkResult) -> BenchmarkResult:
        """``result`` with what Ray said in this driver so far (held back from the terminal)."""
        return dataclasses.replace(result, library_output=merged(result.library_output, self._held.messages()))

    def _read(self, item: WorkItem, data: str) -> BenchmarkResult:
        try:
            result = BenchmarkResult.from_dict(json.loads(data))
        except (json.JSONDecodeError, ResultFormatError, ValueError, TypeError) as error:
            return self._failed(item.config, f"the Ray task returned an unreadable result: {error}", {})
        if result.config_hash != item.config.config_hash:
            reason = f"the Ray task returned a result for config {result.config_hash}, not {item.config.config_hash}"
            return self._failed(item.config, reason, {"executor": self.name})
        return result

    def _failed(self, config: BenchmarkConfig, reason: str, launch: dict[str, Any]) -> BenchmarkResult:
        return BenchmarkResult(
            config=config,
            status=STATUS_FAILED,
            reason=reason,
            environment=self._driver_environment(),
            started_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
            launch=launch,
        )

    def _driver_environment(self) -> EnvironmentRecord:
        if self._environment is None:
            from tokbench.hardware.environment import capture_environment_or_reason

            self._environment = capture_environment_or_reason("the sweep's driver (the Ray task produced no result)")
        return self._environment

    def _cancel(self, generators: list[Any]) -> None:
        """Cancel every outstanding task: KeyboardInterrupt inside running ones (their launchers end their
        children), then, after a grace period, a forced kill of what is left."""
        ray = self._ray
        for generator in generators:
            with contextlib.suppress(Exception):  # a task that already ended
                ray.cancel(generator)
        deadline = time.monotonic() + _CANCEL_GRACE_S
        pending = list(generators)
        while pending and time.monotonic() < deadline:
            ready, pending = ray.wait(pending, num_returns=len(pending), timeout=_WAIT_S)
            for generator in ready:
                try:
                    ray.get(next(generator))
                except Exception:  # StopIteration or the cancellation error: this task has ended
                    continue
                pending.append(generator)  # it had one more result ready; look again
        for generator in pending:
            with contextlib.suppress(Exception):
                ray.cancel(generator, force=True)

    def close(self) -> None:
        try:
            if self._started_here and self._ray.is_initialized():
                self._ray.shutdown()
                self._started_here = False
        finally:
            self._quiet.close()  # Ray's logging is the library's own again

    def __enter__(self) -> RayExecutor:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def check_reachable(address: str, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse an address nothing answers on within ``timeout_s``, before ``ray.init`` retries it for minutes."""
    target = address.removeprefix("ray://")
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise LaunchError(f"--ray-address {address!r} is not HOST:PORT (or auto); e.g. 10.0.0.5:6379")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s):
            pass
    except OSError as error:
        reason = "no answer" if isinstance(error, TimeoutError) else (error.strerror or str(error))
        raise LaunchError(
            f"cannot reach the Ray cluster at {address} within {timeout_s:g} s ({reason}); start one with "
            "`ray start --head` (then use --ray-address auto) or pass the address it printed"
        ) from error


def _print_status(line: str) -> None:
    print(f"tokbench: {line}", file=sys.stderr, flush=True)


def _describe(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    first = next((line.strip() for line in text if line.strip()), "")
    return f"{type(error).__name__}: {first[:_REASON_CHARS]}" if first else type(error).__name__

