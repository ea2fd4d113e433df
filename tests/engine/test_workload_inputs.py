"""Varying prompt lengths: config forms, per-request metrics by hand, left-padded plain inputs."""

from __future__ import annotations

import torch

from tokbench.engine.loading import TokenizerCache, build_inputs, resolve_model_source

CPU = torch.device("cpu")


def test_left_padded_rows_hold_the_same_prompts_as_uniform_rows() -> None:
    tokenizer, _ = TokenizerCache().get(resolve_model_source("tiny-llama"))
    inputs = build_inputs(tokenizer, 3, [5, 12, 1], CPU)
    assert tuple(inputs.input_ids.shape) == (3, 12)
    assert inputs.prompt_lengths == (5, 12, 1)
    assert inputs.attention_mask[0].tolist() == [0] * 7 + [1] * 5
    requests = inputs.request_token_ids()
    for row, length in enumerate((5, 12, 1)):
        uniform = build_inputs(tokenizer, 3, length, CPU)
        assert requests[row] == uniform.input_ids[row].tolist()
        assert inputs.input_ids[row, 12 - length :].tolist() == requests[row]
