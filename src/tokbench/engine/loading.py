"""Loading stage: model source, tokenizer (cached per model), exact-shape inputs, and the model.

Every setting in the config reaches the model as asked, or loading fails with a reason:
nothing is silently swapped for something that happens to work.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from tokbench import presets
from tokbench.clock import Clock, perf_counter_ns
from tokbench.config import BenchmarkConfig
from tokbench.engine import compat
from tokbench.engine.gradmode import run_grad_mode
from tokbench.errors import InputShapeError, ModelMismatchError, ModelSourceError, UnavailableFeatureError
from tokbench.hardware.devices import resolve_device, synchronize
from tokbench.schema.quant import (
    QuantizationFingerprint,
    QuantizationMethodRecord,
    QuantizationRecord,
    QuantizationSettings,
)
from tokbench.schema.records import EffectiveSettings, LoadTimings, ModelSource

# How far apart (in tokens) consecutive batch rows start in the repeated prompt, so rows differ.
_ROW_OFFSET_TOKENS = 37


def resolve_model_source(model: str) -> ModelSource:
    if presets.is_preset(model):
        return ModelSource("preset", model)
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelSourceError(
                f"{model!r} is a folder but has no config.json; point --model at a saved transformers model"
            )
        return ModelSource("local", str(path.resolve()))
    if model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelSourceError(
            f"{model!r} is neither a preset ({', '.join(presets.PRESET_NAMES)}), an existing folder "
            "with a config.json, nor a Hub id of the form owner/name"
        )
    return ModelSource("hub", model)


class TokenizerCache:
    """Loads each model's tokenizer once and hands the same object back for every later config."""

    def __init__(self) -> None:
        self._tokenizers: dict[tuple[str, bool], Any] = {}

    def get(self, source: ModelSource, trust_remote_code: bool = False) -> tuple[Any, bool]:
        """The tokenizer for ``source`` and whether it came from the cache."""
        key = (source.identifier, trust_remote_code)
        if key in self._tokenizers:
            return self._tokenizers[key], True
        tokenizer = load_tokenizer(source, trust_remote_code)
        self._tokenizers[key] = tokenizer
        return tokenizer, False

    def __len__(self) -> int:
        return len(self._tokenizers)


