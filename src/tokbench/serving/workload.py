"""What each request asks: prompts of an exact token length, output lengths, distributions, a dataset file.

Prompts are cut from the presets' fixed text with the served model's tokenizer and checked by re-tokenizing
them the way the server will: a completions prompt with the tokenizer's special tokens (BOS), a chat prompt
through the model's chat template with the generation prompt, so the template's tokens count in the input
length. A length that cannot be hit exactly is an error naming the request, never a silently different prompt.
Without a tokenizer (a server whose tokenizer is not at hand) the prompt is words and its length is what the
server's ``usage.prompt_tokens`` says.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tokbench import presets
from tokbench.errors import ConfigError, InputShapeError
from tokbench.schema.serving import LengthSpec
from tokbench.serving.client import RequestSpec
from tokbench.serving.mock import WORD

MAX_LENGTH = 1_048_576
_OFFSET_TOKENS = 37  # consecutive requests start this far apart in the text, so no two prompts are equal


def parse_length(text: str, what: str) -> LengthSpec:
    """``N`` | ``uniform:MIN:MAX`` | ``normal:MEAN:STD[:MIN:MAX]`` | ``lognormal:MEAN:STD[:MIN:MAX]``."""
    parts = text.split(":")
    fix = f"give {what} as N, uniform:MIN:MAX, normal:MEAN:STD[:MIN:MAX] or lognormal:MEAN:STD[:MIN:MAX]"
    try:
        if len(parts) == 1:
            spec = LengthSpec("fixed", value=int(parts[0]))
        elif parts[0] == "uniform" and len(parts) == 3:
            spec = LengthSpec("uniform", minimum=int(parts[1]), maximum=int(parts[2]))
        elif parts[0] in ("normal", "lognormal") and len(parts) in (3, 5):
            mean, std = float(parts[1]), float(parts[2])
            low, high = (int(parts[3]), int(parts[4])) if len(parts) == 5 else (1, max(1, int(mean + 6 * std)))
            spec = LengthSpec(parts[0], minimum=low, maximum=high, mean=mean, std=std)
        else:
            raise ValueError(text)
    except ValueError:
        raise ConfigError(what, f"cannot read {text!r}", fix) from None
    low = spec.value if spec.kind == "fixed" else spec.minimum
    high = spec.value if spec.kind == "fixed" else spec.maximum
    if low is None or high is None or low < 1 or high > MAX_LENGTH or low > high:
        raise ConfigError(what, f"{text!r} is out of range", f"use lengths from 1 to {MAX_LENGTH:,}, min <= max")
    if spec.kind in ("normal", "lognormal") and (spec.mean is None or spec.mean <= 0 or (spec.std or 0) < 0):
        raise ConfigError(what, f"{text!r} needs a positive mean and a non-negative std", fix)
    return spec


def sample_lengths(spec: LengthSpec, count: int, rng: np.random.Generator) -> list[int]:
    """``count`` lengths drawn from ``spec`` (seeded by the caller's generator), clipped to its bounds."""
    if spec.kind == "fixed":
        return [int(spec.value or 0)] * count
    low, high = int(spec.minimum or 1), int(spec.maximum or 1)
    if spec.kind == "uniform":
        return [int(v) for v in rng.integers(low, high + 1, size=count)]
    mean, std = float(spec.mean or 1.0), float(spec.std or 0.0)
    if spec.kind == "normal":
        values = rng.normal(mean, std, size=count)
    elif spec.kind == "lognormal":  # mean and std of the lengths themselves, not of their logarithm
        sigma2 = math.log1p((std / mean) ** 2)
        values = rng.lognormal(math.log(mean) - sigma2 / 2, math.sqrt(sigma2), size=count)
    else:
        raise ValueError(f"{spec.kind} lengths come from a dataset")
    return [int(v) for v in np.clip(np.rint(values), low, high)]


class PromptBuilder:
    """Prompts of exactly N tokens as the server will count them (special tokens, chat template included)."""

    def __init__(self, tokenizer: Any | None, api: str) -> None:
        self.tokenizer = tokenizer
        self.api = api
        self.stream: list[int] = []
        if tokenizer is not None:
            self.stream = tokenizer(presets.default_prompt(), add_special_tokens=False)["input_ids"]
            if api == "chat" and not getattr(tokenizer, "chat_template", None):
                raise InputShapeError(
                    "the served model's tokenizer has no chat template, so chat prompt lengths cannot be exact: "
                    "use --api completions"
                )

    def served_length(self, prompt: str) -> int:
        """How many tokens the server reads for ``prompt``."""
        if self.api == "chat":
            ids = self.tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True
            )
            ids = ids["input_ids"] if isinstance(ids, dict) or hasattr(ids, "keys") else ids
            return len(ids)
        return len(self.tokenizer(prompt)["input_ids"])

    def build(self, length: int, index: int) -> str:
        if self.tokenizer is None:
            return " ".join([WORD] * length)
        overhead = self.served_length("")
        body = max(0, length - overhead)
        for _ in range(12):  # re-tokenizing decoded text can merge or split a token at the seams: adjust
            start = (index * _OFFSET_TOKENS) % max(1, len(self.stream))
            repeats = (start + body) // max(1, len(self.stream)) + 1
            ids = (self.stream * repeats)[start : start + body]
            text = self.tokenizer.decode(ids, skip_special_tokens=True)
            served = self.served_length(text)
            if served == length:
                return text
            body += length - served
            if body < 0:
                break
        raise InputShapeError(
            f"cannot build a prompt of exactly {length} tokens for request {index} (the chat template or special "
            f"tokens alone take {overhead}): ask for a longer input"
        )


