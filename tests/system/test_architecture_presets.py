"""The architecture presets (Qwen3, Gemma3 sliding window, Qwen3-MoE, DeepSeek-V3 MLA) end to end, and saved folders.

Every preset runs the plain path, the static cache, continuous batching and tokbench's int4: each ends ok
or skipped with a reason, never failed. A folder saved with save_pretrained (also with a custom chat
template, or without a pad token) runs through ``tokbench run --model PATH`` like the preset it came from.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import tokbench
from tokbench import presets
from tokbench.config import BenchmarkConfig
from tokbench.schema.results import load_result

ARCHITECTURES = {
    "tiny-qwen3": "Qwen3ForCausalLM",
    "tiny-gemma3": "Gemma3ForCausalLM",
    "tiny-moe": "Qwen3MoeForCausalLM",
    "tiny-mla": "DeepseekV3ForCausalLM",
}
FAST: dict[str, object] = {
    "sequence_length": 8,
    "new_tokens": 4,
    "warmup_iterations": 0,
    "measurement_iterations": 1,
    "device": "cpu",
    "monitor": False,
}
MODES: dict[str, dict[str, object]] = {
    "plain": {},
    "static": {"static_cache": True},
    "continuous": {"continuous_batching": True, "batch_size": 2, "dtype": "float32"},
    "int4": {"quantization": "int4"},
}


def test_every_preset_is_listed_and_small() -> None:
    for name in ARCHITECTURES:
        assert presets.is_preset(name)
        config = presets.preset_config_dict(name)
        assert config["vocab_size"] == 8192  # the shipped tokenizer's vocabulary
        assert config["num_hidden_layers"] <= 4 and config["hidden_size"] <= 256


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("preset", list(ARCHITECTURES))
def test_preset_runs_or_is_skipped_with_a_reason(preset: str, mode: str) -> None:
    config = BenchmarkConfig(model=preset, **{**FAST, **MODES[mode]})
    result = tokbench.run(config, progress=False, device_warmup_s=0.01)
    assert result.status in ("ok", "skipped"), f"{preset} {mode}: {result.reason}"
    if result.status == "skipped":
        assert result.reason
        return
    assert result.effective_settings.parameters > 0
    assert all(n == FAST["new_tokens"] for trace in result.iterations for n in trace.generated_tokens)
    if mode == "int4":
        assert result.quantization.report.layers_quantized > 0
        assert result.quantization.fingerprint is not None


def test_gemma3_preset_has_sliding_and_full_layers_and_static_cache_runs() -> None:
    config = presets.preset_config_dict("tiny-gemma3")
    assert config["layer_types"].count("sliding_attention") == 3 and config["sliding_window"] == 32
    # a prompt longer than the window: the sliding layers must really slide
    result = tokbench.run(
        BenchmarkConfig(model="tiny-gemma3", **{**FAST, "sequence_length": 40, "static_cache": True}), progress=False
    )
    assert result.status == "ok", result.reason


def _saved_preset(preset: str, folder: Path) -> int:
    """Save the preset's seeded model and the shipped tokenizer; returns its parameter count."""
    from tokbench.engine.loading import load

    loaded = load(BenchmarkConfig(model=preset, **FAST))
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    return sum(p.numel() for p in loaded.model.parameters())


def _run_cli(model: Path, output: Path, *extra: str) -> tuple[subprocess.CompletedProcess[str], dict]:
    command = [sys.executable, "-m", "tokbench", "run", "--model", str(model), "--output", str(output)]
    command += ["--new-tokens", "4", "--warmup-iterations", "0", "--measurement-iterations", "1"]
    command += ["--device", "cpu", "--no-progress", "--no-monitor", *extra]
    if "--sequence-length" not in extra:
        command += ["--sequence-length", "8"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    return completed, json.loads(output.read_text()) if output.exists() else {}


@pytest.mark.parametrize("preset", ["tiny-moe", "tiny-mla"])
def test_a_saved_preset_folder_runs_through_the_cli_like_the_preset(preset: str, tmp_path: Path) -> None:
    folder = tmp_path / preset
    parameters = _saved_preset(preset, folder)
    completed, data = _run_cli(folder, tmp_path / "r.json")
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert data["model_source"]["kind"] == "local"
    assert data["effective_settings"]["parameters"] == parameters
    assert str(folder.name) in completed.stdout  # the header names the folder


def test_a_folder_with_a_custom_chat_template_and_no_pad_token_runs(tmp_path: Path) -> None:
    folder = tmp_path / "chatty"
    _saved_preset("tiny-qwen3", folder)
    settings_path = folder / "tokenizer_config.json"
    settings = json.loads(settings_path.read_text())
    settings["chat_template"] = "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    settings.pop("pad_token", None)
    settings_path.write_text(json.dumps(settings))
    special = folder / "special_tokens_map.json"
    if special.exists():
        tokens = json.loads(special.read_text())
        tokens.pop("pad_token", None)
        special.write_text(json.dumps(tokens))
    config = json.loads((folder / "config.json").read_text())
    config.pop("pad_token_id", None)
    (folder / "config.json").write_text(json.dumps(config))

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.pad_token is None and tokenizer.chat_template
    # batch 2 with different prompt lengths: padding is needed, and the EOS id serves as pad
    completed, _ = _run_cli(folder, tmp_path / "r.json", "--batch-size", "2", "--sequence-length", "5,8")
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = load_result(tmp_path / "r.json")
    assert result.status == "ok"
    assert result.effective_settings.generation_config["pad_token_id"] == tokenizer.eos_token_id
