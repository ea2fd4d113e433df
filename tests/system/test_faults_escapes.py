"""Fault injection, untrusted text on the read side (issue 24): stored names reaching a real terminal (a pty),
file names in error lines, right-to-left overrides in the HTML report.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
from pathlib import Path

import pytest
from faults_support import EVIL, result_data, write_json

from tokbench.cli import main
from tokbench.config import BenchmarkConfig
from tokbench.results.store import ResultStore
from tokbench.sweep.runner import _skipped_result

RAW = ("\x1b", "\x07", "\u202e")


def _on_a_terminal(*args: str, timeout: float = 120) -> str:
    """Run ``tokbench ARGS`` with its standard output on a real pseudo-terminal; what the terminal received."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "tokbench", *args],
        stdout=follower,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"},
    )
    os.close(follower)
    received = b""
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], timeout)
            if not ready:
                raise TimeoutError("the command printed nothing for too long")
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            received += chunk
    finally:
        os.close(leader)
        process.wait(timeout=timeout)
    assert process.returncode == 0
    return received.decode("utf-8", "replace")


def test_csv_export_to_a_terminal_shows_escapes_not_raw_control_characters(tmp_path: Path) -> None:
    db = tmp_path / "theirs.db"
    with ResultStore(db) as store:
        store.add(_skipped_result(BenchmarkConfig(name=EVIL, device="cpu"), f"reason {EVIL}", "inline", {}))
    shown = _on_a_terminal("export", "--format", "csv", "--db", str(db))
    assert not any(character in shown for character in RAW), repr(shown)
    assert "\\x1b]0;pwned\\x07" in shown and "\\u202e" in shown
    # into a file the CSV stays exact (spreadsheet-safe, not terminal-escaped)
    assert main(["export", "--format", "csv", "--db", str(db), "--output", str(tmp_path / "e.csv")]) == 0
    assert EVIL.replace('"', '""') in (tmp_path / "e.csv").read_text()
    # fix: cli.store.command_export passes text through text.terminal_safe when standard output is a terminal


def test_file_names_in_error_lines_are_escaped(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    evil_file = tmp_path / "x\x1b[2J\u202egnp.json"
    evil_file.write_text("{not json")
    for args in (
        ["report", str(evil_file), "--output", str(tmp_path / "r.html")],
        ["report", str(tmp_path / "missing\x1b[31m.json"), "--output", str(tmp_path / "r.html")],
        ["compare", str(evil_file), str(real_results[1])],
        ["compare", str(real_results[0]), str(real_results[1]), "--output", str(tmp_path / "o\x07ut\x1b.db")],
    ):
        code = main(args)
        err = capsys.readouterr().err
        assert code in (0, 2) and not any(character in err for character in RAW), (args, err)
    # fix: report / compare errors go through cli.common.usage_error (text.terminal_safe)


def test_right_to_left_overrides_never_reach_the_html_raw(
    real_results: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = result_data(real_results[0])
    data["config"]["name"] = "evil\u202egnp.exe"
    data["config"]["model"] = "tiny-llama"
    data.pop("config_hash", None)
    source = write_json(tmp_path / "rtl.json", data)
    output = tmp_path / "r.html"
    assert main(["report", str(source), "--output", str(output)]) == 0
    page = output.read_text(encoding="utf-8")
    assert "\u202e" not in page and "\u2066" not in page
    assert "evil\\u202egnp.exe" in page  # shown as what it is
    capsys.readouterr()
    # fix: report.html._e and report.figures.plotly_text escape control and bidi characters (text.terminal_safe)
