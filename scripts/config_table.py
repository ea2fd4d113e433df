"""Print, check or write the README's table of config fields, generated from their declarations.

    python scripts/config_table.py            # print the table
    python scripts/config_table.py --check    # exit 1 if README.md's table differs from the generated one
    python scripts/config_table.py --write    # replace README.md's table with the generated one

The table sits between the README's ``<!-- config-table:start -->`` and ``<!-- config-table:end -->`` lines;
each field's row comes from its ``FieldSpec`` in ``src/tokbench/config.py`` (declared once).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tokbench.config import BenchmarkConfig
from tokbench.fields import config_table_markdown

README = Path(__file__).resolve().parent.parent / "README.md"
START = "<!-- config-table:start -->"
END = "<!-- config-table:end -->"


def readme_with_table(text: str, table: str) -> str:
    """``text`` with the part between the markers replaced by ``table``; ValueError without the markers."""
    start, end = text.find(START), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"README.md has no {START} ... {END} section")
    return text[: start + len(START)] + "\n" + table + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--check", action="store_true", help="fail if README.md's table is not the generated one")
    mode.add_argument("--write", action="store_true", help="write the generated table into README.md")
    args = parser.parse_args(argv)
    table = config_table_markdown(BenchmarkConfig)
    if not (args.check or args.write):
        sys.stdout.write(table)
        return 0
    current = README.read_text(encoding="utf-8")
    updated = readme_with_table(current, table)
    if args.check:
        if updated != current:
            print(
                "README.md's config table is out of date: run python scripts/config_table.py --write", file=sys.stderr
            )
            return 1
        return 0
    README.write_text(updated, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
