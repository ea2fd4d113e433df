"""Third-party weight quantization through transformers' ``quantization_config``, and pre-quantized folders.

tokbench's own ``int4`` lives in :mod:`tokbench.quant.int4`. The methods here are the ones users deploy
(torchao, optimum-quanto, bitsandbytes), loaded exactly as a user would load them:
``AutoModelForCausalLM.from_pretrained(folder, quantization_config=...)``. Nothing is rewritten: a method
the machine cannot run (package missing, CUDA only, a layout this build lacks) raises
``UnavailableFeatureError`` with the library's own words, and the runner records it as ``skipped``.

Each library's API was taken from the installed sources (transformers 5.x ``utils/quantization_config.py``,
torchao 0.18 ``quantization/quant_api.py``, optimum-quanto 0.2 ``quantize`` / ``freeze``, bitsandbytes
0.50 ``nn.Linear4bit`` / ``nn.Linear8bitLt``).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from tokbench.errors import UnavailableFeatureError
from tokbench.schema.quant import QuantizationMethodRecord

# The square linear layer every probe quantizes: 256 is a multiple of every group and block size used here.
_PROBE_FEATURES = 256


@dataclass(frozen=True)
class ThirdPartyMethod:
    """One ``--quantization`` value served by a library through transformers."""

    name: str
    distribution: str  # the pip distribution whose version is recorded
    module: str  # what must be importable
    extra: str  # tokbench's optional extra that installs it
    description: str
    also_needs: tuple[str, ...] = ()  # further importable modules transformers' quantizer requires

    def install_hint(self) -> str:
        return f"pip install -c .venv/torch-constraint.txt 'tokbench[{self.extra}]'"


METHODS: dict[str, ThirdPartyMethod] = {
    method.name: method
    for method in (
        ThirdPartyMethod("torchao-int4", "torchao", "torchao", "torchao", "torchao int4 weight-only, group-wise"),
        ThirdPartyMethod("torchao-int8", "torchao", "torchao", "torchao", "torchao int8 weight-only, per channel"),
        ThirdPartyMethod(
            "torchao-int8-dynamic", "torchao", "torchao", "torchao", "torchao int8 dynamic activations + int8 weights"
        ),
        ThirdPartyMethod(
            "quanto-int8", "optimum-quanto", "optimum.quanto", "quanto", "optimum-quanto int8 weights",
            ("accelerate",),
        ),
        ThirdPartyMethod(
            "quanto-int4", "optimum-quanto", "optimum.quanto", "quanto", "optimum-quanto int4 weights",
            ("accelerate",),
        ),
        ThirdPartyMethod(
            "bnb-nf4", "bitsandbytes", "bitsandbytes", "bnb", "bitsandbytes 4-bit NormalFloat weights",
            ("accelerate",),
        ),
        ThirdPartyMethod(
            "bnb-int8", "bitsandbytes", "bitsandbytes", "bnb", "bitsandbytes LLM.int8() weights", ("accelerate",)
        ),
    )
}  # fmt: skip

# The library behind each ``quant_method`` a pre-quantized folder may name (its version is recorded).
_PREQUANTIZED_LIBRARIES = {
    "awq": "gptqmodel",
    "gptq": "gptqmodel",
    "compressed-tensors": "compressed-tensors",
    "torchao": "torchao",
    "quanto": "optimum-quanto",
    "bitsandbytes": "bitsandbytes",
    "hqq": "hqq",
    "aqlm": "aqlm",
    "eetq": "eetq",
    "fbgemm_fp8": "fbgemm-gpu",
    "auto-round": "auto-round",
}


def is_thirdparty(quantization: str | None) -> bool:
    return quantization in METHODS


def library_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _missing_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is None
    except ModuleNotFoundError:  # a parent package (optimum) is missing
        return True


def quantization_config(method: str, dtype: torch.dtype, group_size: int) -> Any:
    """The transformers ``quantization_config`` object of ``method`` (imports the library)."""
    if method.startswith("torchao-"):
        from transformers import TorchAoConfig

        return TorchAoConfig(torchao_quant_type(method, group_size))
    if method.startswith("quanto-"):
        from transformers import QuantoConfig

        return QuantoConfig(weights=method.removeprefix("quanto-"))
    if method == "bnb-nf4":
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    if method == "bnb-int8":
        from transformers import BitsAndBytesConfig

        return BitsAndBytesConfig(load_in_8bit=True)
    raise KeyError(f"unknown third-party quantization {method!r}; known: {', '.join(METHODS)}")


def torchao_quant_type(method: str, group_size: int) -> Any:
    from torchao.quantization import (
        Int4WeightOnlyConfig,
        Int8DynamicActivationInt8WeightConfig,
        Int8WeightOnlyConfig,
    )

    if method == "torchao-int4":
        # tinygemm's tile-packed layout: the int4 kernel in torch itself. torchao 0.18's default "plain"
        # layout needs the separate mslk package; both run on CUDA only (see the README).
        return Int4WeightOnlyConfig(group_size=group_size, int4_packing_format="tile_packed_to_4d")
    if method == "torchao-int8":
        return Int8WeightOnlyConfig()
    if method == "torchao-int8-dynamic":
        return Int8DynamicActivationInt8WeightConfig()
    raise KeyError(method)


def check_available(method: str, device: torch.device, dtype: torch.dtype, group_size: int) -> None:
    """Raise ``UnavailableFeatureError`` unless ``method`` runs here; the reason is the library's own.

    Besides the packages, a probe quantizes one small linear layer with the library's own API on
    ``device`` and runs it: that is where a CUDA-only kernel or a missing layout shows, before any
    model is loaded.
    """
    spec = METHODS[method]
    for module in (spec.module, *spec.also_needs):
        if _missing_module(module):
            raise UnavailableFeatureError(
                "quantization",
                f"{method} needs the {module} package, which is not installed",
                spec.install_hint(),
            )
    probe = _PROBES[spec.distribution]
    try:
        probe(method, device, dtype, group_size)
    except Exception as error:
        version = library_version(spec.distribution)
        raise UnavailableFeatureError(
            "quantization",
            f"{method} cannot run on {device.type} with {spec.distribution} {version}: {_first_line(error)}",
            f"run {method} where {spec.distribution} supports it (see the README), or use quantization int4",
        ) from error


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__


def check_model_shapes(method: str, model: Any, device: torch.device, dtype: torch.dtype, group_size: int) -> None:
    """Raise ``UnavailableFeatureError`` unless ``method`` runs every linear layer shape of ``model`` here.

    ``check_available`` probes one square layer; some kernels refuse particular widths (bitsandbytes' CPU 4-bit
    kernel asserts an output width that is a multiple of its block), which only the model's own shapes show. One
    layer per distinct shape is quantized and run, before the weights are read again to be quantized.
    """
    spec = METHODS[method]
    output = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    shapes = sorted({
        (module.in_features, module.out_features)
        for module in model.modules()
        if isinstance(module, torch.nn.Linear) and module is not output
    })  # fmt: skip
    for shape in shapes:
        try:
            _PROBES[spec.distribution](method, device, dtype, group_size, shape)
        except Exception as error:
            version = library_version(spec.distribution)
            raise UnavailableFeatureError(
                "quantization",
                f"{method} cannot run this model on {device.type} with {spec.distribution} {version}: its "
                f"{shape[0]}x{shape[1]} linear layers fail: {_first_line(error)}",
                f"run {method} where {spec.distribution} supports these shapes (see the README), or use "
                "quantization int4",
            ) from error


Shape = tuple[int, int]


def _probe_linear(
    device: torch.device, dtype: torch.dtype, shape: Shape = (_PROBE_FEATURES, _PROBE_FEATURES)
) -> tuple[torch.nn.Linear, torch.Tensor]:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        layer = torch.nn.Linear(shape[0], shape[1], bias=False, dtype=dtype, device=device)
        sample = torch.randn(1, shape[0], dtype=dtype, device=device)
    return layer, sample


def _probe_torchao(
    method: str, device: torch.device, dtype: torch.dtype, group_size: int, shape: Shape = (_PROBE_FEATURES,) * 2
) -> None:
    from torchao.quantization import quantize_

    layer, sample = _probe_linear(device, dtype, shape)
    quantize_(layer, torchao_quant_type(method, group_size))
    with torch.no_grad():
        layer(sample)


def _probe_quanto(
    method: str, device: torch.device, dtype: torch.dtype, group_size: int, shape: Shape = (_PROBE_FEATURES,) * 2
) -> None:
    from optimum.quanto import freeze, qint4, qint8, quantize

    linear, sample = _probe_linear(device, dtype, shape)
    layer = torch.nn.Sequential(linear)  # quanto replaces the children of the module it is given
    quantize(layer, weights=qint4 if method == "quanto-int4" else qint8)
    freeze(layer)
    with torch.no_grad():
        layer(sample)


def _probe_bnb(
    method: str, device: torch.device, dtype: torch.dtype, group_size: int, shape: Shape = (_PROBE_FEATURES,) * 2
) -> None:
    import bitsandbytes as bnb

    plain, sample = _probe_linear(torch.device("cpu"), dtype, shape)
    if method == "bnb-nf4":
        layer = bnb.nn.Linear4bit(shape[0], shape[1], bias=False, compute_dtype=dtype, quant_type="nf4", device="cpu")
        layer.weight = bnb.nn.Params4bit(plain.weight.data, requires_grad=False, quant_type="nf4")
    else:
        layer = bnb.nn.Linear8bitLt(shape[0], shape[1], bias=False, has_fp16_weights=False)
        layer.weight = bnb.nn.Int8Params(plain.weight.data, requires_grad=False, has_fp16_weights=False)
    # bitsandbytes quantizes when the weight moves to the device; eval(), as the model runs (its CPU kernel repacks
    # the weights only in eval mode, and that is where a width it cannot take shows)
    layer = layer.to(device).eval()
    with torch.no_grad():
        layer(sample.to(device))


_PROBES: dict[str, Callable[[str, torch.device, torch.dtype, int, Shape], None]] = {
    "torchao": _probe_torchao,
    "optimum-quanto": _probe_quanto,
    "bitsandbytes": _probe_bnb,
}


# --- loading ---------------------------------------------------------------------------------------------


def load_quantized(
    method: str,
    location: str,
    *,
    dtype: torch.dtype,
    group_size: int,
    attn_implementation: str,
    device: torch.device,
    trust_remote_code: bool = False,
) -> Any:
    """``from_pretrained(location, quantization_config=...)`` on ``device``: transformers quantizes while loading.

    ``device_map`` places every weight on the device as it is quantized (bitsandbytes and quanto
    models cannot be moved with ``.to`` afterwards).
    """
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(
        location,
        dtype=dtype,
        attn_implementation=attn_implementation,
        quantization_config=quantization_config(method, dtype, group_size),
        device_map={"": str(device)},
        trust_remote_code=trust_remote_code,
    )
    model.eval()
    return model


def saved_for_loading(model: Any) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder holding ``model`` saved with ``save_pretrained`` (a preset has no folder of its own)."""
    folder = tempfile.TemporaryDirectory(prefix="tokbench-quantize-")
    model.save_pretrained(folder.name)
    return folder


