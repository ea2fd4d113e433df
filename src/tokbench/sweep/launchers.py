"""Launchers decide where one config runs: in this process, or in a fresh Python process.

``InlineLauncher`` calls ``runner.run`` here (debugging, the Python API; no timeout, no isolation).
``ProcessLauncher`` runs every config in a fresh process: with ``start_method="spawn"`` it starts
``python -m tokbench.sweep.worker``; with ``"forkserver"`` (the default on Linux) a fork server that imported
torch once (``tokbench.sweep.forkserver``) forks the child, which saves the interpreter start and the imports
per config and falls back to spawning if the server cannot start or died. Either way the config goes to the child
as JSON, the child writes its result as JSON to a path the parent chose, and the parent reads it back
with ``BenchmarkResult.from_dict`` (never pickle). A child that crashes, is killed (OOM killer,
signal), exits without a result or runs past its timeout becomes a ``failed`` result built here, with
the reason and the tail of the child's output. Every result gets a ``launch`` record: the launcher,
the child's pid and exit code, the wall time, the compile cache used.

POSIX only: the child runs in its own session (process group), so a Ctrl-C in the terminal reaches
the parent alone, which then ends the child and everything it started (inductor compile workers).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Generator, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from tokbench.clock import Clock, perf_counter_ns
from tokbench.config import BenchmarkConfig
from tokbench.errors import ForkServerError, LaunchError, ResultFormatError
from tokbench.schema.environment import EnvironmentRecord
from tokbench.schema.records import LaunchRecord
from tokbench.schema.results import STATUS_FAILED, BenchmarkResult
from tokbench.sweep.forkserver import ForkServer
from tokbench.sweep.threads import THREADS_ENV
from tokbench.sweep.worker import group_result_path

STDERR_TAIL_CHARS = 4000
# How often the parent looks for the results of a load group's worker (and at its configs' timeouts).
GROUP_POLL_S = 0.1
# How long a child gets to exit after SIGTERM before SIGKILL.
TERMINATE_GRACE_S = 5.0
START_METHODS = ("forkserver", "spawn")
# fork() after `import torch` is safe only where the server can be kept free of threads' state (POSIX fork).
DEFAULT_START_METHOD = "forkserver" if sys.platform == "linux" else "spawn"


class InlineLauncher:
    """Run configs in the current process, sharing one tokenizer cache across them."""

    name = "inline"

    def __init__(self, *, progress: bool = False, clock: Clock = perf_counter_ns, **run_options: Any) -> None:
        from tokbench.engine.loading import TokenizerCache

        self._tokenizers = TokenizerCache()
        self._progress = progress
        self._clock = clock
        self._run_options = run_options

    def launch(self, config: BenchmarkConfig, timeout_s: float | None = None) -> BenchmarkResult:
        from tokbench.engine.runner import run

        start_ns = self._clock()
        result = run(config, tokenizers=self._tokenizers, progress=self._progress, **self._run_options)
        launch = LaunchRecord(launcher=self.name, pid=os.getpid(), wall_ns=self._clock() - start_ns)
        notes = result.notes
        if timeout_s is not None:
            notes = (*notes, f"launcher: the inline launcher does not enforce timeout_s={timeout_s:g}")
        return dataclasses.replace(result, launch=launch, notes=notes)

    def launch_group(
        self, configs: Sequence[BenchmarkConfig], timeouts_s: Sequence[float | None]
    ) -> Generator[BenchmarkResult, None, None]:
        """One result per config, in order, measured on one load (``engine.shared_load``); no timeout."""
        from tokbench.engine.shared_load import measure_group

        start_ns = self._clock()
        results = measure_group(configs, tokenizers=self._tokenizers, clock=self._clock, **self._run_options)
        for index, result in enumerate(results):
            launch = {"launcher": self.name, "pid": os.getpid(), "wall_ns": self._clock() - start_ns}
            if len(configs) > 1:
                launch["group"] = {"index": index, "size": len(configs), "worker": 1}
            timeout_s = timeouts_s[index]
            notes = result.notes
            if timeout_s is not None:
                notes = (*notes, f"launcher: the inline launcher does not enforce timeout_s={timeout_s:g}")
            yield dataclasses.replace(result, launch=launch, notes=notes)
            start_ns = self._clock()

    def abort(self) -> None:
        """Nothing runs elsewhere; a config running inline stops with the process."""

    def close(self) -> None:
        """Nothing to release; here so both launchers are used the same way."""

    def __enter__(self) -> InlineLauncher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class ProcessLauncher:
    """One fresh Python process per config, with a timeout and crash capture.

    ``compile_cache``: ``"fresh"`` gives every child its own empty inductor / Triton cache folder (a
    true cold compile); ``"shared"`` gives all children of this launcher one folder (warm caches).
    ``start_method``: ``"forkserver"`` forks children from a server started once (on first use) that
    has torch imported; ``"spawn"`` starts a new interpreter per config.
    """

    name = "process"

    def __init__(
        self,
        *,
        compile_cache: str = "fresh",
        python: str = sys.executable,
        clock: Clock = perf_counter_ns,
        environment: EnvironmentRecord | None = None,
        start_method: str = DEFAULT_START_METHOD,
        child_environment: Mapping[str, str] | None = None,
        side_environment: Mapping[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        if compile_cache not in ("fresh", "shared"):
            raise LaunchError(f"unknown compile cache mode {compile_cache!r}; use fresh or shared")
        if start_method not in START_METHODS:
            raise LaunchError(f"unknown start method {start_method!r}; use {' or '.join(START_METHODS)}")
        self.compile_cache = compile_cache
        self.start_method = start_method
        self._server: ForkServer | None = None
        self._server_error: str | None = None
        self._python = python
        self._clock = clock
        self._environment = environment  # the parent's, for results the parent has to build
        self._shared_cache: Path | None = None
        # Set for every child (e.g. CUDA_VISIBLE_DEVICES: the devices of a parallel executor's slot).
        self.child_environment = dict(child_environment or {})
        # Set before the interpreter starts (the fork server's or a spawned child's), so imports read them too,
        # with the working directory: an A/B side's own environment (``sweep.ab``).
        self.side_environment = dict(side_environment or {})
        self.cwd = cwd
        self._running: _Child | None = None
        self._aborted = False

    def __enter__(self) -> ProcessLauncher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the fork server and remove the shared compile cache folder, if there are any."""
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._shared_cache is not None:
            shutil.rmtree(self._shared_cache, ignore_errors=True)
            self._shared_cache = None

    def _cache_root(self, work: Path) -> Path:
        if self.compile_cache == "fresh":
            return work / "compile-cache"
        if self._shared_cache is None:
            self._shared_cache = Path(tempfile.mkdtemp(prefix="tokbench-compile-cache-"))
        return self._shared_cache

    def launch(self, config: BenchmarkConfig, timeout_s: float | None = None) -> BenchmarkResult:
        return self.collect(self.start(config, timeout_s))

    def start(
        self, config: BenchmarkConfig, timeout_s: float | None = None, environment: Mapping[str, str] | None = None
    ) -> RunningConfig:
        """Start one config's child and return at once (``collect`` waits for its result); ``environment``: extra
        variables of this child alone (``sweep.duet``: where its turns are given)."""
        started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        work = Path(tempfile.mkdtemp(prefix="tokbench-child-"))
        try:
            config_path = work / "config.json"
            config_path.write_text(json.dumps(config.to_dict()), encoding="utf-8")
            launch: dict[str, Any] = {"launcher": self.name, "compile_cache": self.compile_cache,
                                      "timeout_s": timeout_s}  # fmt: skip
            start_ns = self._clock()
            child = self._start_child(config, config_path, work / "result.json", work / "output.log",
                                      self._cache_root(work), launch, environment)  # fmt: skip
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        launch["pid"] = child.pid
        return RunningConfig(config, timeout_s, work, started_at, launch, child, start_ns)

    def collect(self, running: RunningConfig) -> BenchmarkResult:
        """Wait for a started child until its timeout (counted from its start) and build its result."""
        try:
            return self._collect(running)
        finally:
            shutil.rmtree(running.work, ignore_errors=True)

    def abandon(self, running: RunningConfig) -> None:
        """End a started child that will not be collected (an interrupted duet pair) and remove its folder."""
        try:
            _signal_group(running.pid, signal.SIGKILL)
            if not running.exited():
                with contextlib.suppress(ForkServerError):
                    running.child.wait(TERMINATE_GRACE_S)
            _kill_leftovers(running.pid)
        finally:
            shutil.rmtree(running.work, ignore_errors=True)

    def _collect(self, running: RunningConfig) -> BenchmarkResult:
        config, timeout_s, child, launch = running.config, running.timeout_s, running.child, running.launch
        result_path, log_path = running.work / "result.json", running.work / "output.log"
        started_at = running.started_at
        timed_out = False
        server_died: str | None = None
        try:
            seconds_left = running.seconds_left(self._clock())
            remaining_s = None if seconds_left is None else max(0.0, seconds_left + running.grace_s)
            returncode = running._exit if running._exit is not None else child.wait(remaining_s)
            if returncode is None:
                timed_out = True
                returncode = _end_process_group(child)
        except ForkServerError as error:  # the exit status is lost with the server: end the child, record why
            server_died = str(error)
            _signal_group(child.pid, signal.SIGKILL)
            returncode = None
            self._server_error = server_died
        except BaseException:  # Ctrl-C (KeyboardInterrupt) or anything else: never leave the child running
            try:
                _end_process_group(child)
            except ForkServerError:
                _signal_group(child.pid, signal.SIGKILL)
            raise
        finally:
            _kill_leftovers(child.pid)
        launch["wall_ns"] = self._clock() - running.start_ns
        launch["exit_code"] = returncode
        tail = _tail(log_path)
        launch["stderr_tail"] = tail

        ended = _ended_reason(child.pid, returncode, launch, timeout_s if timed_out else None, server_died)
        if ended is not None:
            return self._failed(config, ended, tail, launch, started_at)
        try:
            result = BenchmarkResult.from_dict(json.loads(result_path.read_text(encoding="utf-8")))
        except FileNotFoundError:
            return self._failed(config, _no_result(child.pid, returncode), tail, launch, started_at)
        except (json.JSONDecodeError, ResultFormatError, ValueError) as error:
            reason = f"the child process (pid {child.pid}) wrote an unreadable result: {error}"
            return self._failed(config, reason, tail, launch, started_at)
        if result.config_hash != config.config_hash:
            reason = f"the child process returned a result for config {result.config_hash}, not {config.config_hash}"
            return self._failed(config, reason, tail, launch, started_at)
        if result.ok:
            launch.pop("stderr_tail")  # keep the tail for failures, where it explains something
        return dataclasses.replace(result, launch=LaunchRecord.from_dict(launch))

    def abort(self) -> None:
        """From another thread (a parallel executor's Ctrl-C): kill the running child's process group and
        start no other. The thread that launched it gets a failed result (or KeyboardInterrupt) back."""
        self._aborted = True
        running = self._running
        if running is not None:
            _signal_group(running.pid, signal.SIGKILL)

    def launch_group(
        self, configs: Sequence[BenchmarkConfig], timeouts_s: Sequence[float | None]
    ) -> Generator[BenchmarkResult, None, None]:
        """One result per config, in order, each as soon as it exists: the configs of one load group are
        measured by one worker that loads the model once. If the worker dies (crash, kill, a config past its
        timeout), the config it was on fails with the reason and the rest go on in a fresh worker."""
        if len(configs) == 1:
            yield self.launch(configs[0], timeouts_s[0])
            return
        pending = list(range(len(configs)))
        worker = 0
        while pending:
            worker += 1
            started_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
            work = Path(tempfile.mkdtemp(prefix="tokbench-child-"))
            try:
                indexes = list(pending)
                for index, result in self._launch_group_once(configs, timeouts_s, indexes, work, worker, started_at):
                    pending.remove(index)
                    yield result
            finally:
                shutil.rmtree(work, ignore_errors=True)

    def _launch_group_once(
        self,
        configs: Sequence[BenchmarkConfig],
        timeouts_s: Sequence[float | None],
        indexes: list[int],
        work: Path,
        worker: int,
        started_at: str,
    ) -> Iterator[tuple[int, BenchmarkResult]]:
        """One worker for the configs at ``indexes``: yields (index, result) for each config it finished, then
        (index, failed result) for the one it was on if it died; the caller runs the rest in a fresh worker."""
        config_path, result_path, log_path = work / "group.json", work / "result.json", work / "output.log"
        group = [configs[index] for index in indexes]
        config_path.write_text(json.dumps({"group": [config.to_dict() for config in group]}), encoding="utf-8")
        base: dict[str, Any] = {"launcher": self.name, "compile_cache": self.compile_cache}
        start_ns = config_start_ns = self._clock()
        child = self._start_child(group[0], config_path, result_path, log_path, self._cache_root(work), base)
        base["pid"] = child.pid
        position = 0  # the config (of ``group``) the worker is on
        returncode: int | None = None
        exited = timed_out = False
        timed_out_position = -1
        server_died: str | None = None

        def launch_record(position: int, now_ns: int) -> dict[str, Any]:
            return {
                **base,
                "timeout_s": timeouts_s[indexes[position]],
                "wall_ns": now_ns - config_start_ns,
                "group": {"index": position, "size": len(group), "worker": worker, "worker_wall_ns": now_ns - start_ns},
            }

        try:
            while True:
                while position < len(group) and os.path.exists(group_result_path(str(result_path), position)):
                    now_ns = self._clock()
                    launch = launch_record(position, now_ns)
                    written = Path(group_result_path(str(result_path), position))
                    result = self._read_result(group[position], written, launch, log_path, started_at)
                    yield indexes[position], result
                    position += 1
                    config_start_ns = now_ns
                if exited:
                    break
                timeout_s = timeouts_s[indexes[position]] if position < len(group) else None
                remaining_s = None if timeout_s is None else timeout_s - (self._clock() - config_start_ns) / 1e9
                if remaining_s is not None and remaining_s <= 0:
                    timed_out, timed_out_position = True, position
                    returncode = _end_process_group(child)
                    exited = True
                    continue  # collect what it wrote before it ended
                returncode = child.wait(GROUP_POLL_S if remaining_s is None else min(GROUP_POLL_S, remaining_s))
                exited = returncode is not None
        except ForkServerError as error:  # the exit status is lost with the server: end the child, record why
            server_died = str(error)
            self._server_error = server_died
        finally:
            if not exited:  # Ctrl-C, a server death, or the caller stopped iterating: never leave the child running
                _signal_group(child.pid, signal.SIGKILL)
                with contextlib.suppress(ForkServerError):
                    child.wait(TERMINATE_GRACE_S)
            _kill_leftovers(child.pid)
            self._running = None
        if position >= len(group) or (timed_out and position > timed_out_position):
            return  # all done, or the late config finished as it was ended: the rest go on in a fresh worker
        launch = launch_record(position, self._clock())
        launch["exit_code"] = returncode
        tail = _tail(log_path)
        launch["stderr_tail"] = tail
        timed_out_after_s = timeouts_s[indexes[position]] if timed_out else None
        ended = _ended_reason(child.pid, returncode, launch, timed_out_after_s, server_died)
        reason = ended or _no_result(child.pid, returncode)
        yield indexes[position], self._failed(group[position], reason, tail, launch, started_at)

    def _read_result(
        self, config: BenchmarkConfig, path: Path, launch: dict[str, Any], log_path: Path, started_at: str
    ) -> BenchmarkResult:
        try:
            result = BenchmarkResult.from_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError, ResultFormatError, ValueError) as error:
            tail = _tail(log_path)
            reason = f"the child process (pid {launch.get('pid')}) wrote an unreadable result: {error}"
            return self._failed(config, reason, tail, {**launch, "stderr_tail": tail}, started_at)
        if result.config_hash != config.config_hash:
            reason = f"the child process returned a result for config {result.config_hash}, not {config.config_hash}"
            return self._failed(config, reason, _tail(log_path), launch, started_at)
        return dataclasses.replace(result, launch=launch)

    def _start_child(
        self,
        config: BenchmarkConfig,
        config_path: Path,
        result_path: Path,
        log_path: Path,
        cache_root: Path,
        launch: dict[str, Any],
        environment: Mapping[str, str] | None = None,
    ) -> _Child:
        cache_env = {
            **self.child_environment,
            **(environment or {}),
            "TORCHINDUCTOR_CACHE_DIR": str(cache_root / "inductor"),
            "TRITON_CACHE_DIR": str(cache_root / "triton"),
        }
        if self._aborted:
            raise KeyboardInterrupt  # aborted from another thread: start nothing more
        if self.child_environment:
            launch["child_environment"] = dict(self.child_environment)
            if self.child_environment.get(THREADS_ENV, "").isdigit():
                launch["threads"] = int(self.child_environment[THREADS_ENV])
        if self.start_method == "forkserver":
            try:
                server, started = self._fork_server()
                if started:  # this config's wall time includes the server's start (imports, once per launcher)
                    launch["forkserver_start_s"] = server.import_s
                pid = server.start_child(
                    config=config_path,
                    result=result_path,
                    log=log_path,
                    env=cache_env,
                    title=f"{self._python} -m tokbench.sweep.worker (forked) --name {config.name}",
                )
                launch["start_method"] = "forkserver"
                launch["forkserver_pid"] = server.pid
                self._running = _ForkedChild(server, pid)
                return self._running
            except ForkServerError as error:  # spawn this config instead, and say so
                self._server_error = str(error)
                if self._server is not None:
                    self._server.close()
                    self._server = None
                launch["forkserver_error"] = str(error)
                launch["fallback"] = "spawn (the fork server could not start the child)"
        launch["start_method"] = "spawn"
        # -X faulthandler: a crash while the child still imports torch prints its stack too (the worker's own
        # faulthandler.enable() comes after the imports)
        command = [
            self._python, "-X", "faulthandler", "-m", "tokbench.sweep.worker", "--config", str(config_path),
            "--result", str(result_path), "--parent-pid", str(os.getpid()), "--name", config.name,
        ]  # fmt: skip
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.side_environment, **cache_env},
                cwd=self.cwd,
                start_new_session=True,
            )
        self._running = _SpawnedChild(process)
        return self._running

    def _fork_server(self) -> tuple[ForkServer, bool]:
        """The running server; started (again) if there is none. A server that failed to start is not retried."""
        # A changed environment restarts the server: torch read some variables (OMP_NUM_THREADS...) on import,
        # and a spawned child would see the new values.
        if (
            self._server is not None
            and self._server.alive
            and self._server.environment == {**os.environ, **self.side_environment}
        ):
            return self._server, False
        if self._server is not None:
            self._server.close()
            self._server = None
        if self._server_error is not None and self._server_error.startswith("start: "):
            raise ForkServerError(self._server_error)
        server = ForkServer(python=self._python, environment=self.side_environment, cwd=self.cwd)
        try:
            server.start()
        except ForkServerError as error:
            self._server_error = f"start: {error}"
            raise ForkServerError(self._server_error) from error
        self._server = server
        return server, True

    def _failed(
        self, config: BenchmarkConfig, reason: str, tail: str, launch: dict[str, Any], started_at: str
    ) -> BenchmarkResult:
        last_line = next((line.strip() for line in reversed(tail.splitlines()) if line.strip()), "")
        if last_line:
            reason = f"{reason}; last output: {last_line[:300]}"
        return BenchmarkResult(
            config=config,
            status=STATUS_FAILED,
            reason=reason,
            environment=self._parent_environment(),
            started_at=started_at,
            launch=LaunchRecord.from_dict(launch),
        )

    def _parent_environment(self) -> EnvironmentRecord:
        if self._environment is None:
            from tokbench.hardware.environment import capture_environment_or_reason

            self._environment = capture_environment_or_reason("parent process (the child produced no result)")
        return self._environment