def synthetic_requests(
    builder: PromptBuilder, inputs: LengthSpec, outputs: LengthSpec, count: int, warmup: int, seed: int
) -> list[RequestSpec]:
    rng = np.random.default_rng(seed)
    input_lengths = sample_lengths(inputs, warmup + count, rng)
    output_lengths = sample_lengths(outputs, warmup + count, rng)
    return [
        RequestSpec(i, builder.build(n_in, i), n_in, n_out, warmup=i < warmup)
        for i, (n_in, n_out) in enumerate(zip(input_lengths, output_lengths, strict=True))
    ]


# --- dataset files -----------------------------------------------------------------------------------------


def load_dataset(path: str | Path) -> tuple[list[tuple[str, str | None, int | None]], str]:
    """(prompt, reference answer, output tokens) rows of a ShareGPT-style JSON file or a JSONL file, and the
    file's ``NAME sha256:HEX`` label.

    ShareGPT: a list of ``{"conversations": [{"from": "human", "value": ...}, {"from": "gpt", "value": ...}]}``;
    the first human turn is the prompt and the reply after it sets the output length. JSONL: one
    ``{"prompt": ..., "output_tokens": N}`` (or ``"completion": ...``) per line.
    """
    source = Path(path)
    try:
        raw = source.read_bytes()
    except OSError as error:
        raise ConfigError("--dataset", f"cannot read {source}: {error.strerror or error}", "check the path") from error
    label = f"{source.name} sha256:{hashlib.sha256(raw).hexdigest()[:16]}"
    text = raw.decode("utf-8", "replace")
    rows: list[tuple[str, str | None, int | None]] = []
    try:
        data = json.loads(text)
        entries = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        try:
            entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        except json.JSONDecodeError as error:
            problem = f"{source.name} is neither JSON nor JSONL: {error}"
            raise ConfigError("--dataset", problem, "fix the file") from None
    for entry in entries:
        row = _dataset_row(entry)
        if row is not None:
            rows.append(row)
    if not rows:
        raise ConfigError("--dataset", f"{source.name} has no usable prompt", "use ShareGPT conversations or JSONL")
    return rows, label


def _dataset_row(entry: Any) -> tuple[str, str | None, int | None] | None:
    if not isinstance(entry, dict):
        return None
    turns = entry.get("conversations")
    if isinstance(turns, list):
        for position, turn in enumerate(turns):
            if isinstance(turn, dict) and turn.get("from") in ("human", "user") and isinstance(turn.get("value"), str):
                reply = turns[position + 1] if position + 1 < len(turns) else None
                answer = reply.get("value") if isinstance(reply, dict) and isinstance(reply.get("value"), str) else None
                return (turn["value"], answer, None) if turn["value"].strip() else None
        return None
    prompt = entry.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return None
    tokens = entry.get("output_tokens")
    answer = entry.get("completion")
    return prompt, answer if isinstance(answer, str) else None, tokens if isinstance(tokens, int) else None


def dataset_requests(
    rows: Sequence[tuple[str, str | None, int | None]], builder: PromptBuilder, outputs: LengthSpec | None,
    count: int, warmup: int, seed: int, max_output: int = 4096,
) -> list[RequestSpec]:  # fmt: skip
    """Requests drawn (seeded, with replacement past the file's size) from dataset rows; output lengths from
    ``outputs`` when given, else each row's own (its reference answer's tokens), clipped to [2, max_output]."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(rows)).tolist()
    while len(order) < warmup + count:
        order += rng.permutation(len(rows)).tolist()
    fixed = sample_lengths(outputs, warmup + count, rng) if outputs is not None else None
    specs = []
    for i, row_index in enumerate(order[: warmup + count]):
        prompt, answer, tokens = rows[row_index]
        if fixed is not None:
            n_out = fixed[i]
        elif tokens is not None:
            n_out = tokens
        elif answer is not None and builder.tokenizer is not None:
            n_out = len(builder.tokenizer(answer, add_special_tokens=False)["input_ids"])
        else:
            n_out = len(answer.split()) if answer else 128
        n_out = min(max_output, max(2, n_out))
        n_in = builder.served_length(prompt) if builder.tokenizer is not None else len(prompt.split())
        specs.append(RequestSpec(i, prompt, n_in, n_out, warmup=i < warmup))
    return specs