def method_record(method: str, model: Any, group_size: int) -> QuantizationMethodRecord:
    spec = METHODS[method]
    settings = _settings_of(model)
    settings.setdefault("tokbench_group_size", group_size if method == "torchao-int4" else None)
    return QuantizationMethodRecord(
        method=method,
        library=spec.distribution,
        library_version=library_version(spec.distribution),
        settings=settings,
        prequantized=False,
        quantized_weight_bytes=quantized_weight_bytes(model),
        layer_types=quantized_layer_types(model),
    )


def _settings_of(model: Any) -> dict[str, Any]:
    """The quantization config as transformers serializes it (JSON-safe)."""
    quant_config = getattr(getattr(model, "config", None), "quantization_config", None)
    if quant_config is None:
        return {}
    data = quant_config if isinstance(quant_config, dict) else quant_config.to_dict()
    return json.loads(json.dumps(data, default=str))


# --- folders that are already quantized ---------------------------------------------------------------------


def folder_quantization_config(folder: str | Path) -> dict[str, Any] | None:
    """The ``quantization_config`` of a saved model folder's config.json (or its text config's), else None."""
    path = Path(folder) / "config.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None
    found = data.get("quantization_config")
    if found is None and isinstance(data.get("text_config"), dict):
        found = data["text_config"].get("quantization_config")
    return found if isinstance(found, dict) else None


