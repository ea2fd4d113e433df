"""Loading stage: model source, tokenizer (cached per model), exact-shape inputs, and the model.

Every setting in the config reaches the model as asked, or loading fails with a reason:
nothing is silently swapped for something that happens to work.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from transformers import MODEL_FOR_CAUSAL_LM_MAPPING, AutoConfig, AutoModelForCausalLM, AutoTokenizer, GenerationConfig

from tokbench import presets
from tokbench.clock import Clock, perf_counter_ns
from tokbench.config import BenchmarkConfig
from tokbench.engine import compat
from tokbench.engine.gradmode import run_grad_mode
from tokbench.engine.quantization import QuantizationMethod, method_for
from tokbench.errors import InputShapeError, ModelMismatchError, ModelSourceError, UnavailableFeatureError
from tokbench.hardware.devices import resolve_device, synchronize, torch_dtype
from tokbench.schema.quant import QuantizationFingerprint, QuantizationRecord
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


def _preset_model_config(source: ModelSource) -> Any:
    """The preset's transformers config, with its model code imported.

    Called before the weights timer starts: importing Python modules is not loading weights.
    """
    model_config = AutoConfig.for_model(**presets.preset_config_dict(source.identifier))
    _ = MODEL_FOR_CAUSAL_LM_MAPPING[type(model_config)]  # imports modeling_<arch>
    return model_config


def _load_weights(config: BenchmarkConfig, source: ModelSource, model_config: Any = None) -> Any:
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

    The config's quantization is one ``engine.quantization`` method: checked before any weight is read,
    applied after loading. With ``reference_output`` (and a method that changes the weights), row 0's greedy
    tokens from the unquantized weights are generated first, for the result's output fingerprint;
    ``tokbench tune`` needs none.
    """
    device = resolve_device(config.device)
    provided = model is not None
    source = ModelSource("provided", config.model) if provided else resolve_model_source(config.model)
    tokenizer, tokenizer_ns, tokenizer_cached = _tokenizer_for(config, source, tokenizers, tokenizer, clock)
    method = method_for(config, source)
    weights_ns: int | None = None
    to_device_ns: int | None = None
    if provided:
        _check_provided_model(model, config, device, method)
    else:
        method.check(device)
        model, weights_ns, to_device_ns = _load_model(config, source, device, method, clock)
    check_context_length(getattr(model, "config", None), config.prompt_lengths, config.new_tokens)

    inputs = build_inputs(tokenizer, config.batch_size, config.prompt_lengths, device)
    generation_config = make_generation_config(config, pad_token_id_for(tokenizer), device)
    reference_ids: tuple[int, ...] = ()
    if not provided and reference_output and method.changes_weights:
        reference_ids = _reference_token_ids(model, config, inputs, generation_config)
    quantized = method.apply(model, device, clock, provided=provided)
    model = quantized.model
    effective = effective_settings(model, config, device, generation_config, method)
    timings = LoadTimings(
        tokenizer_ns=tokenizer_ns,
        weights_ns=weights_ns,
        to_device_ns=to_device_ns,
        quantize_ns=quantized.quantize_ns,
        tune_ns=quantized.tune_ns,
        tokenizer_cached=tokenizer_cached,
    )
    return LoadedModel(
        model, tokenizer, inputs, generation_config, device, timings, source, effective, quantized.record, reference_ids
    )


def _tokenizer_for(
    config: BenchmarkConfig, source: ModelSource, tokenizers: TokenizerCache | None, tokenizer: Any, clock: Clock
) -> tuple[Any, int | None, bool]:
    """The tokenizer (passed in, or from the cache), the time it took and whether the cache had it."""
    if tokenizer is not None:
        return tokenizer, None, False
    if source.kind == "provided":
        raise ModelSourceError("a model was passed in without its tokenizer; pass tokenizer= too")
    start_ns = clock()
    tokenizer, cached = (tokenizers or TokenizerCache()).get(source, config.trust_remote_code)
    return tokenizer, clock() - start_ns, cached


def _load_model(
    config: BenchmarkConfig, source: ModelSource, device: torch.device, method: QuantizationMethod, clock: Clock
) -> tuple[Any, int, int]:
    """The weights read (in eval mode) and placed on ``device``: the model and the two phases' times."""
    model_config = _preset_model_config(source) if source.kind == "preset" else None
    start_ns = clock()
    model = _load_weights(config, source, model_config)
    model.eval()  # from_config builds in train mode; dropout and friends must be off
    weights_ns = clock() - start_ns
    start_ns = clock()
    if not method.places_weights:
        model.to(device)
    synchronize(device)
    return model, weights_ns, clock() - start_ns


def _reference_token_ids(
    model: Any, config: BenchmarkConfig, inputs: BenchmarkInputs, generation_config: Any
) -> tuple[int, ...]:
    """Row 0's greedy tokens from the unquantized weights: what the quantized model's output is compared with.

    Dynamic cache and no compile, whatever the run uses: greedy tokens do not depend on either, and
    compiling the unquantized model would cost the run a compile it never measures.
    """
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


def _check_provided_model(
    model: Any, config: BenchmarkConfig, device: torch.device, method: QuantizationMethod
) -> None:
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
    method.check_provided(model)
    actual_attention = compat.attention_implementation(model)
    if actual_attention not in ("unknown", config.attn_implementation):
        raise ModelMismatchError(
            "attn_implementation",
            f"the model passed in uses {actual_attention}, the config says {config.attn_implementation}",
            f"set attn_implementation={actual_attention!r} in the config",
        )


def effective_settings(
    model: Any, config: BenchmarkConfig, device: torch.device, generation_config: Any, method: QuantizationMethod
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
        quantization=method.settings(model, device),
        grad_mode=run_grad_mode(config)[0],  # every call checks its forwards really ran under it (engine.gradmode)
    )
    if settings.attn_implementation not in ("unknown", config.attn_implementation):
        raise UnavailableFeatureError(
            "attn_implementation",
            f"transformers loaded {settings.attn_implementation} instead of {config.attn_implementation}",
            "pick an attention implementation this model supports",
        )
    return settings
