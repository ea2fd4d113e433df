"""The README is executed, so it cannot drift from the code.

Every fenced block carries a marker on the line before it, ``<!-- readme-test: KIND[: ARGUMENT] -->``:

- ``run`` (``run: fast``): each line is a shell command a user types, run in order in one fresh working folder,
  which must exit 0. ``fast`` appends ``--warmup-iterations 1 --measurement-iterations 3`` to every ``tokbench run``
  of the block: the command, its flags and its path are what is tested, not a 15 s budget on a shared machine;
- ``python``: the snippet runs with this Python in the same folder and must exit 0;
- ``file: NAME``: the block is written to NAME in that folder (a sweep file a later command uses);
- ``output-of: COMMAND``: what COMMAND prints on a fresh clone (``make run`` means its Makefile recipe): every line
  the real command prints has its label in the block, and every label line of the block is printed for real
  (numbers differ from machine to machine, the lines do not). A ``tokbench run`` here keeps its auto policies but
  gets ``AUTO_FAST``: smaller minimums and budgets print the same lines in a fraction of the time (on this
  project's shared machine the default run takes minutes);
- ``synopsis: CMD [CMD...]``: the usage lines of those commands: every flag they list exists, and every flag the
  command has is listed;
- ``skip: REASON``: not run (a GPU, a cluster, the Hub, or a transcript of data made elsewhere), with the reason.

Inline code in the prose is checked too: ``tokbench.x.y`` names import, file paths exist, and the flags of
inline ``tokbench CMD --flag`` commands exist.
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tokbench.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
MARKER = re.compile(r"^<!-- readme-test: (?P<kind>[a-z-]+)(?::\s*(?P<argument>.*?))? -->$")
KINDS = ("run", "python", "file", "output-of", "synopsis", "skip")
FAST = ["--warmup-iterations", "1", "--measurement-iterations", "3"]
AUTO_FAST = ["--warmup-min-iterations", "2", "--warmup-budget-s", "1", "--measurement-min-iterations", "2",
             "--measurement-budget-s", "2"]  # fmt: skip
# Inline code that looks like a Python name but is not one.
NOT_PYTHON_NAMES = {"tokbench.forward": "the profiler event each model forward is wrapped in"}
# Lines an output block may show that a given run need not print: they depend on the run (flags, notes).
CONDITIONAL_LABELS = ("flags:", "note:", "tuner:", "reason:")


@dataclass(frozen=True)
class Block:
    line: int  # the fence's line number (1-based)
    info: str  # the fence's info string (python, yaml...)
    text: str
    kind: str
    argument: str


def blocks() -> list[Block]:
    lines = README.read_text(encoding="utf-8").splitlines()
    found, index = [], 0
    while index < len(lines):
        if not lines[index].startswith("```"):
            index += 1
            continue
        start, info = index, lines[index][3:].strip()
        end = next(i for i in range(start + 1, len(lines)) if lines[i].startswith("```"))
        previous = next((lines[i] for i in range(start - 1, -1, -1) if lines[i].strip()), "")
        marker = MARKER.match(previous.strip())
        found.append(Block(start + 1, info, "\n".join(lines[start + 1 : end]), marker["kind"] if marker else "",
                           (marker["argument"] or "") if marker else ""))  # fmt: skip
        index = end + 1
    return found


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def flags_of(parser: argparse.ArgumentParser) -> set[str]:
    """The flags a command documents (one hidden from --help, kept so old scripts still run, is not listed)."""
    return {option for action in parser._actions if action.help != argparse.SUPPRESS
            for option in action.option_strings if option.startswith("--")}  # fmt: skip


def test_every_fenced_block_says_how_it_is_tested() -> None:
    problems = [f"line {b.line}: no <!-- readme-test: ... --> marker" for b in blocks() if not b.kind]
    problems += [f"line {b.line}: unknown kind {b.kind!r}" for b in blocks() if b.kind and b.kind not in KINDS]
    problems += [f"line {b.line}: skip needs a reason" for b in blocks() if b.kind == "skip" and not b.argument]
    assert not problems, "\n".join(problems)


def test_synopses_list_every_flag_and_only_real_ones() -> None:
    commands = subparsers()
    problems = []
    for block in (b for b in blocks() if b.kind == "synopsis"):
        listed: dict[str, set[str]] = {name: set() for name in block.argument.split()}
        current = ""
        for line in block.text.splitlines():
            words = line.split()
            if len(words) >= 2 and words[0] == "tokbench":  # a command's first line (another command: not ours)
                current = words[1] if words[1] in listed else ""
            if current:
                listed[current] |= set(re.findall(r"--[a-z][a-z0-9-]*", line))
        for name, flags in listed.items():
            real = flags_of(commands[name]) - {"--help"}
            problems += [f"line {block.line}: tokbench {name} has no {flag}" for flag in sorted(flags - real)]
            problems += [f"line {block.line}: tokbench {name} {flag} is not listed" for flag in sorted(real - flags)]
    assert not problems, "\n".join(problems)


def inline_code() -> list[str]:
    prose = re.sub(r"```.*?```", "", README.read_text(encoding="utf-8"), flags=re.S)
    return re.findall(r"`([^`\n]+)`", prose)


def resolves(name: str) -> bool:
    parts = name.split(".")
    for split in range(len(parts), 0, -1):
        try:
            value = importlib.import_module(".".join(parts[:split]))
        except ImportError:
            continue
        try:
            for attribute in parts[split:]:
                value = getattr(value, attribute)
        except AttributeError:
            return False
        return True
    return False


def test_inline_names_paths_and_flags_are_real() -> None:
    commands, problems = subparsers(), []
    for span in inline_code():
        name = re.match(r"^tokbench(\.\w+)+", span)
        if name and name.group(0) not in NOT_PYTHON_NAMES and not resolves(name.group(0)):
            problems.append(f"`{span}`: {name.group(0)} does not import")
        words = span.split()
        path = words[1] if words[0] in ("python", "python3") and len(words) > 1 else words[0]
        if re.match(r"^(src|benchmarks|scripts|docs|tests)/\S+\.\w+$", path) and not (ROOT / path).exists():
            problems.append(f"`{span}`: {path} does not exist")
        if len(words) >= 2 and words[0] == "tokbench" and words[1] in commands:
            missing = set(re.findall(r"--[a-z][a-z0-9-]*", span)) - flags_of(commands[words[1]])
            problems += [f"`{span}`: tokbench {words[1]} has no {flag}" for flag in sorted(missing)]
    assert not problems, "\n".join(problems)


# --- the walk -----------------------------------------------------------------------------------------------


def environment(folder: Path) -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1",
            "COLUMNS": "10000", "TOKBENCH_CACHE_DIR": str(folder / ".cache")}  # fmt: skip


def makefile_command(target: str) -> str:
    """The recipe of a Makefile target, as the venv runs it (``$(VENV)/bin/tokbench run`` → ``tokbench run``)."""
    lines = (ROOT / "Makefile").read_text(encoding="utf-8").splitlines()
    start = lines.index(next(line for line in lines if line.startswith(f"{target}:")))
    recipe = lines[start + 1].strip()
    return recipe.replace("$(VENV)/bin/", "")


def shell(command: str, folder: Path, timeout: int = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=folder, env=environment(folder), capture_output=True,
                          text=True, timeout=timeout)  # fmt: skip


def label(line: str) -> str:
    """What a printed line is, without its figures: up to its first ':' within three words, else its first words
    before a digit or bracket."""
    words = line.split()
    for count, word in enumerate(words[:3], start=1):
        if word.endswith(":"):
            return " ".join(words[:count])
    return re.split(r"[\d\[(]", line, maxsplit=1)[0].strip()


def is_label_line(line: str) -> bool:
    return bool(re.match(r"^[a-z±][a-zA-Z ±-]*:", line)) and not line.startswith(CONDITIONAL_LABELS)


def check_output(block: Block, printed: str) -> list[str]:
    real = [line.strip() for line in printed.splitlines()]
    real = [line for line in real if line and not line.startswith(("┏", "┃", "┡", "│", "└"))]
    shown = [line.strip() for line in block.text.splitlines()]
    problems = [f"line {block.line}: the block lacks the printed line {line[:80]!r}"
                for line in real if not any(s.startswith(label(line)) for s in shown)]  # fmt: skip
    real_labels = {label(line) for line in real}
    problems += [f"line {block.line}: {line[:80]!r} is not printed any more"
                 for line in shown if is_label_line(line) and label(line) not in real_labels]  # fmt: skip
    return problems


@pytest.mark.slow
def test_the_readme_runs_top_to_bottom_in_a_fresh_folder(tmp_path: Path) -> None:
    problems: list[str] = []
    for block in blocks():
        if block.kind == "file":
            (tmp_path / block.argument).write_text(block.text + "\n", encoding="utf-8")
        elif block.kind == "run":
            for command in (line.split(" #")[0].strip() for line in block.text.splitlines()):
                if not command:
                    continue
                words = shlex.split(command)
                if block.argument == "fast" and words[:2] == ["tokbench", "run"]:
                    command = " ".join([command, *FAST])
                done = shell(command, tmp_path)
                if done.returncode != 0:
                    problems.append(f"line {block.line}: `{command}` exited {done.returncode}: {done.stderr[-600:]}")
        elif block.kind == "python":
            script = tmp_path / f"readme-{block.line}.py"
            script.write_text(block.text + "\n", encoding="utf-8")
            done = shell(f"{shlex.quote(sys.executable)} {script.name}", tmp_path)
            if done.returncode != 0:
                problems.append(f"line {block.line}: the snippet exited {done.returncode}: {done.stderr[-900:]}")
        elif block.kind == "output-of":
            command = makefile_command("run") if block.argument == "make run" else block.argument
            if shlex.split(command)[:2] == ["tokbench", "run"]:
                command = " ".join([command, *AUTO_FAST])
            done = shell(command, tmp_path)
            if done.returncode != 0:
                problems.append(f"line {block.line}: `{command}` exited {done.returncode}: {done.stderr[-600:]}")
            problems += check_output(block, done.stdout)
    assert not problems, "\n".join(problems)
