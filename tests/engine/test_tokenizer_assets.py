"""Checks on the shipped preset tokenizer and benchmark prompt (fast, offline, CPU only)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
PRESETS = REPO_ROOT / "src" / "tokbench" / "presets"
TOKENIZER_DIR = PRESETS / "tokenizer"
PROMPT_FILE = PRESETS / "prompt.txt"
TRAIN_SCRIPT = REPO_ROOT / "scripts" / "train_tokenizer.py"

BOS, EOS, PAD = "<|begin_of_text|>", "<|end_of_text|>", "<|pad|>"


@pytest.fixture(scope="module")
def tokenizer() -> Iterator[Any]:
    # Module scope: loading once keeps the file fast; MonkeyPatch.context because the function-scoped
    # monkeypatch fixture cannot be used here. Offline mode proves no Hub access is needed.
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_HUB_OFFLINE", "1")
        mp.setenv("TRANSFORMERS_OFFLINE", "1")
        from transformers import AutoTokenizer

        yield AutoTokenizer.from_pretrained(str(TOKENIZER_DIR), local_files_only=True)


@pytest.fixture(scope="module")
def prompt() -> str:
    return PROMPT_FILE.read_text(encoding="utf-8")


def run_training_check(*extra_args: str) -> subprocess.CompletedProcess[str]:
    """The training script's ``--check`` as a real subprocess, the way CI or a person runs it."""
    return subprocess.run(
        [sys.executable, str(TRAIN_SCRIPT), "--check", *extra_args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )


def test_loads_fast_tokenizer_offline(tokenizer: Any) -> None:
    assert tokenizer.is_fast
    # Large enough that benchmark prompts of any realistic length are not truncated or warned about.
    assert tokenizer.model_max_length >= 131072


def test_vocab_size_in_range(tokenizer: Any) -> None:
    assert 2000 <= len(tokenizer) <= 8192


def test_special_token_ids(tokenizer: Any) -> None:
    assert (tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token) == (BOS, EOS, PAD)
    assert (tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id) == (0, 1, 2)
    # Special tokens must survive as single ids when they appear in text.
    assert tokenizer.convert_tokens_to_ids([BOS, EOS, PAD]) == [0, 1, 2]


def test_bos_is_prepended(tokenizer: Any) -> None:
    ids = tokenizer("Hello there.")["input_ids"]
    assert ids[0] == tokenizer.bos_token_id
    assert ids.count(tokenizer.bos_token_id) == 1
    assert tokenizer.eos_token_id not in ids


def test_prompt_is_plain_ascii_prose(prompt: str) -> None:
    assert prompt.isascii()
    assert 1200 <= len(prompt.split()) <= 1600


def test_prompt_round_trips_exactly(tokenizer: Any, prompt: str) -> None:
    ids = tokenizer(prompt)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == prompt


@pytest.mark.parametrize(
    "text",
    [
        "  leading spaces",
        "tabs\tand\nnewlines\n\n",
        "punctuation: (a), b; c... 3.14 != 22/7?",
        "caf\u00e9 \U0001f600",
    ],
)
def test_odd_text_round_trips(tokenizer: Any, text: str) -> None:
    # Byte-level BPE must reproduce any input, including characters never seen in training.
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids, skip_special_tokens=True) == text


def test_prompt_is_long_enough(tokenizer: Any, prompt: str) -> None:
    # Benchmarks repeat/truncate the prompt; it should cover typical lengths in one pass.
    assert len(tokenizer(prompt)["input_ids"]) >= 1000


def test_training_script_check_passes() -> None:
    # Guards against hand-edited assets or a corpus change without regeneration.
    proc = run_training_check()
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_training_script_check_detects_drift(tmp_path: Path) -> None:
    # The check must actually compare bytes: a copy with one altered file has to fail.
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (tmp_path / name).write_bytes((TOKENIZER_DIR / name).read_bytes())
    (tmp_path / "tokenizer_config.json").write_text("{}\n", encoding="utf-8")
    proc = run_training_check("--out", str(tmp_path))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "tokenizer_config.json" in proc.stderr