def load_tokenizer(source: ModelSource, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    location = str(presets.tokenizer_dir()) if source.kind == "preset" else source.identifier
    try:
        tokenizer = AutoTokenizer.from_pretrained(location, trust_remote_code=trust_remote_code)
    except ModuleNotFoundError:
        raise  # an optional package is missing: the runner records the config as skipped, naming it
    except Exception as error:
        raise load_error("tokenizer", source, error, _TOKENIZER_FILES) from error
    return tokenizer


_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json", "merges.txt")
_WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.safetensors.index.json", "config.json")


def load_error(what: str, source: ModelSource, error: BaseException, names: tuple[str, ...]) -> ModelSourceError:
    """A loading failure as one message that says which files were read and what to do about it.

    transformers' own errors for a damaged file ("Error while deserializing header", a JSON decode error)
    name neither the file nor what it is; a model with its own code needs a decision only the user can make.
    """
    message = " ".join(str(error).split()) or type(error).__name__
    if "trust_remote_code" in message:
        return ModelSourceError(
            f"{source.identifier!r} ships its own modelling code; tokbench runs it only with --trust-remote-code, "
            "which executes arbitrary Python from that repository on this machine: pass it only for a source you "
            f"trust (transformers: {message[:300]})"
        )
    files = ""
    if source.kind == "local":
        folder = Path(source.identifier)
        found = sorted({p.name for name in names for p in folder.glob(name)}) if folder.is_dir() else []
        files = f" from {folder} ({', '.join(found) or 'no such files there'})"
    hint = "re-download or re-save the model" if source.kind != "hub" else "check the id, your network and cache"
    return ModelSourceError(
        f"cannot load the {what} of {source.identifier!r}{files}: {type(error).__name__}: {message[:500]}; "
        f"a damaged or incomplete file gives this: {hint}"
    )


def check_context_length(model_config: Any, prompt_lengths: tuple[int, ...], new_tokens: int) -> None:
    """Refuse a workload longer than the model's context before any call runs (it would run for ages or
    produce positions the model was never built for, stored as ok)."""
    limit = getattr(model_config, "max_position_embeddings", None)
    needed = max(prompt_lengths) + new_tokens
    if isinstance(limit, int) and limit > 0 and needed > limit:
        raise InputShapeError(
            f"a prompt of {max(prompt_lengths)} tokens + {new_tokens} new tokens needs {needed} positions, beyond "
            f"the model's context of {limit} (max_position_embeddings): use fewer --new-tokens or a shorter prompt"
        )


def pad_token_id_for(tokenizer: Any) -> int:
    """The id generate pads with: the tokenizer's pad token, else EOS, else UNK.

    Read, never written: a tokenizer passed in by a caller is left exactly as it was.
    """
    for token_id in (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id):
        if token_id is not None:
            return int(token_id)
    raise ModelSourceError("the tokenizer has no pad, eos or unk token to pad batches with; give it a pad token")


@dataclass(frozen=True)
class BenchmarkInputs:
    """The exact tensors every generation of one config starts from.

    Rows shorter than the longest are left-padded (``attention_mask`` 0 on the padding), so each row's
    real prompt ends where generation starts; ``prompt_lengths`` holds each row's real length.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.input_ids.shape[0])

    @property
    def sequence_length(self) -> int:
        """The padded width: the longest prompt."""
        return int(self.input_ids.shape[1])

    @property
    def prompt_lengths(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.attention_mask.sum(dim=1).tolist())

    def request_token_ids(self) -> list[list[int]]:
        """Each row's real prompt tokens, without padding (what a continuous-batching request gets)."""
        rows = self.input_ids.tolist()
        return [row[len(row) - length :] for row, length in zip(rows, self.prompt_lengths, strict=True)]


def build_inputs(
    tokenizer: Any,
    batch_size: int,
    sequence_length: int | Sequence[int],
    device: torch.device,
    prompt: str | None = None,
    pad_token_id: int | None = None,
) -> BenchmarkInputs:
    """Exactly ``batch_size`` rows of exactly ``sequence_length`` real prompt tokens.

    ``sequence_length`` is one length for every row, or one per row; shorter rows are left-padded with
    ``pad_token_id`` (default: the tokenizer's, see ``pad_token_id_for``) to the longest.
    The prompt is tokenized once and repeated until long enough (the seeds' system only truncated,
    so asking for more tokens than the prompt had silently gave a shorter input). Rows start at
    different offsets of the repeated text so they are not identical.
    """
    lengths = [sequence_length] * batch_size if isinstance(sequence_length, int) else list(sequence_length)
    if len(lengths) != batch_size:
        raise InputShapeError(f"{len(lengths)} prompt lengths for a batch of {batch_size}")
    text = prompt if prompt is not None else presets.default_prompt()
    prompt_ids: list[int] = tokenizer(text, add_special_tokens=False)["input_ids"]
    if not prompt_ids:
        raise ModelSourceError("the prompt tokenized to zero tokens; use a non-empty prompt")
    width = max(lengths)
    bos: list[int] = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    needed = width + _ROW_OFFSET_TOKENS * (batch_size - 1)
    repeats = needed // len(prompt_ids) + 1
    stream = (prompt_ids * repeats)[:needed]
    rows: list[list[int]] = []
    for row, length in enumerate(lengths):
        prefix = bos[:length]  # length 1 with a BOS token: the BOS alone is the prompt
        body_length = length - len(prefix)
        rows.append(prefix + stream[row * _ROW_OFFSET_TOKENS : row * _ROW_OFFSET_TOKENS + body_length])
    pad = pad_token_id if pad_token_id is not None else (pad_token_id_for(tokenizer) if width != min(lengths) else 0)
    input_ids = torch.tensor([[pad] * (width - len(row)) + row for row in rows], dtype=torch.long)
    attention_mask = torch.tensor([[0] * (width - len(row)) + [1] * len(row) for row in rows], dtype=torch.long)
    inputs = BenchmarkInputs(input_ids.to(device), attention_mask.to(device))
    if tuple(input_ids.shape) != (batch_size, width) or list(inputs.prompt_lengths) != lengths:
        raise InputShapeError(
            f"built inputs of shape {tuple(input_ids.shape)} with prompt lengths {inputs.prompt_lengths}, "
            f"wanted {(batch_size, width)} with {tuple(lengths)}"
        )
    return inputs


@dataclass
class LoadedModel:
    """A model ready to generate, with the tokenizer, inputs and generation settings of one config.

    Not frozen and not serialized: it holds live tensors. What it learned goes into the result
    through ``timings`` and ``effective_settings``.
    """

    model: Any
    tokenizer: Any
    inputs: BenchmarkInputs
    generation_config: Any
    device: torch.device
    timings: LoadTimings
    source: ModelSource
    effective_settings: EffectiveSettings = field(default_factory=EffectiveSettings)
    quantization: QuantizationRecord = field(default_factory=QuantizationRecord)  # empty if unquantized
    # Row 0's greedy tokens from the unquantized weights on the same inputs; empty if not quantized here.
    reference_token_ids: tuple[int, ...] = ()


_TORCH_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def torch_dtype(name: str) -> torch.dtype:
    return _TORCH_DTYPES[name]


def _preset_model_config(source: ModelSource) -> Any:
    """The preset's transformers config, with its model code imported.

    Called before the weights timer starts: importing Python modules is not loading weights.
    """
    from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig

    model_config = AutoConfig.for_model(**presets.preset_config_dict(source.identifier))
    _ = MODEL_FOR_CAUSAL_LM_MAPPING[type(model_config)]  # imports modeling_<arch>
    return model_config


def _load_weights(config: BenchmarkConfig, source: ModelSource, model_config: Any = None) -> Any:
    from transformers import AutoModelForCausalLM

    dtype = torch_dtype(config.dtype)
    if source.kind == "preset":
        # Seeded so every run of a preset measures the very same weights; forked so the caller's
        # global RNG state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            model = AutoModelForCausalLM.from_config(
                model_config, dtype=dtype, attn_implementation=config.attn_implementation
            )
        if config.kernels:
            model.set_use_kernels(True)
        return model
    try:
        return AutoModelForCausalLM.from_pretrained(
            source.identifier,
            dtype=dtype,
            attn_implementation=config.attn_implementation,
            use_kernels=config.kernels,
            trust_remote_code=config.trust_remote_code,
            use_safetensors=None,  # safetensors when present, .bin only as a fallback
        )
    except ModuleNotFoundError:
        raise
    except Exception as error:
        raise load_error("weights", source, error, _WEIGHT_PATTERNS) from error


