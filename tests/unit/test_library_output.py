"""The library-output collector (engine.quiet) on its own: counts, notes, the cap, where a warning is held. Torch-free:
the collector and the classification need no library; tests/system/test_quiet_start.py runs the real libraries."""

from __future__ import annotations

import os
import threading
from pathlib import Path

from tokbench.engine.quiet import MAX_DISTINCT_MESSAGES, HeldBack, merged, warning_origin
from tokbench.schema.records import LibraryMessage


def test_each_distinct_message_is_kept_once_with_its_count_and_warnings_become_notes() -> None:
    held = HeldBack()
    for _ in range(3):
        held.add("bitsandbytes", "warning", "MatMul8bitLt: inputs  will be cast")  # whitespace folded
    held.add("torch", "output", "USDT: profiler_start")
    held.add("ray", "info", "Started a local Ray instance.")
    assert held.messages() == (
        LibraryMessage("bitsandbytes", "warning", "MatMul8bitLt: inputs will be cast", 3),
        LibraryMessage("torch", "output", "USDT: profiler_start", 1),
        LibraryMessage("ray", "info", "Started a local Ray instance.", 1),
    )
    # only warnings and worse are notes; printed output and info lines are kept, not noted
    assert held.warning_notes() == ("bitsandbytes warning: MatMul8bitLt: inputs will be cast (x3)",)


def test_a_library_printing_a_new_text_every_call_is_counted_not_kept() -> None:
    held = HeldBack()
    for index in range(MAX_DISTINCT_MESSAGES + 25):
        held.add("torch", "warning", f"step {index}")
    messages = held.messages()
    assert len(messages) == MAX_DISTINCT_MESSAGES + 1
    assert messages[-1].count == 25 and "counted but not kept" in messages[-1].text


def test_threads_lose_no_count() -> None:
    held = HeldBack()

    def log() -> None:
        for _ in range(2_000):
            held.add("torch", "warning", "same")

    threads = [threading.Thread(target=log) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert held.messages() == (LibraryMessage("torch", "warning", "same", 8_000),)


def test_merged_counts_a_message_both_saw_once() -> None:
    inner = (LibraryMessage("torch", "warning", "a", 2),)
    outer = (LibraryMessage("torchao", "warning", "b", 1), LibraryMessage("torch", "warning", "a", 3))
    expected = (LibraryMessage("torch", "warning", "a", 3), LibraryMessage("torchao", "warning", "b", 1))
    assert merged(inner, outer) == expected


def test_warnings_are_held_by_where_they_come_from() -> None:
    site = f"{os.sep}x{os.sep}site-packages{os.sep}"
    own = str(Path(__import__("tokbench").__file__).parent / "engine" / "runner.py")
    assert warning_origin(UserWarning, own) is None  # tokbench's own: shown
    assert warning_origin(DeprecationWarning, own) is None
    assert warning_origin(UserWarning, f"{site}transformers{os.sep}generation{os.sep}utils.py") is None  # the model's
    assert warning_origin(FutureWarning, f"{site}transformers{os.sep}modeling_utils.py") == "transformers"
    assert warning_origin(UserWarning, f"{site}torchao{os.sep}quantization{os.sep}x.py") == "torchao"
    assert warning_origin(UserWarning, f"{os.sep}home{os.sep}me{os.sep}bench.py") is None  # the user's code


