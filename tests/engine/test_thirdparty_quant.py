"""Third-party quantization through transformers' quantization_config, for real on this CPU build.

Each library runs where it runs (torchao int8, optimum-quanto, bitsandbytes on CPU) and is skipped with its
own reason where it cannot (torchao int4 on CPU). Tests of a library that is not installed are skipped:
``make test`` installs them (the ``quant`` extra).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import tokbench
from tokbench.config import QUANTIZATIONS, BenchmarkConfig
from tokbench.engine.efficiency import weight_facts
from tokbench.errors import ConfigError
from tokbench.quant import thirdparty
from tokbench.schema.quant import QuantizationFingerprint as OutputFingerprint
from tokbench.schema.results import load_result

FIELDS: dict[str, object] = {
    "model": "tiny-llama",
    "sequence_length": 8,
    "new_tokens": 6,
    "warmup_iterations": 1,
    "measurement_iterations": 2,
    "device": "cpu",
    "monitor": False,
}


def _needs(module: str) -> None:
    if thirdparty._missing_module(module):
        pytest.skip(f"{module} is not installed (pip install -c .venv/torch-constraint.txt 'tokbench[quant]')")


def test_every_method_is_a_config_choice_and_only_int4_takes_kernel_settings() -> None:
    assert set(thirdparty.METHODS) | {"int4"} == set(QUANTIZATIONS)
    assert BenchmarkConfig(quantization="quanto-int8").name.endswith("-quanto-int8")
    assert BenchmarkConfig(quantization="torchao-int4", group_size=64).name.endswith("-torchao-int4-g64")
    with pytest.raises(ConfigError, match="group_size: does not apply to quanto-int4"):
        BenchmarkConfig(quantization="quanto-int4", group_size=64)
    with pytest.raises(ConfigError, match="quant_kernel: does not apply to bnb-nf4"):
        BenchmarkConfig(quantization="bnb-nf4", quant_kernel="splitk")
    with pytest.raises(ConfigError, match="tune: does not apply to torchao-int8"):
        BenchmarkConfig(quantization="torchao-int8", tune=True)


def test_fingerprint_counts_agreeing_positions_and_the_first_divergence() -> None:
    same = OutputFingerprint.compare([5, 6, 7, 8], [5, 6, 7, 8])
    assert (same.agreement, same.first_divergence, same.compared_tokens) == (1.0, None, 4)
    moved = OutputFingerprint.compare([5, 6, 7, 8], [5, 9, 7, 1])
    assert (moved.agreement, moved.first_divergence) == (0.5, 1)
    assert OutputFingerprint.from_dict(moved.to_dict()) == moved
    with pytest.raises(ValueError, match="at least one"):
        OutputFingerprint.compare([], [1])


def test_storage_bytes_of_bitsandbytes_int8_weights_count_the_int8_data_and_the_row_scales() -> None:
    _needs("bitsandbytes")
    import bitsandbytes as bnb

    layer = bnb.nn.Linear8bitLt(256, 128, bias=False, has_fp16_weights=False)
    layer.weight = bnb.nn.Int8Params(torch.randn(128, 256), requires_grad=False, has_fp16_weights=False)
    layer = layer.to("cpu")
    # hand count: 128 × 256 int8 values (1 byte) + one float32 scale per output row (128 × 4 bytes)
    assert thirdparty.tensor_storage_bytes(layer.weight) == 128 * 256 + 128 * 4


def test_storage_bytes_of_a_torchao_int8_weight_are_its_inner_tensors() -> None:
    _needs("torchao")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    layer = torch.nn.Linear(256, 128, bias=False, dtype=torch.bfloat16)
    quantize_(layer, Int8WeightOnlyConfig())
    # hand count for torchao 0.18's Int8Tensor (per-row): qdata 128 × 256 int8, scale 128 float32, zero point
    # 128 int8 — against 128 × 256 × 2 bytes in bfloat16
    assert thirdparty.tensor_storage_bytes(layer.weight) == 128 * 256 + 128 * 4 + 128


@pytest.mark.parametrize(
    ("method", "module"),
    [
        ("torchao-int8", "torchao"),
        ("torchao-int8-dynamic", "torchao"),
        ("quanto-int8", "optimum.quanto"),
        ("quanto-int4", "optimum.quanto"),
        ("bnb-int8", "bitsandbytes"),
    ],
)
def test_method_runs_end_to_end_and_records_library_bytes_and_fingerprint(method: str, module: str) -> None:
    _needs(module)
    result = tokbench.run(BenchmarkConfig(**FIELDS, quantization=method), progress=False)
    assert result.status == "ok", result.reason
    record = result.quantization.method
    assert record.method == method and not record.prequantized
    assert record.library == thirdparty.METHODS[method].distribution
    assert record.library_version == thirdparty.library_version(record.library) != "not installed"
    assert record.settings  # the library config as transformers serialized it
    assert record.layer_types  # the library's own layer / tensor classes replaced torch's
    assert result.phases.load.quantize_ns is not None and result.phases.load.quantize_ns > 0
    # tiny-llama in bfloat16 weighs 7,096,576 × 2 bytes; the quantized linear layers must weigh less.
    assert record.quantized_weight_bytes is not None and record.quantized_weight_bytes < 7_096_576 * 2
    fingerprint = result.quantization.fingerprint
    assert fingerprint.compared_tokens == 6
    assert fingerprint.quantized_token_ids == result.phases.cold_call.sample_token_ids
    assert 0.0 <= fingerprint.agreement <= 1.0


def test_bnb_nf4_runs_on_a_model_whose_layer_widths_its_cpu_kernel_takes() -> None:
    _needs("bitsandbytes")
    result = tokbench.run(BenchmarkConfig(**{**FIELDS, "model": "tiny-qwen3"}, quantization="bnb-nf4"), progress=False)
    assert result.status == "ok", result.reason
    record = result.quantization.method.to_dict()
    assert record["settings"]["bnb_4bit_quant_type"] == "nf4"
    assert "Linear4bit" in record["layer_types"]


def test_bnb_nf4_on_a_model_whose_layer_widths_its_cpu_kernel_refuses_is_skipped_with_the_reason() -> None:
    _needs("bitsandbytes")
    result = tokbench.run(BenchmarkConfig(**FIELDS, quantization="bnb-nf4"), progress=False)  # tiny-llama: 688 wide
    if torch.cuda.is_available():
        pytest.skip("on CUDA bitsandbytes' kernels take every width")
    assert result.status == "skipped", result.reason  # the probe of the model's own shapes, not a failed call
    assert "bnb-nf4 cannot run this model on cpu with bitsandbytes" in result.reason
    assert "x688 linear layers fail" in result.reason and "AssertionError" in result.reason
    assert not result.iterations


def test_torchao_int4_is_skipped_on_cpu_with_torchaos_own_reason(tmp_path: Path) -> None:
    _needs("torchao")
    if torch.cuda.is_available():
        pytest.skip("on a CUDA machine torchao int4 runs")
    output = tmp_path / "r.json"
    command = [sys.executable, "-m", "tokbench", "run", "--model", "tiny-llama", "--quantization", "torchao-int4"]
    command += ["--device", "cpu", "--output", str(output), "--no-progress"]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 3, completed.stderr[-2000:]
    result = load_result(output)
    assert result.status == "skipped"
    assert "torchao-int4 cannot run on cpu with torchao" in result.reason
    assert "CUDA" in result.reason  # torchao's own words: its int4 layouts need CUDA
    assert result.reason.splitlines()[0] in completed.stderr


def test_a_missing_library_is_skipped_with_the_extra_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = thirdparty._missing_module
    monkeypatch.setattr(thirdparty, "_missing_module", lambda name: name == "optimum.quanto" or real(name))
    result = tokbench.run(BenchmarkConfig(**FIELDS, quantization="quanto-int8"), progress=False)
    assert result.status == "skipped"
    assert "needs the optimum.quanto package, which is not installed" in result.reason
    assert "tokbench[quanto]" in result.reason


def test_quantized_weights_feed_the_efficiency_figures() -> None:
    _needs("torchao")
    from tokbench.engine.loading import load

    loaded = load(BenchmarkConfig(**FIELDS, quantization="torchao-int8"))
    facts = weight_facts(loaded.model)
    assert facts.weight_bytes == loaded.quantization.method.quantized_weight_bytes
    plain = load(BenchmarkConfig(**FIELDS))
    assert facts.weight_bytes < weight_facts(plain.model).weight_bytes
    assert facts.linear_parameters == weight_facts(plain.model).linear_parameters  # logical shapes unchanged


def test_a_prequantized_folder_is_loaded_as_it_is_and_recorded(tmp_path: Path) -> None:
    _needs("torchao")
    from tokbench.engine.loading import load

    loaded = load(BenchmarkConfig(**FIELDS, quantization="torchao-int8"))
    folder = tmp_path / "tiny-llama-torchao-int8"
    loaded.model.save_pretrained(folder, safe_serialization=False)
    loaded.tokenizer.save_pretrained(folder)
    assert thirdparty.folder_quantization_config(folder) is not None
    result = tokbench.run(BenchmarkConfig(**{**FIELDS, "model": str(folder)}), progress=False)
    assert result.status == "ok", result.reason
    record = result.quantization.method
    assert record.prequantized and record.method == "prequantized:torchao"
    assert record.library == "torchao" and record.library_version != "not installed"
    again = tokbench.run(BenchmarkConfig(**{**FIELDS, "model": str(folder)}, quantization="quanto-int8"))
    assert again.status == "skipped" and "already quantized (torchao)" in again.reason


def test_a_prequantized_folder_whose_library_is_missing_is_skipped_with_transformers_reason(tmp_path: Path) -> None:
    from tokbench.engine.loading import load

    loaded = load(BenchmarkConfig(**FIELDS))
    folder = tmp_path / "tiny-llama-gptq"
    loaded.model.save_pretrained(folder)
    loaded.tokenizer.save_pretrained(folder)
    config = json.loads((folder / "config.json").read_text())
    config["quantization_config"] = {"quant_method": "gptq", "bits": 4, "group_size": 128, "desc_act": False}
    (folder / "config.json").write_text(json.dumps(config))
    if not thirdparty._missing_module("gptqmodel"):
        pytest.skip("gptqmodel is installed here")
    result = tokbench.run(BenchmarkConfig(**{**FIELDS, "model": str(folder)}), progress=False)
    assert result.status == "skipped"
    assert "already quantized (gptq); transformers cannot load it here" in result.reason