def prequantized_method(quant_config: dict[str, Any]) -> str:
    if quant_config.get("load_in_4bit") or quant_config.get("load_in_8bit"):
        return "bitsandbytes"
    return str(quant_config.get("quant_method", "unknown"))


def check_prequantized_loadable(quant_config: dict[str, Any]) -> None:
    """Raise ``UnavailableFeatureError`` if transformers' quantizer for this folder cannot run here.

    Runs the same quantizer construction and environment check ``from_pretrained`` runs first, so a
    missing package or a GPU-only method is a skip with the library's reason, not a failed load.
    """
    from transformers.quantizers import AutoHfQuantizer

    method = prequantized_method(quant_config)
    try:
        quantizer = AutoHfQuantizer.from_config(dict(quant_config), pre_quantized=True)
        quantizer.validate_environment(device_map=None, weights_only=True)
    except Exception as error:
        library = _PREQUANTIZED_LIBRARIES.get(method, method)
        raise UnavailableFeatureError(
            "model",
            f"the model folder is already quantized ({method}); transformers cannot load it here: "
            f"{_first_line(error)}",
            f"install {library} (and what the message names), or run it where {method} is supported",
        ) from error


def prequantized_record(model: Any, quant_config: dict[str, Any]) -> QuantizationMethodRecord:
    method = prequantized_method(quant_config)
    library = _PREQUANTIZED_LIBRARIES.get(method, method)
    return QuantizationMethodRecord(
        method=f"prequantized:{method}",
        library=library,
        library_version=library_version(library),
        settings=json.loads(json.dumps(quant_config, default=str)),
        prequantized=True,
        quantized_weight_bytes=quantized_weight_bytes(model),
        layer_types=quantized_layer_types(model),
    )


