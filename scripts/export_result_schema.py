"""Regenerate docs/result.schema.json from the record dataclasses (run after adding a field to a record).

    .venv/bin/python scripts/export_result_schema.py          # rewrite the file
    .venv/bin/python scripts/export_result_schema.py --check  # exit 1 if the file is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tokbench.fileio import atomic_write_text
from tokbench.schema.json_schema import result_json_schema_text

TARGET = Path(__file__).resolve().parent.parent / "docs" / "result.schema.json"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args()
    text = result_json_schema_text()
    current = TARGET.read_text(encoding="utf-8") if TARGET.is_file() else ""
    if args.check:
        if current != text:
            print(f"{TARGET} is out of date: run python scripts/export_result_schema.py", file=sys.stderr)
            return 1
        return 0
    if current != text:
        atomic_write_text(TARGET, text)
        print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