def make_generation_config(config: BenchmarkConfig, pad_token_id: int, device: torch.device) -> Any:
    """Greedy decoding of exactly ``new_tokens`` tokens: no EOS stop, optional static cache + compile."""
    from transformers import GenerationConfig

    settings: dict[str, Any] = {
        "max_new_tokens": config.new_tokens,
        "do_sample": False,
        "num_beams": 1,
        "eos_token_id": None,
        "pad_token_id": pad_token_id,
    }
    if config.static_cache:
        settings["cache_implementation"] = "static"
    if config.compile_mode is not None:
        settings["compile_config"] = compat.make_compile_config(config.compile_mode, device.type)
    else:
        settings["disable_compile"] = True
    return GenerationConfig(**settings)


@contextmanager
def benchmark_mode(model: Any) -> Iterator[None]:
    """Eval mode and neutral generation defaults for the run; the model's own state comes back after.

    ``generate`` fills every setting the passed config leaves unset from ``model.generation_config``
    (a Hub model's EOS, repetition penalty, cache implementation...). Swapping in a default
    ``GenerationConfig`` for the run means only what tokbench asks for reaches ``generate``.
    """
    from transformers import GenerationConfig

    was_training = model.training
    own_generation_config = getattr(model, "generation_config", None)
    model.eval()
    model.generation_config = GenerationConfig()
    try:
        yield
    finally:
        model.generation_config = own_generation_config
        model.train(was_training)


