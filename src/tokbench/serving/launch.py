"""Starting the server under test and stopping it after: any command (``--launch``), or ``transformers serve`` on a
tiny preset saved to a temporary folder (the offline default of ``tokbench serve-bench`` with no URL).

The server runs in its own session (process group), its output goes to a log file whose tail is kept in the
result, tokbench waits for ``GET /health`` (or ``/v1/models``) to answer 200, and stops the whole group with
SIGTERM, then SIGKILL. Only loopback ports are picked here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tokbench import presets
from tokbench.errors import LaunchError
from tokbench.schema.serving import ServerRecord
from tokbench.text import terminal_safe

HEALTH_PATHS = ("/health", "/v1/models")
# A minimal chat template for the presets' tokenizer (it ships none): the user turn, then the assistant's start.
PRESET_CHAT_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}\n"
    "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def free_loopback_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen[bytes]
    command: tuple[str, ...]
    log_path: Path
    started_ns: int
    healthy_ns: int
    kind: str

    def log_tail(self, limit: int = 2000) -> str:
        try:
            text = self.log_path.read_bytes()[-limit:].decode("utf-8", "replace")
        except OSError:
            return ""
        return terminal_safe(text)

    def record(self) -> ServerRecord:
        return ServerRecord(kind=self.kind, command=self.command, pid=self.process.pid,
                            startup_ns=self.healthy_ns - self.started_ns,
                            exit_code=self.process.returncode, log_tail=self.log_tail() or None)  # fmt: skip


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            tail = log_path.read_bytes()[-1500:].decode("utf-8", "replace") if log_path.is_file() else ""
            raise LaunchError(
                f"the server exited with code {process.returncode} before it was healthy: "
                f"{terminal_safe(tail, newlines=False)[-600:]}"
            )
        for path in HEALTH_PATHS:
            try:
                with urllib.request.urlopen(url + path, timeout=2) as response:
                    if response.status == 200:
                        return
            except (urllib.error.URLError, OSError, ValueError):
                pass
        time.sleep(0.25)
    raise LaunchError(f"the server at {url} did not answer {HEALTH_PATHS[0]} within {timeout_s:g} s")


def stop(process: subprocess.Popen[bytes], grace_s: float = 10.0) -> int | None:
    """SIGTERM to the server's process group, SIGKILL after ``grace_s``; its exit code."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    return process.returncode


@contextlib.contextmanager
def launched(
    command: Sequence[str], url: str, *, kind: str = "launched", timeout_s: float = 300.0,
    env: dict[str, str] | None = None, log_dir: Path | None = None, cwd: str | None = None,
) -> Iterator[RunningServer]:  # fmt: skip
    """Run ``command`` (in ``cwd``, with ``env`` added) until the block ends; it must serve ``url`` within
    ``timeout_s``."""
    folder = Path(log_dir or tempfile.mkdtemp(prefix="tokbench-server-"))
    log_path = folder / "server.log"
    started = time.perf_counter_ns()
    with open(log_path, "wb") as log:
        try:
            process = subprocess.Popen(
                list(command), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, env={**os.environ, **(env or {})}, cwd=cwd,
            )  # fmt: skip
        except OSError as error:
            raise LaunchError(f"cannot start {shlex.join(command)}: {error.strerror or error}") from error
    server = RunningServer(url, process, tuple(command), log_path, started, started, kind)
    try:
        wait_healthy(url, process, timeout_s, log_path)
        server.healthy_ns = time.perf_counter_ns()
        yield server
    finally:
        stop(process)


def launch_command(text: str) -> tuple[list[str], str]:
    """``--launch "CMD"``: its words, and the URL it will serve (``{port}`` in CMD becomes a free loopback port)."""
    words = shlex.split(text)
    if not words:
        raise LaunchError("--launch needs a command")
    port = free_loopback_port()
    if any("{port}" in word for word in words):
        return [word.replace("{port}", str(port)) for word in words], f"http://127.0.0.1:{port}"
    return words, ""


def save_preset(name: str, folder: Path, seed: int = 0, dtype: str = "float32") -> Path:
    """Preset ``name`` with its seeded random weights, its tokenizer (with a minimal chat template) and a
    generation config without EOS, saved as a transformers model folder that ``transformers serve`` loads.

    The presets' vocabularies are larger than their tokenizer (8,192 rows for 2,762 tokens): a random model
    would mostly pick ids that decode to no text, and a streamed token without text never reaches a client.
    The output rows of those ids and of the special tokens are zeroed, so greedy decoding picks printable tokens
    (every other logit is a random projection, and the largest of thousands is positive); shapes and so timing
    are the preset's own."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    model_config = AutoConfig.for_model(**presets.preset_config_dict(name))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = AutoModelForCausalLM.from_config(model_config, dtype=getattr(torch, dtype))
    model.generation_config.eos_token_id = None  # exactly max_new_tokens, as in-process runs generate
    tokenizer = AutoTokenizer.from_pretrained(str(presets.tokenizer_dir()))
    silent = sorted(set(range(len(tokenizer), model_config.vocab_size)) | set(tokenizer.all_special_ids))
    with torch.no_grad():
        model.get_output_embeddings().weight[silent] = 0.0
    model.save_pretrained(folder)
    tokenizer.chat_template = PRESET_CHAT_TEMPLATE
    tokenizer.save_pretrained(folder)
    return folder


def transformers_serve_command(model_folder: Path, port: int, continuous_batching: bool) -> list[str]:
    executable = shutil.which("transformers", path=str(Path(sys.executable).parent)) or "transformers"
    command = [executable, "serve", str(model_folder), "--host", "127.0.0.1", "--port", str(port),
               "--device", "cpu", "--dtype", "float32"]  # fmt: skip
    if continuous_batching:
        # a bounded paged cache (64 blocks of 32 tokens: 2,048 tokens in flight): left to itself it sizes the cache
        # from free memory, gigabytes on a CPU host, and takes minutes to allocate
        command += ["--continuous-batching", "--cb-block-size", "32", "--cb-num-blocks", "64",
                    "--cb-max-batch-tokens", "256"]  # fmt: skip
    return command


@contextlib.contextmanager
def transformers_serve_preset(
    preset: str, *, continuous_batching: bool = False, seed: int = 0, timeout_s: float = 300.0
) -> Iterator[tuple[RunningServer, Path]]:
    """``transformers serve`` on a saved preset on a free loopback port; the server and the model folder."""
    with tempfile.TemporaryDirectory(prefix="tokbench-serve-") as folder:
        model_folder = save_preset(preset, Path(folder) / preset, seed)
        port = free_loopback_port()
        command = transformers_serve_command(model_folder, port, continuous_batching)
        env = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
        with launched(command, f"http://127.0.0.1:{port}", kind="transformers-serve", timeout_s=timeout_s, env=env,
                      log_dir=Path(folder)) as server:  # fmt: skip
            yield server, model_folder


def describe_command(command: Sequence[str]) -> str:
    return json.dumps(list(command))
