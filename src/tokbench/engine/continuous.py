"""Continuous batching: one manager built and warmed up once, reused by every timed call.

The seeds' system called ``generate_batch`` inside every timed call, so each "latency" included
allocating the paged KV cache and warming up. Here ``ContinuousBatchingSession.open`` creates the
manager (``model.init_continuous_batching``), warms it up and starts its generation thread once,
timed as its own phase (``ContinuousBatchingSetup``); ``generate_once`` then submits the config's
requests and returns a ``GenerationTrace`` with per-request submission / finish instants, so the
same metric definitions apply as on the plain path.

Sizing: with no sizing the library fills 60 % of free RAM on CPU with KV cache (GiBs for a 7M-param
model); ``cache_sizing`` derives the page size, number of blocks and batch limits from the workload
(every request's prompt + new tokens fit at once, all prefills fit in one step), each overridable
through the ``cb_*`` config fields.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from itertools import pairwise
from math import ceil
from typing import Any

from tokbench.clock import Clock, perf_counter_ns
from tokbench.config import BenchmarkConfig
from tokbench.engine import compat
from tokbench.engine.gradmode import GradModeProbe, check_grad_mode, grad_mode_context, run_grad_mode
from tokbench.engine.loading import LoadedModel
from tokbench.errors import GenerationError, UnavailableFeatureError
from tokbench.hardware.devices import synchronize
from tokbench.schema.records import ContinuousBatchingSetup, GenerationTrace
from tokbench.schema.serde import Record

# The FIFO scheduler stops admitting new prefills when fewer than 15 % of the blocks are free; the cache
# gets this much headroom so every request of a call is admitted at once.
_BLOCK_HEADROOM = 1.25
_MAX_DERIVED_PAGE_SIZE = 256  # the library's default page size
_MIN_DERIVED_PAGE_SIZE = 16
_RESULT_POLL_S = 0.5
DEFAULT_CALL_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class CacheSizing(Record):
    """The paged cache and batch limits the manager is created with (stored in the setup's settings)."""

    page_size: int
    num_blocks: int
    max_batch_tokens: int
    max_requests_per_batch: int


def _next_power_of_two(value: int) -> int:
    return 1 << max(0, value - 1).bit_length()


def cache_sizing(config: BenchmarkConfig) -> CacheSizing:
    """Sizing for ``config``'s workload (``profile_tokens`` included); a ``cb_*`` field set in the config wins.

    - page size: the longest request rounded up to a power of two, within 16..256 tokens;
    - blocks: every request's prompt + generated tokens at once, plus headroom for the scheduler margin;
    - batch tokens: all prompts prefilled in one step; requests per batch: all of them.
    """
    lengths = config.prompt_lengths
    generated = max(config.new_tokens, config.profile_tokens)
    longest = max(lengths) + generated
    page_size = config.cb_page_size or min(
        _MAX_DERIVED_PAGE_SIZE, max(_MIN_DERIVED_PAGE_SIZE, _next_power_of_two(longest))
    )
    blocks_needed = sum(ceil((length + generated) / page_size) for length in lengths)
    return CacheSizing(
        page_size=page_size,
        num_blocks=config.cb_num_blocks or ceil(blocks_needed * _BLOCK_HEADROOM) + 1,
        max_batch_tokens=config.cb_max_batch_tokens or max(sum(lengths), len(lengths)),
        max_requests_per_batch=config.cb_max_requests_per_batch or len(lengths),
    )


def _generation_config(new_tokens: int, pad_token_id: int) -> Any:
    from transformers import GenerationConfig

    # eos_token_id -1 is the library's "no EOS": every request generates exactly max_new_tokens.
    return GenerationConfig(
        max_new_tokens=new_tokens, do_sample=False, num_beams=1, eos_token_id=-1, pad_token_id=pad_token_id
    )


class ContinuousBatchingSession:
    """A started continuous-batching manager for one loaded model and config; close it when done.

    Use as a context manager: ``with ContinuousBatchingSession.open(loaded, config) as session``.
    """

    def __init__(
        self,
        manager: Any,
        loaded: LoadedModel,
        config: BenchmarkConfig,
        setup: ContinuousBatchingSetup,
        clock: Clock,
        original_attention: str,
    ) -> None:
        self._manager: Any = manager
        self._original_attention = original_attention
        self._loaded = loaded
        self._config = config
        self._clock = clock
        self._calls = 0
        self.setup = setup
        self.requests = loaded.inputs.request_token_ids()
        # The generation thread's grad mode, seen by its first forward (then the probe's hook is gone).
        self._grad_mode_probe: GradModeProbe | None = GradModeProbe(loaded.model).__enter__()

    @classmethod
    def open(
        cls,
        loaded: LoadedModel,
        config: BenchmarkConfig,
        clock: Clock = perf_counter_ns,
    ) -> ContinuousBatchingSession:
        """Create, size, warm up and start the manager; the whole setup is timed as one phase.

        An attention implementation the library cannot batch (flex_attention) raises
        ``UnavailableFeatureError`` with the library's own reason.
        """
        from transformers import ContinuousBatchingConfig

        if clock is not perf_counter_ns:
            raise GenerationError(
                "continuous batching stamps tokens inside transformers with time.perf_counter; "
                "it can only be timed with tokbench's real clock (perf_counter_ns)"
            )
        model = loaded.model
        if getattr(model.config, "kv_lora_rank", None):
            # Found running tiny-mla: the manager's index_copy_ into its pages fails with a shape error.
            raise UnavailableFeatureError(
                "continuous_batching",
                "transformers' paged KV cache holds num_key_value_heads × head_dim per position, but multi-head "
                "latent attention (DeepSeek-V2/V3) caches keys and values of other widths (qk_nope + qk_rope, "
                "v_head_dim): the manager fails on them",
                "run this model without --continuous-batching",
            )
        original_attention = compat.attention_implementation(model)
        sizing = cache_sizing(config)
        batching_config = ContinuousBatchingConfig(
            page_size=sizing.page_size,
            num_blocks=sizing.num_blocks,
            max_batch_tokens=sizing.max_batch_tokens,
            max_requests_per_batch=sizing.max_requests_per_batch,
            # Identical prompts every iteration: prefix sharing would serve later iterations' prefills from
            # the cache of earlier ones, which plain generate never does.
            allow_block_sharing=False,
            # Run the attention the config names, not a flash implementation that happens to be installed.
            auto_switch_to_flash=False,
            seed=config.seed,
        )
        hints = compat.continuous_batching_workload_hints(
            max(config.prompt_lengths), max(config.new_tokens, config.profile_tokens), config.batch_size
        )
        generation_config = _generation_config(config.new_tokens, _pad_token_id(loaded))
        synchronize(loaded.device)
        start_ns = clock()
        # The manager's thread runs in the grad mode of the thread that starts it (transformers 5.x:
        # ContinuousBatchingManager.start reads torch.is_inference_mode_enabled()), and its paged cache is
        # made by warmup here: both under the config's mode, so the cache's tensors and the loop agree.
        grad_mode = grad_mode_context(run_grad_mode(config)[0])
        grad_mode.__enter__()
        try:
            manager = model.init_continuous_batching(
                generation_config=generation_config, continuous_batching_config=batching_config, workload_hints=hints
            )
        except ValueError as error:  # the library refuses this model / attention for continuous batching
            _restore_attention(model, original_attention)
            field_name = "attn_implementation" if config.attn_implementation in str(error) else "continuous_batching"
            grad_mode.__exit__(None, None, None)
            raise UnavailableFeatureError(
                field_name,
                f"transformers' continuous batching refused it: {str(error).strip()}",
                "use sdpa or eager attention with continuous batching",
            ) from error
        try:
            manager.warmup()  # allocates the paged cache (and captures graphs / compiles where enabled)
            manager.start()
        except BaseException:
            with contextlib.suppress(Exception):
                manager.stop(block=True)
            _restore_attention(model, original_attention)
            raise
        finally:
            grad_mode.__exit__(None, None, None)
        synchronize(loaded.device)
        end_ns = clock()
        settings = {
            "requested": sizing.to_dict(),
            "resolved": _resolved_settings(manager.continuous_batching_config),
        }
        setup = ContinuousBatchingSetup(start_ns, end_ns, compat.attention_implementation(model), settings)
        return cls(manager, loaded, config, setup, clock, original_attention)

    def __enter__(self) -> ContinuousBatchingSession:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the generation thread, free the cache and give the model its attention implementation back."""
        manager, self._manager = self._manager, None
        if manager is None:
            return
        if self._grad_mode_probe is not None:
            self._grad_mode_probe.__exit__(None, None, None)
        try:
            manager.stop(block=True, timeout=60)
            manager.destroy()
        finally:
            _restore_attention(self._loaded.model, self._original_attention)

    def generate_once(self, decode_sample: bool = False, new_tokens: int | None = None) -> GenerationTrace:
        """Submit every request, wait for all of them, and return the call's trace.

        Each request's token stamps are the library's (taken in the generation thread right after the
        token reached the host); submission and finish instants are tokbench's own, on the same clock.
        A wrong token count, a failed request or a stamp outside its request's window raises.
        """
        if self._manager is None:
            raise GenerationError("the continuous-batching session is closed")
        new_tokens = self._config.new_tokens if new_tokens is None else new_tokens
        manager, clock = self._manager, self._clock
        self._calls += 1
        ids = [f"tokbench-{self._calls}-{row}" for row in range(len(self.requests))]
        row_of = {request_id: row for row, request_id in enumerate(ids)}
        submitted = [0] * len(ids)
        finished = [0] * len(ids)
        outputs: list[Any] = [None] * len(ids)

        synchronize(self._loaded.device)
        t0_ns = clock()
        for row, (request_id, prompt) in enumerate(zip(ids, self.requests, strict=True)):
            submitted[row] = clock()
            accepted = manager.add_request(
                prompt, request_id=request_id, max_new_tokens=new_tokens, record_timestamps=True, eos_token_id=-1
            )
            if accepted is None:
                raise GenerationError(f"the continuous-batching manager refused request {request_id}")
        remaining = len(ids)
        deadline_ns = t0_ns + int(DEFAULT_CALL_TIMEOUT_S * 1e9)
        while remaining:
            output = manager.get_result(timeout=_RESULT_POLL_S)
            now_ns = clock()
            if output is None:
                if not manager.is_running():
                    raise GenerationError("the continuous-batching generation thread stopped with requests pending")
                if now_ns > deadline_ns:
                    raise GenerationError(f"{remaining} requests unfinished after {DEFAULT_CALL_TIMEOUT_S:.0f} s")
                continue
            row = row_of.get(output.request_id)
            if row is None or not output.is_finished() or outputs[row] is not None:
                continue  # a stale output of an earlier, failed call
            finished[row], outputs[row] = now_ns, output
            remaining -= 1
        synchronize(self._loaded.device)
        end_ns = clock()
        if self._grad_mode_probe is not None:  # once: the thread's mode cannot change while it runs
            probe, self._grad_mode_probe = self._grad_mode_probe, None
            probe.__exit__(None, None, None)
            check_grad_mode(run_grad_mode(self._config)[0], probe.seen, "the continuous-batching generation thread")

        stamps = tuple(
            _checked_stamps(output, new_tokens, submitted[row], finished[row]) for row, output in enumerate(outputs)
        )
        sample_ids: tuple[int, ...] = ()
        sample = ""
        if decode_sample:
            sample_ids = tuple(int(n) for n in outputs[0].generated_tokens)
            if self._loaded.tokenizer is not None:
                sample = self._loaded.tokenizer.decode(sample_ids, skip_special_tokens=True)
        return GenerationTrace(
            t0_ns=t0_ns,
            end_ns=end_ns,
            token_timestamps_ns=stamps,
            prompt_tokens=tuple(len(prompt) for prompt in self.requests),
            generated_tokens=tuple(len(output.generated_tokens) for output in outputs),
            output_shape=(len(self.requests), max(len(prompt) for prompt in self.requests) + new_tokens),
            decoded_sample=sample,
            sample_token_ids=sample_ids,
            request_submitted_ns=tuple(submitted),
            request_finished_ns=tuple(finished),
        )


def _checked_stamps(output: Any, new_tokens: int, submitted_ns: int, finished_ns: int) -> tuple[int, ...]:
    if output.error is not None:
        raise GenerationError(f"request {output.request_id} failed in the continuous-batching loop: {output.error}")
    generated = len(output.generated_tokens)
    raw = output.timestamps or []
    if generated != new_tokens or len(raw) != new_tokens:
        raise GenerationError(
            f"asked for exactly {new_tokens} new tokens per request, request {output.request_id} got {generated} "
            f"tokens and {len(raw)} timestamps"
        )
    stamps = tuple(compat.continuous_batching_stamp_ns(seconds) for seconds in raw)
    ordered = all(earlier <= later for earlier, later in pairwise(stamps))
    if not (ordered and submitted_ns <= stamps[0] and stamps[-1] <= finished_ns):
        raise GenerationError(
            f"request {output.request_id}'s token stamps do not lie between its submission and its result "
            "(transformers no longer stamps with time.perf_counter?)"
        )
    return stamps


def _resolved_settings(batching_config: Any) -> dict[str, Any]:
    names = (
        "page_size", "num_blocks", "max_batch_tokens", "max_requests_per_batch", "max_blocks_per_request",
        "max_memory_percent", "allow_block_sharing", "use_async_batching", "use_cuda_graph", "scheduler_type",
    )  # fmt: skip
    settings: dict[str, Any] = {}
    for name in names:
        value = getattr(batching_config, name, None)
        settings[name] = list(value) if isinstance(value, tuple) else value
    return settings


def _pad_token_id(loaded: LoadedModel) -> int:
    pad = getattr(loaded.generation_config, "pad_token_id", None)
    return int(pad) if pad is not None else 0


def _restore_attention(model: Any, attention: str) -> None:
    if compat.attention_implementation(model) != attention:
        model.set_attn_implementation(attention)