def load(
    config: BenchmarkConfig,
    tokenizers: TokenizerCache | None = None,
    model: Any = None,
    tokenizer: Any = None,
    clock: Clock = perf_counter_ns,
    *,
    reference_output: bool = True,
) -> LoadedModel:
    """Load (or adopt) tokenizer and model for ``config``; time each phase separately.

    With ``reference_output`` (and a quantization), row 0's greedy tokens from the unquantized weights are
    generated before quantizing, for the result's output fingerprint; ``tokbench tune`` needs none.
    """
    device = resolve_device(config.device)
    source = resolve_model_source(config.model) if model is None else ModelSource("provided", config.model)

    tokenizer_ns: int | None = None
    tokenizer_cached = False
    if tokenizer is None:
        if source.kind == "provided":
            raise ModelSourceError("a model was passed in without its tokenizer; pass tokenizer= too")
        start_ns = clock()
        tokenizer, tokenizer_cached = (tokenizers or TokenizerCache()).get(source, config.trust_remote_code)
        tokenizer_ns = clock() - start_ns

    weights_ns: int | None = None
    to_device_ns: int | None = None
    folder_quantization = _check_quantization_source(config, source, device) if model is None else None
    if model is None:
        model_config = _preset_model_config(source) if source.kind == "preset" else None
        start_ns = clock()
        model = _load_weights(config, source, model_config)
        model.eval()  # from_config builds in train mode; dropout and friends must be off
        weights_ns = clock() - start_ns
        start_ns = clock()
        if folder_quantization is None:  # a pre-quantized model was placed by its quantizer
            model.to(device)
        synchronize(device)
        to_device_ns = clock() - start_ns
    else:
        _check_provided_model(model, config, device)
    check_context_length(getattr(model, "config", None), config.prompt_lengths, config.new_tokens)

    inputs = build_inputs(tokenizer, config.batch_size, config.prompt_lengths, device)
    generation_config = make_generation_config(config, pad_token_id_for(tokenizer), device)
    quantize = source.kind != "provided"
    reference_ids: tuple[int, ...] = ()
    if quantize and reference_output and config.quantization is not None:
        reference_ids = _reference_token_ids(model, config, inputs, generation_config)
    if quantize and thirdparty_method(config.quantization):
        model, quantize_ns, tune_ns, quantization = _load_thirdparty(model, config, source, device, clock)
    else:
        quantize_ns, tune_ns, quantization = _quantize_and_tune(model, config, device, quantize=quantize, clock=clock)
    if folder_quantization is not None or _hub_quantization(model, config, source) is not None:
        from tokbench.quant import thirdparty

        found = folder_quantization or _hub_quantization(model, config, source) or {}
        quantization = replace(quantization, method=thirdparty.prequantized_record(model, found))
    effective = effective_settings(model, config, device, generation_config)
    timings = LoadTimings(
        tokenizer_ns=tokenizer_ns,
        weights_ns=weights_ns,
        to_device_ns=to_device_ns,
        quantize_ns=quantize_ns,
        tune_ns=tune_ns,
        tokenizer_cached=tokenizer_cached,
    )
    return LoadedModel(
        model, tokenizer, inputs, generation_config, device, timings, source, effective, quantization, reference_ids
    )


def thirdparty_method(quantization: str | None) -> bool:
    """Whether ``quantization`` is loaded through transformers' ``quantization_config`` (not tokbench's int4)."""
    return quantization is not None and quantization != "int4"


def _check_quantization_source(config: BenchmarkConfig, source: ModelSource, device: torch.device) -> dict | None:
    """Before any weight is read: can this quantization run here, and is the folder already quantized?

    Returns the folder's own ``quantization_config`` (a pre-quantized model, loaded as it is), else None.
    """
    from tokbench.quant import thirdparty

    if thirdparty.is_thirdparty(config.quantization):
        thirdparty.check_available(config.quantization, device, torch_dtype(config.dtype), config.group_size)
    found = thirdparty.folder_quantization_config(source.identifier) if source.kind == "local" else None
    if found is None:
        return None
    if config.quantization is not None:
        raise UnavailableFeatureError(
            "quantization",
            f"the model folder is already quantized ({thirdparty.prequantized_method(found)}); "
            f"tokbench does not quantize it again with {config.quantization}",
            "drop --quantization to measure the folder as it is",
        )
    thirdparty.check_prequantized_loadable(found)
    return found


def _hub_quantization(model: Any, config: BenchmarkConfig, source: ModelSource) -> dict | None:
    """A Hub model that arrived quantized (its config names a quantization_config) when none was asked for."""
    if source.kind != "hub" or config.quantization is not None:
        return None
    found = getattr(getattr(model, "config", None), "quantization_config", None)
    if found is None:
        return None
    return found if isinstance(found, dict) else found.to_dict()


