"""The autograd state measured calls run under (``BenchmarkConfig.grad_mode``), applied and verified.

``inference_mode`` skips autograd's bookkeeping (version counters, view tracking) that ``no_grad`` still
does; serving paths and transformers' own benchmark run generation under it. Both are thread-local, so
every path checks what its forwards really ran under (``GradModeProbe``) instead of assuming it: a call
whose forwards ran under another mode fails rather than being recorded under the wrong name.

One mode per run: tensors created under ``inference_mode`` (a static KV cache, the continuous-batching
paged cache) cannot be updated in place outside it, so warmup, measured and profiled calls all use the
config's mode.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager
from typing import Any

import torch

from tokbench.config import GRAD_MODES
from tokbench.errors import GenerationError

INFERENCE_MODE, NO_GRAD = GRAD_MODES
GRAD_ENABLED = "grad_enabled"  # neither: autograd records the graph (never what tokbench asks for)


# Paths that cannot run under inference_mode, with the reason: they are measured under no_grad and say so.
INFERENCE_MODE_UNSUPPORTED = {
    "quanto-int4": (
        "optimum-quanto's int4 weights set a tensor version counter while they run, which inference_mode "
        "forbids ('Cannot set version_counter for inference tensor')"
    ),
}


def run_grad_mode(config: Any) -> tuple[str, str]:
    """The grad mode a run really uses, and why it is not the configured one ("" when it is)."""
    why = INFERENCE_MODE_UNSUPPORTED.get(config.quantization or "")
    if config.grad_mode == INFERENCE_MODE and why:
        return NO_GRAD, f"{config.quantization} cannot run under inference_mode: {why}; measured under no_grad"
    return config.grad_mode, ""


def grad_mode_context(mode: str) -> AbstractContextManager[Any]:
    """A context that runs the code inside under ``mode`` ("inference_mode" or "no_grad")."""
    if mode == INFERENCE_MODE:
        return torch.inference_mode()
    if mode == NO_GRAD:
        return torch.no_grad()
    raise ValueError(f"unknown grad mode {mode!r}; use one of {GRAD_MODES}")


def current_grad_mode() -> str:
    """The calling thread's autograd state: inference_mode, no_grad, or grad_enabled."""
    if torch.is_inference_mode_enabled():
        return INFERENCE_MODE
    return GRAD_ENABLED if torch.is_grad_enabled() else NO_GRAD


def check_grad_mode(expected: str, seen: str | None, where: str) -> None:
    """Raise ``GenerationError`` unless the forwards of ``where`` ran under ``expected``."""
    if seen is None:
        raise GenerationError(f"{where}: no model forward was observed, so its grad mode is unknown")
    if seen != expected:
        raise GenerationError(
            f"{where}: the model's forwards ran under {seen}, not the configured grad_mode {expected}"
        )


class GradModeProbe:
    """Records the grad mode of the next forward of ``model``, in whichever thread runs it.

    One forward pre-hook that removes itself after its first call, so the measured forwards after it
    carry no hook. Use as a context manager; ``seen`` is None until a forward ran.
    """

    def __init__(self, model: Any) -> None:
        self._model = model
        self._lock = threading.Lock()
        self._handle: Any = None
        self.seen: str | None = None

    def _record(self, _module: Any, _args: Any) -> None:
        with self._lock:
            if self.seen is None:
                self.seen = current_grad_mode()
            self._remove()

    def _remove(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            handle.remove()

    def __enter__(self) -> GradModeProbe:
        self._handle = self._model.register_forward_pre_hook(self._record)
        return self

    def __exit__(self, *exc_info: object) -> None:
        with self._lock:
            self._remove()
