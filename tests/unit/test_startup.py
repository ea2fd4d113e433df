"""What a command imports before it does anything: the parser for every command is built at each start, so a
heavy import at a command module's top costs every command (scipy.stats took a read command from 0.4 s to 1.1 s;
benchmarks/cli_startup.py prints the times)."""

from __future__ import annotations

import subprocess
import sys


def test_building_the_command_line_imports_no_statistics_library_nor_torch() -> None:
    code = (
        "import sys\n"
        "from tokbench.cli import build_parser\n"
        "parser = build_parser()\n"
        "for argv in (['history'], ['compare', 'a.json', 'b.json'], ['ab', '--b', 'batch_size=2'], ['regressions']):\n"
        "    parser.parse_args(argv)\n"
        "heavy = sorted(m for m in ('scipy.stats', 'torch', 'transformers') if m in sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
