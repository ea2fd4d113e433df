"""A quiet start: a real ``tokbench run`` prints only tokbench's own lines; what the libraries said is kept in the
result (``engine.quiet``). Runs with the libraries the test extras install (torchao, bitsandbytes, optimum-quanto):
transformers imports torchao whenever it is installed, which is what made a default run noisy."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from tokbench.engine.quiet import fd_output_held, libraries_quiet

QUICK = [
    "--model", "tiny-llama", "--sequence-length", "8", "--new-tokens", "3", "--warmup-iterations", "1",
    "--measurement-iterations", "2", "--device", "cpu", "--no-monitor",
]  # fmt: skip
# What the libraries printed before engine.quiet held it back (each seen on this machine, see issue 23 / 25).
LIBRARY_NOISE = ("Failed to load", "_pytree", "USDT", "MatMul8bitLt", "Loading weights", "it/s]", "Ray")


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def tokbench_run(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[type-arg]
    result_path = tmp_path / "result.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "COLUMNS": "140"}
    env.pop("TOKBENCH_LIBRARY_OUTPUT", None)
    completed = subprocess.run(
        [sys.executable, "-m", "tokbench", "run", *QUICK, *args, "--output", str(result_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == 0, completed.stderr
    return completed, json.loads(result_path.read_text())


def held_texts(data: dict) -> str:  # type: ignore[type-arg]
    return "\n".join(f"{m['origin']} {m['level']} {m['text']}" for m in data.get("library_output", []))


@pytest.mark.skipif(not installed("torchao"), reason="torchao is not installed (tokbench[quant]): nothing to hold back")
def test_a_default_run_prints_only_tokbenchs_own_lines_and_keeps_what_the_libraries_said(tmp_path: Path) -> None:
    completed, data = tokbench_run(tmp_path, "--no-progress", "--profile-tokens", "1")
    assert completed.stderr == ""  # no progress asked for: nothing at all on stderr
    first = completed.stdout.splitlines()[0]
    assert first.startswith(data["config"]["name"]) and "[ok]" in first
    assert not [line for line in completed.stdout.splitlines() if any(noise in line for noise in LIBRARY_NOISE)]
    held = held_texts(data)
    # torchao's import-time lines and the profiler's C++ lines are in the result, not on the terminal, and no
    # note repeats them: a library importing itself says nothing about the run
    assert "torchao warning" in held and "torch output USDT" in held
    assert not [note for note in data["notes"] if note.startswith("library ")]


def test_progress_lines_are_the_only_stderr_lines(tmp_path: Path) -> None:
    completed, _ = tokbench_run(tmp_path)
    lines = completed.stderr.splitlines()
    # tokbench's progress on a non-terminal: "STAGE: ..." with a lower-case stage name (warmup, measurement, ...);
    # the libraries' lines start otherwise ("Failed to load", "W1202 12:00:00 ...", "USDT:...", "Loading weights")
    assert "warmup: started (up to 1 iterations)" in lines
    assert all(re.match(r"[a-z][a-z0-9 _-]*: ", line) for line in lines), lines


@pytest.mark.parametrize(
    ("method", "module", "noise"),
    [("bnb-int8", "bitsandbytes", "MatMul8bitLt"), ("quanto-int8", "optimum.quanto", "Loading weights")],
)
def test_third_party_quantization_keeps_the_library_spam_off_the_terminal(
    tmp_path: Path, method: str, module: str, noise: str
) -> None:
    if not installed(module):
        pytest.skip(f"{module} is not installed (tokbench[quant])")
    completed, data = tokbench_run(tmp_path, "--no-progress", "--quantization", method)
    assert data["status"] == "ok", data["reason"]
    assert completed.stderr == ""
    assert noise not in completed.stdout.replace(f"library bitsandbytes warning: {noise}", "")
    if method == "bnb-int8":
        # one warning per forward pass becomes one note with its count: it concerns the model (bf16 cast to fp16)
        notes = [note for note in data["notes"] if noise in note]
        assert len(notes) == 1 and "(x" in notes[0], data["notes"]
        assert notes[0] in completed.stdout.replace("\n", " ") or notes[0][:60] in completed.stdout
        (message,) = [m for m in data["library_output"] if noise in m["text"]]
        assert message["origin"] == "bitsandbytes" and message["count"] > 1


def test_a_block_holds_library_logging_warnings_and_c_output_and_gives_it_all_back(
    capfd: pytest.CaptureFixture[str],
) -> None:
    torch_logger = logging.getLogger("torch.utils._pytree")
    before = [(logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in ("torch", "ray")]
    with pytest.warns(UserWarning) as shown, libraries_quiet() as held:
        for _ in range(3):
            torch_logger.warning("pytree says %s", "hello")
        logging.getLogger("ray.worker").warning("ray says hi")
        with fd_output_held("torch.profiler"):
            os.write(2, b"USDT: from C\n")
        warnings.warn_explicit("old API", FutureWarning, f"{os.sep}site-packages{os.sep}torchao{os.sep}a.py", 1)
        warnings.warn("a warning from outside the libraries", UserWarning, stacklevel=1)
    err = capfd.readouterr().err
    assert "pytree says" not in err and "ray says" not in err and "USDT" not in err
    assert [str(warning.message) for warning in shown] == ["a warning from outside the libraries"]
    messages = {(m.origin, m.level, m.text): m.count for m in held.messages()}
    assert messages[("torch", "warning", "pytree says hello")] == 3
    assert messages[("ray", "warning", "ray says hi")] == 1
    assert messages[("torch", "output", "USDT: from C")] == 1
    assert messages[("torchao", "warning", "FutureWarning: old API")] == 1
    assert "torch warning: pytree says hello (x3)" in held.warning_notes()
    assert not [note for note in held.warning_notes() if "USDT" in note]  # printed output is no warning
    after = [(logging.getLogger(name).handlers[:], logging.getLogger(name).propagate) for name in ("torch", "ray")]
    assert after == before  # the libraries' own logging is as it was
