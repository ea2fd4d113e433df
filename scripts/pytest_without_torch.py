"""Run pytest with torch and the other heavy libraries made unimportable: the unit tier must pass so.

``make test-fast`` runs ``tests/unit`` through this, which proves what the layers promise: schema, analysis,
results and the report data need no torch, transformers, Ray or quantization library. Arguments go to pytest.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

HEAVY = ("torch", "transformers", "triton", "torchao", "bitsandbytes", "optimum", "accelerate", "ray", "tokenizers")


class HeavyImportBlocker(importlib.abc.MetaPathFinder):
    """Answers every import of a heavy library with ModuleNotFoundError, as if it were not installed."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.partition(".")[0] in HEAVY:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked: the unit tier runs without it)")
        return None


def main(argv: list[str]) -> int:
    sys.meta_path.insert(0, HeavyImportBlocker())
    import pytest

    return int(pytest.main(argv))


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
