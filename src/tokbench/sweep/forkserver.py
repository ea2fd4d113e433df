"""A fork server for the process launcher: import torch once, fork a fresh child per config.

A fresh interpreter spends seconds importing torch and transformers before a config even starts. The
server (``python -m tokbench.sweep.forkserver``, one per ``ProcessLauncher``) pays that once: it imports
torch, transformers and ``tokbench.engine.runner`` and then only waits. It never runs a config, never runs a
torch op and never touches CUDA, so a forked child inherits no OpenMP pool, CUDA context or other
state, only imported modules. Each child is as isolated as a spawned ``tokbench.sweep.worker``: its own
session (process group), its own output file, its own environment overrides (compile cache folders),
the same code path (``worker.run_config_file``: config JSON in, result JSON file out), and it exits
when the *launcher* dies (it watches the launcher's pid; the server is its parent, not the launcher).

Protocol, one JSON object per line. Launcher → server (stdin)::

    {"config": path, "result": path, "log": path, "env": {...}, "launcher_pid": int, "title": str}

Server → launcher (stdout): ``{"ready": true, "pid": P, "import_s": S}`` once, then for each request
``{"started": pid}`` (after the child has its own session, so its process group can be signalled) or
``{"error": text}``, and ``{"exited": pid, "returncode": rc}`` when a child ends (``rc`` as
``subprocess`` gives it: negative for a signal). When its stdin closes (the launcher closed it, or
died) the server SIGKILLs the process groups of the children still running and exits.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path
from typing import Any, NoReturn

from tokbench.errors import ForkServerError

# What a child would import anyway; imported once, in the server.
PRELOAD = (
    "torch",
    "transformers",
    "tokbench.engine.runner",
    "tokbench.schema.results",
    "tokbench.hardware.environment",
)
# What a run imports lazily on first use (about 1.5 s on 2 cores: dynamo, sympy, generation, the Llama
# model code); best effort, since a transformers version may lay these out differently.
PRELOAD_LAZY = (
    "torch._dynamo",
    "transformers.generation",
    "transformers.modeling_utils",
    "transformers.models.llama.modeling_llama",
    "transformers.integrations",
    "transformers.quantizers",
    "transformers.loss.loss_utils",
)
START_TIMEOUT_S = 300.0
_READ_SIZE = 65536


# --- the server side --------------------------------------------------------------------------------


def serve() -> int:
    replies = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)  # a stray print of an imported library goes to the server's log, not into the replies
    start_ns = time.perf_counter_ns()
    for name in PRELOAD:
        importlib.import_module(name)
    for name in PRELOAD_LAZY:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    import torch

    if torch.cuda.is_initialized():  # a forked child could not use CUDA: refuse, the launcher spawns instead
        print("tokbench.sweep.forkserver: CUDA was initialised by an import; cannot fork safely", file=sys.stderr)
        return 1
    warnings.filterwarnings("ignore", message=r".*fork\(\) may lead to deadlocks", category=DeprecationWarning)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_read, False)
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)  # a handler, so SIGCHLD wakes the select below
    _reply(replies, {"ready": True, "pid": os.getpid(), "import_s": (time.perf_counter_ns() - start_ns) / 1e9})

    running: set[int] = set()
    pending = b""
    requests = sys.stdin.fileno()
    while True:
        readable, _, _ = select.select([requests, wake_read], [], [])
        if wake_read in readable:
            with contextlib.suppress(BlockingIOError):
                while os.read(wake_read, _READ_SIZE):
                    pass
            _reap(running, replies, block=False)
        if requests in readable:
            data = os.read(requests, _READ_SIZE)
            if not data:
                for pid in running:
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.killpg(pid, signal.SIGKILL)
                _reap(running, replies, block=True)
                return 0
            pending += data
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                if line.strip():
                    _start_child(line, running, replies, close_in_child=(requests, wake_read, wake_write))


def _reply(replies: Any, message: dict[str, Any]) -> None:
    with contextlib.suppress(BrokenPipeError):  # the launcher is gone; stdin's end of file will follow
        replies.write(json.dumps(message) + "\n")
        replies.flush()


def _reap(running: set[int], replies: Any, *, block: bool) -> None:
    while running:
        try:
            pid, status = os.waitpid(-1, 0 if block else os.WNOHANG)
        except ChildProcessError:
            running.clear()
            return
        if pid == 0:
            return
        running.discard(pid)
        _reply(replies, {"exited": pid, "returncode": os.waitstatus_to_exitcode(status)})


def _start_child(line: bytes, running: set[int], replies: Any, close_in_child: tuple[int, ...]) -> None:
    try:
        request = json.loads(line)
        for key in ("config", "result", "log", "launcher_pid"):
            if key not in request:
                raise KeyError(f"the request lacks {key!r}")
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        _reply(replies, {"error": f"bad request: {error}"})
        return
    sys.stdout.flush()
    sys.stderr.flush()
    ready_read, ready_write = os.pipe()
    try:
        pid = os.fork()
    except OSError as error:
        os.close(ready_read)
        os.close(ready_write)
        _reply(replies, {"error": f"fork failed: {error}"})
        return
    if pid == 0:
        os.close(ready_read)
        _child(request, ready_write, (*close_in_child, replies.fileno()))
    os.close(ready_write)
    os.read(ready_read, 1)  # the child is in its own session now (or already dead): its group can be signalled
    os.close(ready_read)
    running.add(pid)
    _reply(replies, {"started": pid})


def _child(request: dict[str, Any], ready_write: int, close_fds: tuple[int, ...]) -> NoReturn:
    code = 1
    try:
        os.setsid()
        os.write(ready_write, b".")
        os.close(ready_write)
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in close_fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        log = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(devnull)
        os.close(log)
        os.environ.update({str(key): str(value) for key, value in request.get("env", {}).items()})
        _set_title(request.get("title", ""))
        import faulthandler

        from tokbench.sweep.worker import exit_when_gone, run_config_file

        faulthandler.enable()  # a segfault prints the Python stack into the output file the launcher keeps
        exit_when_gone(int(request["launcher_pid"]))
        code = run_config_file(request["config"], request["result"])
    except BaseException:  # whatever happens, the child must not return into the server's loop
        with contextlib.suppress(BaseException):
            traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _set_title(title: str) -> None:
    """``ps`` shows the child like a spawned worker (``tokbench.sweep.worker ... --name NAME``), not as the server."""
    if not title:
        return
    try:
        import setproctitle
    except ImportError:
        return
    setproctitle.setproctitle(title)


# --- the launcher side ------------------------------------------------------------------------------


class ForkServer:
    """The launcher's handle on one server process, started by ``start`` and ended by ``close``."""

    def __init__(
        self,
        *,
        python: str = sys.executable,
        start_timeout_s: float = START_TIMEOUT_S,
        environment: dict[str, str] | None = None,
        cwd: str | None = None,
    ) -> None:
        self._python = python
        # Variables set on top of this process's for the server (and so for every child it forks), and its
        # working directory: an A/B side's own environment (``sweep.ab``), read by the imports it preloads.
        self._overrides = dict(environment or {})
        self._cwd = cwd
        self._start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log_path: Path | None = None
        self._pending = b""
        self._exits: dict[int, int] = {}
        self.import_s: float | None = None
        # The environment the server started with: what its imports read (thread counts, visible devices...).
        self.environment: dict[str, str] = {}

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and wait until it has imported everything; raises ``ForkServerError``."""
        self.close()
        self.environment = {**os.environ, **self._overrides}
        handle, log_name = tempfile.mkstemp(prefix="tokbench-forkserver-", suffix=".log")
        self._log_path = Path(log_name)
        try:
            self._process = subprocess.Popen(
                [self._python, "-m", "tokbench.sweep.forkserver"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=handle,
                env=self.environment,
                cwd=self._cwd,
                start_new_session=True,  # a Ctrl-C in the terminal reaches the launcher, which ends the children
            )
        except OSError as error:
            raise ForkServerError(f"cannot start the fork server: {error}") from error
        finally:
            os.close(handle)
        message = self._next_message(time.monotonic() + self._start_timeout_s)
        if message is None or not message.get("ready"):
            tail = self.log_tail()
            self.close()
            raise ForkServerError(f"the fork server did not start ({message or 'no answer'}); {tail}")
        self.import_s = message.get("import_s")

    def start_child(self, *, config: Path, result: Path, log: Path, env: dict[str, str], title: str) -> int:
        """Fork one child for one config; returns its pid (also its process group id)."""
        request = {
            "config": str(config),
            "result": str(result),
            "log": str(log),
            "env": env,
            "launcher_pid": os.getpid(),
            "title": title,
        }
        self._send(request)
        while True:
            message = self._next_message(None)
            if message is None:
                raise ForkServerError(f"the fork server died before it started the child; {self.log_tail()}")
            if "started" in message:
                return int(message["started"])
            if "error" in message:
                raise ForkServerError(f"the fork server could not start the child: {message['error']}")

    def wait_child(self, pid: int, timeout_s: float | None) -> int | None:
        """The child's return code, or None if it still runs after ``timeout_s``; raises ``ForkServerError``
        if the server died (the child's exit status is then lost)."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pid not in self._exits:
            message = self._next_message(deadline)
            if message is None:
                if self.alive:
                    return None
                raise ForkServerError(f"the fork server died while the child (pid {pid}) ran; {self.log_tail()}")
        return self._exits.pop(pid)

    def close(self) -> None:
        """End the server (closing its stdin makes it kill any child left and exit) and remove its log."""
        process, self._process = self._process, None
        if process is not None:
            with contextlib.suppress(OSError):
                process.stdin.close()  # type: ignore[union-attr]
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            with contextlib.suppress(OSError):
                process.stdout.close()  # type: ignore[union-attr]
        if self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path = None
        self._pending = b""
        self._exits.clear()

    def log_tail(self, chars: int = 600) -> str:
        if self._log_path is None:
            return "no server log"
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace")[-chars:].strip()
        except OSError:
            return "no server log"
        return f"server log: {text}" if text else "the server log is empty"

    def _send(self, message: dict[str, Any]) -> None:
        if self._process is None or self._process.stdin is None:
            raise ForkServerError("the fork server is not running")
        try:
            self._process.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
            self._process.stdin.flush()
        except (BrokenPipeError, OSError) as error:
            raise ForkServerError(f"the fork server is gone ({error}); {self.log_tail()}") from error

    def _next_message(self, deadline: float | None) -> dict[str, Any] | None:
        """The next reply that is not an exit notice (those are kept); None at the deadline or end of file."""
        assert self._process is not None and self._process.stdout is not None
        fd = self._process.stdout.fileno()
        while True:
            while b"\n" in self._pending:
                line, self._pending = self._pending.split(b"\n", 1)
                message = json.loads(line)
                if "exited" in message:
                    self._exits[int(message["exited"])] = int(message["returncode"])
                    return {}
                return message
            wait_s = None if deadline is None else max(0.0, deadline - time.monotonic())
            readable, _, _ = select.select([fd], [], [], wait_s)
            if not readable:
                return None
            data = os.read(fd, _READ_SIZE)
            if not data:
                self._process.wait()
                return None
            self._pending += data


if __name__ == "__main__":
    sys.exit(serve())