def make_launcher(
    name: str, *, compile_cache: str = "fresh", start_method: str | None = None, **options: Any
) -> InlineLauncher | ProcessLauncher:
    if name == "process":
        return ProcessLauncher(
            compile_cache=compile_cache, start_method=start_method or DEFAULT_START_METHOD, **options
        )
    if name == "inline":
        return InlineLauncher()
    raise LaunchError(f"unknown launcher {name!r}; use process or inline")


class _Child:
    """A running child, however it was started: its pid (= its process group id) and a way to wait."""

    pid: int

    def wait(self, timeout_s: float | None) -> int | None:
        """The return code (negative: killed by that signal), or None if it still runs after ``timeout_s``."""
        raise NotImplementedError


@dataclasses.dataclass
class RunningConfig:
    """One config's child, started by ``ProcessLauncher.start`` and not yet collected."""

    config: BenchmarkConfig
    timeout_s: float | None
    work: Path
    started_at: str
    launch: dict[str, Any]
    child: _Child
    start_ns: int
    grace_s: float = 0.0  # waited for beyond the timeout (a duet process told to stop because its partner failed)
    _exit: int | None = None

    @property
    def pid(self) -> int:
        return self.child.pid

    def exited(self) -> bool:
        """Whether the child has ended (asked without waiting; its code is kept for ``collect``)."""
        if self._exit is None:
            with contextlib.suppress(ForkServerError):
                self._exit = self.child.wait(0)
        return self._exit is not None

    def seconds_left(self, now_ns: int) -> float | None:
        return None if self.timeout_s is None else self.timeout_s - (now_ns - self.start_ns) / 1e9


