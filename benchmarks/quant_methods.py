"""tokbench's int4 (tuned) vs torchao int4 / int8 vs optimum-quanto int4 / int8 vs dense bf16, on this machine.

    python benchmarks/quant_methods.py [--budget-s S] [--rounds N] [--skip-layers] [--skip-e2e]

1. Layers: 4096x4096 and 4096x11008 (in x out), bfloat16 activations, M = 1 (decode) and M = 512 (prefill).
   Every method's layer is built from the same weight and timed round-robin with the others (medians of
   interleaved rounds, IQR shown). A method the library cannot run here prints the library's own reason.
2. End to end: small-llama (bf16, prompt 64, 32 new tokens), every method loaded through tokbench's own
   loader (the same code as ``tokbench run``) into one process, then generate calls interleaved round-robin
   over the methods. Prints median TTFT, decode tok/s and E2E, and the output agreement with bf16.

Times taken on a shared host are distorted by other processes: the load average is printed.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import warnings
from collections.abc import Callable

import torch
from torch import nn

from tokbench.config import BenchmarkConfig
from tokbench.engine.generation import time_generate
from tokbench.engine.loading import benchmark_mode, load
from tokbench.errors import UnavailableFeatureError
from tokbench.hardware.warmup import device_warmup
from tokbench.quant import QuantizedLinear, thirdparty
from tokbench.quant.tune import ClockTimer, measure_round_robin, tune_model
from tokbench.schema.quant import QuantizationFingerprint as OutputFingerprint

SHAPES = ((4096, 4096), (4096, 11008))
MS = (1, 512)
E2E_METHODS = (None, "int4", "torchao-int4", "torchao-int8", "torchao-int8-dynamic", "quanto-int4", "quanto-int8")


def _loadavg() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "n/a"


def _iqr(values: list[int]) -> float:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return quartiles[2] - quartiles[0]


def _layer_candidates(linear: nn.Linear, m: int, device: torch.device) -> tuple[dict[str, nn.Module], dict[str, str]]:
    """Every method's version of ``linear`` (tokbench int4 tuned for this M), and why a method is missing."""
    dtype = torch.bfloat16
    built: dict[str, nn.Module] = {"dense bf16": linear}
    missing: dict[str, str] = {}
    layer = QuantizedLinear.from_linear(linear, 128)
    with tempfile.TemporaryDirectory() as cache_dir:
        report = tune_model(nn.Sequential(layer), m, 1, device=device, cache_dir=cache_dir, budget_s_per_shape=1.0)
    built[f"tokbench int4 ({report.entries[0].winner.label})"] = layer
    for method in ("torchao-int4", "torchao-int8", "torchao-int8-dynamic", "quanto-int4", "quanto-int8"):
        try:
            thirdparty.check_available(method, device, dtype, 128)
        except UnavailableFeatureError as error:
            missing[method] = str(error).split(": ", 1)[-1].split(". Fix:")[0]
            continue
        copy = nn.Linear(linear.in_features, linear.out_features, bias=False, dtype=dtype)
        with torch.no_grad():
            copy.weight.copy_(linear.weight)
        if method.startswith("torchao"):
            from torchao.quantization import quantize_

            quantize_(copy, thirdparty.torchao_quant_type(method, 128))
            built[method] = copy
        else:
            from optimum.quanto import freeze, qint4, qint8, quantize

            wrapper = nn.Sequential(copy)
            quantize(wrapper, weights=qint4 if method == "quanto-int4" else qint8)
            freeze(wrapper)
            built[method] = wrapper
    return built, missing