def _reference_token_ids(
    model: Any, config: BenchmarkConfig, inputs: BenchmarkInputs, generation_config: Any
) -> tuple[int, ...]:
    """Row 0's greedy tokens from the unquantized weights: what the quantized model's output is compared with.

    Dynamic cache and no compile, whatever the run uses: greedy tokens do not depend on either, and
    compiling the unquantized model would cost the run a compile it never measures.
    """
    import copy

    reference_config = copy.deepcopy(generation_config)
    reference_config.cache_implementation = None
    reference_config.compile_config = None
    reference_config.disable_compile = True
    with benchmark_mode(model), torch.no_grad():
        output = model.generate(
            input_ids=inputs.input_ids, attention_mask=inputs.attention_mask, generation_config=reference_config
        )
    return tuple(int(t) for t in output[0, inputs.sequence_length :].tolist())


def quantization_fingerprint(loaded: LoadedModel, quantized_token_ids: Sequence[int]) -> QuantizationFingerprint | None:
    """The quantized model's row-0 tokens next to the unquantized ones, or None when there is nothing to compare."""
    if not loaded.reference_token_ids or not quantized_token_ids:
        return None
    return QuantizationFingerprint.compare(loaded.reference_token_ids, quantized_token_ids)


def _load_thirdparty(
    unquantized: Any, config: BenchmarkConfig, source: ModelSource, device: torch.device, clock: Clock
) -> tuple[Any, int, None, QuantizationRecord]:
    """Reload the weights through transformers with the method's ``quantization_config``, timed as "quantize".

    transformers quantizes while it loads, so the quantize phase includes reading the weights again
    (from a temporary save of the seeded weights for a preset). The unquantized model is dropped first.
    """
    from tokbench.quant import thirdparty

    # The model's own layer shapes, probed before its weights are read again: a kernel that refuses one is skipped.
    thirdparty.check_model_shapes(config.quantization or "", unquantized, device, torch_dtype(config.dtype),
                                  config.group_size)  # fmt: skip
    folder = thirdparty.saved_for_loading(unquantized) if source.kind == "preset" else None
    location = folder.name if folder is not None else source.identifier
    del unquantized
    try:
        start_ns = clock()
        model = thirdparty.load_quantized(
            config.quantization or "",
            location,
            dtype=torch_dtype(config.dtype),
            group_size=config.group_size,
            attn_implementation=config.attn_implementation,
            device=device,
            trust_remote_code=config.trust_remote_code,
        )
        synchronize(device)
        quantize_ns = clock() - start_ns
    finally:
        if folder is not None:
            folder.cleanup()
    record = QuantizationRecord(method=thirdparty.method_record(config.quantization or "", model, config.group_size))
    return model, quantize_ns, None, record


def _quantize_and_tune(
    model: Any, config: BenchmarkConfig, device: torch.device, *, quantize: bool, clock: Clock
) -> tuple[int | None, int | None, QuantizationRecord]:
    """The quantize and tune load phases, each timed on its own; a passed-in model is never re-quantized."""
    if config.quantization is None:
        return None, None, QuantizationRecord()
    from tokbench.quant import quantize_model
    from tokbench.quant.tune import tune_model

    quantize_ns = tune_ns = None
    record = QuantizationRecord()
    if quantize:
        start_ns = clock()
        record = replace(record, report=quantize_model(model, config.group_size, config.quant_kernel))
        synchronize(device)
        quantize_ns = clock() - start_ns
        record = replace(record, method=_int4_method_record(model, config))
    if config.tune:
        # The tuner's warnings (noisy timings, rejected candidates, bad cache entries) belong to the
        # result, not to stderr in the middle of a progress bar.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            start_ns = clock()
            tuning = tune_model(
                model,
                config.batch_size,
                max(config.prompt_lengths),
                device=device,
                budget_s_per_shape=config.tune_budget_s,
                clock=clock,
                prefill_rows=config.prefill_rows,
            )
            tune_ns = clock() - start_ns
        warned = tuple(f"{w.category.__name__}: {w.message}" for w in caught)
        record = replace(record, tuning=tuning, tuning_warnings=warned)
    return quantize_ns, tune_ns, record


def _int4_method_record(model: Any, config: BenchmarkConfig) -> QuantizationMethodRecord:
    from tokbench.engine.efficiency import weight_facts
    from tokbench.version import __version__

    return QuantizationMethodRecord(
        method="int4",
        library="tokbench",
        library_version=__version__,
        settings={"group_size": config.group_size, "quant_kernel": config.quant_kernel, "tune": config.tune},
        quantized_weight_bytes=weight_facts(model).weight_bytes,
        layer_types=("QuantizedLinear",),
    )


