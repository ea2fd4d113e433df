"""Loading: model sources, the tokenizer cache, exact-shape inputs, settings that really reach the model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tokbench.clock import FakeClock
from tokbench.config import BenchmarkConfig
from tokbench.engine.loading import (
    ModelSource,
    TokenizerCache,
    build_inputs,
    load,
    load_tokenizer,
    resolve_model_source,
)
from tokbench.errors import ModelMismatchError, ModelSourceError

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def tokenizer():  # type: ignore[no-untyped-def]
    return load_tokenizer(ModelSource("preset", "tiny-llama"))


def test_model_sources(tmp_path: Path) -> None:
    assert resolve_model_source("tiny-llama") == ModelSource("preset", "tiny-llama")
    assert resolve_model_source("meta-llama/Llama-3.2-1B") == ModelSource("hub", "meta-llama/Llama-3.2-1B")
    (tmp_path / "config.json").write_text("{}")
    assert resolve_model_source(str(tmp_path)) == ModelSource("local", str(tmp_path.resolve()))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelSourceError, match=r"no config\.json"):
        resolve_model_source(str(empty))
    with pytest.raises(ModelSourceError, match="existing folder"):
        resolve_model_source("./no/such/folder")


@pytest.mark.parametrize(("batch", "length"), [(1, 1), (1, 16), (4, 128), (2, 5000)])
def test_inputs_have_exactly_the_requested_shape(tokenizer, batch: int, length: int) -> None:  # type: ignore[no-untyped-def]
    inputs = build_inputs(tokenizer, batch, length, CPU)
    assert tuple(inputs.input_ids.shape) == (batch, length)
    assert bool(inputs.attention_mask.all())
    assert int(inputs.input_ids[0, 0]) == tokenizer.bos_token_id
    # no padding anywhere: every token is real prompt text
    assert not bool((inputs.input_ids[:, 1:] == tokenizer.pad_token_id).any())


def test_inputs_are_reproducible_and_rows_differ(tokenizer) -> None:  # type: ignore[no-untyped-def]
    first = build_inputs(tokenizer, 3, 64, CPU)
    second = build_inputs(tokenizer, 3, 64, CPU)
    assert torch.equal(first.input_ids, second.input_ids)
    assert not torch.equal(first.input_ids[0], first.input_ids[1])


def test_tokenizer_is_loaded_once_per_model() -> None:
    cache = TokenizerCache()
    source = ModelSource("preset", "tiny-llama")
    first, first_cached = cache.get(source)
    second, second_cached = cache.get(source)
    assert first is second
    assert (first_cached, second_cached) == (False, True)
    assert len(cache) == 1


def test_load_applies_the_config_and_times_each_phase() -> None:
    config = BenchmarkConfig(attn_implementation="eager", dtype="float32", device="cpu", sequence_length=8)
    loaded = load(config, clock=FakeClock(step_ns=1000))
    assert not loaded.model.training
    assert next(loaded.model.parameters()).dtype == torch.float32
    assert loaded.effective_settings.attn_implementation == "eager"
    assert loaded.effective_settings.dtype == "float32"
    assert loaded.generation_config.max_new_tokens == config.new_tokens
    # each phase is one clock interval of the fake clock
    assert (loaded.timings.tokenizer_ns, loaded.timings.weights_ns, loaded.timings.to_device_ns) == (1000, 1000, 1000)


def test_preset_weights_are_seeded() -> None:
    config = BenchmarkConfig(device="cpu", dtype="float32")
    first = next(load(config).model.parameters())
    second = next(load(config).model.parameters())
    other_seed = next(load(config.replace(seed=1)).model.parameters())
    assert torch.equal(first, second)
    assert not torch.equal(first, other_seed)


def test_local_folder_loads_offline_and_prefers_safetensors(tmp_path: Path) -> None:
    # HF_HUB_OFFLINE=1 is set by conftest before huggingface_hub is imported
    original = load(BenchmarkConfig(device="cpu", dtype="float32"))
    original.model.save_pretrained(tmp_path)  # model.safetensors
    original.tokenizer.save_pretrained(tmp_path)
    older = load(BenchmarkConfig(device="cpu", dtype="float32", seed=1))
    torch.save(older.model.state_dict(), tmp_path / "pytorch_model.bin")  # different weights, legacy format
    assert (tmp_path / "pytorch_model.bin").is_file() and (tmp_path / "model.safetensors").is_file()
    loaded = load(BenchmarkConfig(model=str(tmp_path), device="cpu", dtype="float32"))
    assert loaded.source.kind == "local"
    assert torch.equal(next(loaded.model.parameters()), next(original.model.parameters()))
    assert not loaded.model.training


def test_a_provided_model_must_match_its_config() -> None:
    loaded = load(BenchmarkConfig(device="cpu", dtype="float32"))
    with pytest.raises(ModelMismatchError, match="dtype"):
        load(BenchmarkConfig(device="cpu", dtype="bfloat16"), model=loaded.model, tokenizer=loaded.tokenizer)
    with pytest.raises(ModelMismatchError, match="attn_implementation"):
        load(
            BenchmarkConfig(device="cpu", dtype="float32", attn_implementation="eager"),
            model=loaded.model,
            tokenizer=loaded.tokenizer,
        )
    with pytest.raises(ModelSourceError, match="tokenizer"):
        load(BenchmarkConfig(device="cpu", dtype="float32"), model=loaded.model)