def layers(budget_s: float) -> None:
    device = torch.device("cpu")
    timer = ClockTimer(device)
    torch.manual_seed(0)
    for in_features, out_features in SHAPES:
        linear = nn.Linear(in_features, out_features, bias=False)
        with torch.no_grad():
            linear.weight.normal_(0.0, 0.02)
        linear = linear.to(torch.bfloat16)
        for m in MS:
            print(f"=== layer {in_features} x {out_features}, M = {m} ===")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built, missing = _layer_candidates(linear, m, device)
                x = torch.randn(m, in_features, dtype=torch.bfloat16)
                calls: list[Callable[[], object]] = [lambda mod=mod, x=x: mod(x) for mod in built.values()]
                with torch.no_grad():
                    samples, _ = measure_round_robin(calls, timer, int(budget_s * 1e9), min_rounds=3, max_rounds=200)
            medians = {name: statistics.median(s) for name, s in zip(built, samples, strict=True)}
            spreads = {name: _iqr(s) for name, s in zip(built, samples, strict=True)}
            dense = medians["dense bf16"]
            for name, median in sorted(medians.items(), key=lambda item: item[1]):
                print(
                    f"  {name:<34}{median / 1e6:10.3f} ms  IQR {spreads[name] / 1e6:8.3f} ms  "
                    f"dense/this {dense / median:5.2f}x  ({len(samples[0])} rounds)"
                )
            for name, reason in missing.items():
                print(f"  {name:<34}cannot run here: {reason}")
            print()


def end_to_end(rounds: int) -> None:
    base = {
        "model": "small-llama", "sequence_length": 64, "new_tokens": 32, "device": "cpu",
        "warmup_iterations": 1, "measurement_iterations": 1, "monitor": False,
    }  # fmt: skip
    loaded = {}
    reference: tuple[int, ...] = ()
    print("=== end to end: small-llama, batch 1, prompt 64, 32 new tokens, bf16 activations ===")
    for method in E2E_METHODS:
        fields = dict(base, quantization=method, tune=method == "int4")
        label = method or "dense bf16"
        try:  # the loader checks the method first (package, and a probe layer on this device)
            loaded[label] = load(BenchmarkConfig(**fields))
        except (UnavailableFeatureError, ModuleNotFoundError) as error:
            print(f"  {label:<22} cannot run here: {str(error).split('. Fix:')[0]}")
    results: dict[str, list] = {label: [] for label in loaded}
    for round_index in range(rounds + 1):  # round 0 warms every model up and is not counted
        for label, model in loaded.items():
            with benchmark_mode(model.model):
                trace = time_generate(
                    model.model, model.inputs.input_ids, model.inputs.attention_mask, model.generation_config, 32,
                    tokenizer=model.tokenizer, decode_sample=True,
                )  # fmt: skip
            if round_index:
                results[label].append(trace)
            elif label == "dense bf16":
                reference = trace.sample_token_ids
    for label, traces in results.items():
        ttft = statistics.median((t.token_timestamps_ns[0][0] - t.t0_ns) / 1e6 for t in traces)
        decode = statistics.median(
            31 * 1e9 / (t.token_timestamps_ns[0][-1] - t.token_timestamps_ns[0][0]) for t in traces
        )
        e2e = statistics.median((t.end_ns - t.t0_ns) / 1e6 for t in traces)
        agreement = OutputFingerprint.compare(reference, traces[0].sample_token_ids).agreement if reference else None
        weight_mib = getattr(loaded[label].quantization.method, "quantized_weight_bytes", None)
        weights = f"{weight_mib / 2**20:7.1f} MiB" if weight_mib else "  (bf16)   "
        agrees = f"{agreement:.0%}" if agreement is not None else "-"
        print(
            f"  {label:<22} TTFT {ttft:8.1f} ms  decode {decode:7.1f} tok/s  E2E {e2e:8.1f} ms  weights {weights}  "
            f"greedy tokens agreeing with bf16 {agrees}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--budget-s", type=float, default=4.0, help="timing budget per layer shape and M")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved end-to-end rounds")
    parser.add_argument("--skip-layers", action="store_true")
    parser.add_argument("--skip-e2e", action="store_true")
    args = parser.parse_args(argv)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; load average {_loadavg()}")
    for dist in ("torchao", "optimum-quanto", "bitsandbytes"):
        print(f"  {dist} {thirdparty.library_version(dist)}")
    device_warmup(torch.device("cpu"), 0.5)
    if not args.skip_layers:
        layers(args.budget_s)
    if not args.skip_e2e:
        end_to_end(args.rounds)
    print(f"load average at end: {_loadavg()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