def _check_provided_model(model: Any, config: BenchmarkConfig, device: torch.device) -> None:
    """A passed-in model must match the config that will label its result."""
    parameter = next(model.parameters())
    if parameter.dtype != torch_dtype(config.dtype):
        raise ModelMismatchError(
            "dtype",
            f"the model passed in is {str(parameter.dtype).removeprefix('torch.')}, the config says {config.dtype}",
            "set dtype in the config to the model's dtype, or convert the model",
        )
    if parameter.device != device:
        raise ModelMismatchError(
            "device",
            f"the model passed in is on {parameter.device}, the config resolves to {device}",
            "move the model or set device in the config",
        )
    from tokbench.quant import QuantizedLinear

    if thirdparty_method(config.quantization):
        if getattr(getattr(model, "config", None), "quantization_config", None) is None:
            raise ModelMismatchError(
                "quantization",
                f"the model passed in has no quantization_config, the config says {config.quantization}",
                "pass the model loaded with its quantization_config, or drop quantization",
            )
        return
    quantized = any(isinstance(module, QuantizedLinear) for module in model.modules())
    if quantized != (config.quantization is not None):
        raise ModelMismatchError(
            "quantization",
            f"the model passed in is {'' if quantized else 'not '}int4-quantized, the config says "
            f"{config.quantization or 'no quantization'}",
            "pass a model quantized with tokbench.quant.quantize_model, or set quantization to match",
        )
    actual_attention = compat.attention_implementation(model)
    if actual_attention not in ("unknown", config.attn_implementation):
        raise ModelMismatchError(
            "attn_implementation",
            f"the model passed in uses {actual_attention}, the config says {config.attn_implementation}",
            f"set attn_implementation={actual_attention!r} in the config",
        )


def effective_settings(
    model: Any, config: BenchmarkConfig, device: torch.device, generation_config: Any
) -> EffectiveSettings:
    """What the loaded model really runs with, recorded next to what the config asked for.

    ``generation_config`` lists every generate setting that differs from transformers' defaults;
    under ``benchmark_mode`` nothing else reaches ``generate``.
    """
    parameter = next(model.parameters())
    settings = EffectiveSettings(
        device=str(device),
        dtype=str(parameter.dtype).removeprefix("torch."),
        attn_implementation=compat.attention_implementation(model),
        use_kernels=bool(getattr(model, "use_kernels", False)),
        parameters=sum(p.numel() for p in model.parameters()),
        generation_config=json.loads(generation_config.to_json_string(use_diff=True)),
        quantization=_quantization_settings(model, config, device) if config.quantization is not None else None,
        grad_mode=run_grad_mode(config)[0],  # every call checks its forwards really ran under it (engine.gradmode)
    )
    if settings.attn_implementation not in ("unknown", config.attn_implementation):
        raise UnavailableFeatureError(
            "attn_implementation",
            f"transformers loaded {settings.attn_implementation} instead of {config.attn_implementation}",
            "pick an attention implementation this model supports",
        )
    return settings


def _quantization_settings(model: Any, config: BenchmarkConfig, device: torch.device) -> QuantizationSettings:
    """What the quantized layers will really run: per layer shape, the kernel for prefill M and decode M."""
    from tokbench.quant import QuantizedLinear

    if thirdparty_method(config.quantization):  # the library picks its own kernels; none is tokbench's to report
        return QuantizationSettings(method=config.quantization, tuned=False, kernels={})
    layers = [module for module in model.modules() if isinstance(module, QuantizedLinear)]
    row_counts = {"decode": config.batch_size, "prefill": config.prefill_rows}
    kernels: dict[str, dict[str, str]] = {}
    for layer in layers:
        label = f"{layer.in_features}x{layer.out_features}"
        if label not in kernels:
            kernels[label] = {
                f"{phase} M={m}": layer.choice_for(m, device, layer.compute_dtype).label
                for phase, m in row_counts.items()
            }
    return QuantizationSettings(
        method=config.quantization,
        group_size=layers[0].group_size if layers else None,
        layers=len(layers),
        tuned=any(layer.dispatch for layer in layers),
        kernels=kernels,
    )