# --- what quantized weights weigh ------------------------------------------------------------------------


def tensor_storage_bytes(tensor: torch.Tensor) -> int:
    """Bytes a tensor really holds: the inner tensors of a tensor subclass (torchao, quanto), plus the
    quantization state bitsandbytes keeps beside its packed 4-bit data; else numel × element size."""
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None and type(tensor) not in (torch.Tensor, torch.nn.Parameter):
        names, _ = tensor.__tensor_flatten__()
        return sum(tensor_storage_bytes(getattr(tensor, name)) for name in names)
    total = tensor.numel() * tensor.element_size()
    state = getattr(tensor, "quant_state", None)  # bitsandbytes Params4bit
    if state is not None:
        for name in ("absmax", "code"):
            part = getattr(state, name, None)
            if isinstance(part, torch.Tensor):
                total += part.numel() * part.element_size()
        nested = getattr(state, "state2", None)
        if nested is not None and isinstance(getattr(nested, "absmax", None), torch.Tensor):
            total += nested.absmax.numel() * nested.absmax.element_size()
    scale = getattr(tensor, "SCB", None)  # bitsandbytes Int8Params: one scale per output row
    if isinstance(scale, torch.Tensor):
        total += scale.numel() * scale.element_size()
    return int(total)


def quantized_weight_bytes(model: Any) -> int:
    """Every parameter once (tied weights once: ``parameters()`` yields a shared one once), at the bytes it
    really occupies (the same count as ``analysis.efficiency.weight_facts``)."""
    seen: set[int] = set()
    total = 0
    for tensor in model.parameters():
        if id(tensor) in seen:
            continue
        seen.add(id(tensor))
        total += tensor_storage_bytes(tensor)
    return total


def quantized_layer_types(model: Any) -> tuple[str, ...]:
    """The distinct classes of linear layers and weight tensors that are not plain torch (sorted)."""
    kinds: set[str] = set()
    for module in model.modules():
        weight = getattr(module, "weight", None)
        if type(module).__module__.split(".")[0] not in ("torch", "transformers"):
            kinds.add(type(module).__name__)
        if isinstance(weight, torch.Tensor) and type(weight) not in (torch.Tensor, torch.nn.Parameter):
            kinds.add(type(weight).__name__)
    return tuple(sorted(kinds))
