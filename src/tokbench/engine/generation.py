"""One timed generation: a stamp for every generated token of every row, in integer ns.

The streamer is handed each decoding step's tokens by ``generate`` after they were copied to the
host (``StopCheck`` calls ``tokens.cpu()``, which waits for the device), so a stamp taken in
``put`` is the instant the token became available to the program, never an async launch.
"""

from __future__ import annotations

from typing import Any

import torch

from tokbench.clock import Clock, perf_counter_ns
from tokbench.config import field_default
from tokbench.engine.gradmode import check_grad_mode, current_grad_mode, grad_mode_context
from tokbench.errors import GenerationError
from tokbench.hardware.devices import synchronize
from tokbench.schema.records import GenerationTrace


class TimestampStreamer:
    """A ``generate`` streamer that records when each step's tokens reached the host.

    ``generate`` first puts the whole prompt, then one ``[batch]`` tensor per step; the prompt
    is skipped. The work per call is one clock read and one append, so it adds no measurable time.
    """

    def __init__(self, clock: Clock = perf_counter_ns) -> None:
        self._clock = clock
        self._seen_prompt = False
        self.step_timestamps_ns: list[int] = []
        self.step_tokens: list[torch.Tensor] = []
        self.grad_mode_seen: str | None = None  # inside generate, where its forwards run

    def put(self, value: torch.Tensor) -> None:
        now_ns = self._clock()
        if not self._seen_prompt:
            self._seen_prompt = True
            self.grad_mode_seen = current_grad_mode()
            return
        if value.device.type != "cpu":  # never stamp before the token is on the host
            value = value.cpu()
            now_ns = self._clock()
        self.step_timestamps_ns.append(now_ns)
        self.step_tokens.append(value)

    def end(self) -> None:
        """Nothing to record: ``time_generate`` stamps the end after the device is idle."""


def time_generate(
    model: Any,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    generation_config: Any,
    new_tokens: int,
    tokenizer: Any = None,
    clock: Clock = perf_counter_ns,
    decode_sample: bool = False,
    grad_mode: str = field_default("grad_mode"),
) -> GenerationTrace:
    """Run one ``generate`` call under ``grad_mode`` and return its raw trace; a wrong token count raises.

    ``t0_ns`` is taken after the device is idle, just before the call; ``end_ns`` after the call
    returned and the device is idle again. Every call of a run must use the same ``grad_mode``: a
    static cache made under inference_mode cannot be reset outside it.
    """
    # EOS would let rows finish early and be padded while the call still returns N columns, which no
    # count check after the call can see: refuse to time a call that could stop at EOS at all.
    model_generation_config = getattr(model, "generation_config", None)
    for source, settings in (("the generation config", generation_config), ("the model", model_generation_config)):
        if settings is not None and getattr(settings, "eos_token_id", None) is not None:
            raise GenerationError(
                f"{source} sets eos_token_id={settings.eos_token_id}: rows could stop early; "
                "run under loading.benchmark_mode and without an EOS in the generation config"
            )
    device = input_ids.device
    batch_size, prompt_length = (int(n) for n in input_ids.shape)
    streamer = TimestampStreamer(clock)
    # Entered before t0: the measured call is generate itself (which adds its own no_grad inside).
    with grad_mode_context(grad_mode):
        synchronize(device)
        t0_ns = clock()
        output = model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            generation_config=generation_config,
            streamer=streamer,
        )
        synchronize(device)
        end_ns = clock()
    check_grad_mode(grad_mode, streamer.grad_mode_seen, "generate")

    generated = int(output.shape[1]) - prompt_length
    steps = len(streamer.step_timestamps_ns)
    if generated != new_tokens or steps != new_tokens:
        raise GenerationError(
            f"asked for exactly {new_tokens} new tokens per row, got {generated} in the output and "
            f"{steps} streamed steps; something stopped generation early (an EOS or a stopping criterion)"
        )
    for step_tokens in streamer.step_tokens:
        if step_tokens.shape[0] != batch_size:
            raise GenerationError(f"a step streamed {step_tokens.shape[0]} tokens for a batch of {batch_size}")
    stamps = tuple(streamer.step_timestamps_ns)
    sample = ""
    sample_ids: tuple[int, ...] = ()
    if decode_sample:  # row 0's generated tokens: they follow the padded width, whatever its real length
        sample_ids = tuple(int(n) for n in output[0, prompt_length:].tolist())
        if tokenizer is not None:
            sample = tokenizer.decode(sample_ids, skip_special_tokens=True)
    return GenerationTrace(
        t0_ns=t0_ns,
        end_ns=end_ns,
        # Plain generate advances every row in lockstep, so each row shares the step's stamp.
        token_timestamps_ns=tuple(stamps for _ in range(batch_size)),
        # Each row's real prompt: left padding (varying prompt lengths) is not a prompt token.
        prompt_tokens=tuple(int(n) for n in attention_mask.sum(dim=1).tolist()),
        generated_tokens=tuple(generated for _ in range(batch_size)),
        output_shape=tuple(int(n) for n in output.shape),
        decoded_sample=sample,
        sample_token_ids=sample_ids,
    )