class _SpawnedChild(_Child):
    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self._process = process
        self.pid = process.pid

    def wait(self, timeout_s: float | None) -> int | None:
        try:
            return self._process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None


class _ForkedChild(_Child):
    """A child of the fork server: the server waits for it and reports its exit status."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self._server = server
        self.pid = pid

    def wait(self, timeout_s: float | None) -> int | None:
        return self._server.wait_child(self.pid, timeout_s)


def _end_process_group(child: _Child) -> int | None:
    """SIGTERM the child's process group, then SIGKILL it if the child is still there after a grace period."""
    _signal_group(child.pid, signal.SIGTERM)
    returncode = child.wait(TERMINATE_GRACE_S)
    if returncode is None:
        _signal_group(child.pid, signal.SIGKILL)
        returncode = child.wait(None)
    return returncode


def _kill_leftovers(group_id: int) -> None:
    """Grandchildren (e.g. inductor's compile worker pool) must not outlive the config that started them."""
    _signal_group(group_id, signal.SIGKILL)


def _signal_group(group_id: int, signal_number: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):  # the group is already gone
        os.killpg(group_id, signal_number)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _ended_reason(
    pid: int, returncode: int | None, launch: dict[str, Any], timed_out_after_s: float | None, server_died: str | None
) -> str | None:
    """Why a child ended before it could finish (a dead fork server, its timeout, a signal), recorded on
    ``launch``; None when it exited by itself (its result, if it wrote one, says the rest)."""
    if server_died is not None:
        launch["forkserver_error"] = server_died
        return f"the fork server died while the child process (pid {pid}) ran; it was ended"
    if timed_out_after_s is not None:
        return f"timed out after {timed_out_after_s:g} s; the child process (pid {pid}) was ended"
    if returncode is not None and returncode < 0:
        signal_name = _signal_name(-returncode)
        launch["signal"] = signal_name
        cause = " (an out-of-memory kill or an external kill)" if signal_name == "SIGKILL" else ""
        return f"the child process (pid {pid}) was killed by {signal_name}{cause}"
    return None


def _no_result(pid: int, returncode: int | None) -> str:
    return f"the child process (pid {pid}) exited with code {returncode} and wrote no result"


def _tail(path: Path, chars: int = STDERR_TAIL_CHARS) -> str:
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - chars))
            return stream.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
