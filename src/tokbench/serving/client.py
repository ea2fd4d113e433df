"""One streaming request to an OpenAI-compatible endpoint: the payload, the stamps, the outcome.

Each SSE event that carries generated text is stamped with the arrival of the socket read that completed it
(integer ns, ``tokbench.clock``). A role-only opening chunk, an empty delta, the final usage chunk and ``[DONE]``
carry no text and are no token events (the role chunk arrives before generation starts: counting it would make
TTFT a round trip). Tokens per event are counted after the stream ends, off the timed path
(``count_event_tokens``): from the server's cumulative usage in each chunk when it sends one, else with the
served model's tokenizer on the growing text (so merges across event boundaries count as the whole text does).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tokbench.clock import Clock, perf_counter_ns
from tokbench.serving.http import BodyDecoder, Connection, Endpoint, EventSplitter, RequestFailed, read_body
from tokbench.text import terminal_safe

DEFAULT_MAX_EVENT_BYTES = 1024 * 1024
API_PATHS = {"completions": "/v1/completions", "chat": "/v1/chat/completions"}


@dataclass(frozen=True)
class RequestSpec:
    """What one request asks: its prompt (text, or chat messages) and its output length."""

    index: int
    prompt: str | list[dict[str, str]]
    prompt_tokens: int
    output_tokens: int
    warmup: bool = False


@dataclass
class StreamOutcome:
    """The raw result of one streamed request (converted to a ``RequestRecord`` by the caller)."""

    intended_ns: int
    sent_ns: int = 0
    end_ns: int = 0
    status: str = "ok"
    error: str | None = None
    http_status: int | None = None
    first_byte_ns: int | None = None
    event_ns: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    usage_tokens: list[int | None] = field(default_factory=list)  # cumulative completion tokens per event
    usage_prompt_tokens: int | None = None
    usage_completion_tokens: int | None = None
    role_only_first_chunk: bool | None = None
    saw_done: bool = False
    finish_reason: str | None = None
    reads: int = 0


def build_payload(
    api: str, model: str, spec: RequestSpec, fixed_field: str | None, stream_options: dict[str, bool] | None
) -> dict[str, Any]:
    """The request body: greedy, ``max_tokens`` = the wanted length, plus the field that fixes it, if any."""
    payload: dict[str, Any] = {"model": model, "stream": True, "max_tokens": spec.output_tokens, "temperature": 0.0}
    if api == "chat":
        messages = spec.prompt if isinstance(spec.prompt, list) else [{"role": "user", "content": spec.prompt}]
        payload["messages"] = messages
    else:
        payload["prompt"] = spec.prompt
    if fixed_field == "ignore_eos":
        payload["ignore_eos"] = True
    elif fixed_field == "min_tokens":
        payload["min_tokens"] = spec.output_tokens
    elif fixed_field == "generation_config":  # transformers serve: a GenerationConfig as a JSON string
        payload.pop("temperature")
        payload["generation_config"] = json.dumps(
            {"max_new_tokens": spec.output_tokens, "min_new_tokens": spec.output_tokens, "do_sample": False}
        )
    if stream_options:
        payload["stream_options"] = dict(stream_options)
    return payload


class EventParser:
    """Reads the JSON of each SSE event into the outcome; an ``error`` object or bad JSON fails the request."""

    def __init__(self, api: str, outcome: StreamOutcome) -> None:
        self.chat = api == "chat"
        self.outcome = outcome
        self.first = True

    def handle(self, event: bytes, arrival_ns: int) -> None:
        for line in event.split(b"\n"):
            if not line.startswith(b"data:"):
                continue  # comments (": ping"), event names, ids: no data
            data = line[5:].strip()
            if data == b"[DONE]":
                self.outcome.saw_done = True
                continue
            try:
                chunk = json.loads(data)
            except ValueError as error:
                raise RequestFailed("malformed_stream", f"an SSE data line is not JSON: {data[:60]!r}") from error
            if not isinstance(chunk, dict):
                raise RequestFailed("malformed_stream", "an SSE data line is not a JSON object")
            if "error" in chunk:
                raise RequestFailed("stream_error", f"the server reported: {str(chunk['error'])[:200]}")
            self._chunk(chunk, arrival_ns)

    def _chunk(self, chunk: dict[str, Any], arrival_ns: int) -> None:
        outcome = self.outcome
        usage = chunk.get("usage")
        completion = usage.get("completion_tokens") if isinstance(usage, dict) else None
        if isinstance(usage, dict):
            outcome.usage_prompt_tokens = usage.get("prompt_tokens", outcome.usage_prompt_tokens)
            outcome.usage_completion_tokens = completion
        choices = chunk.get("choices") or []
        choice = choices[0] if choices and isinstance(choices[0], dict) else {}
        if choice.get("finish_reason"):
            outcome.finish_reason = str(choice["finish_reason"])
        if self.chat:
            delta = choice.get("delta") or {}
            text = delta.get("content") or delta.get("reasoning_content") or ""
            if self.first and choices:
                outcome.role_only_first_chunk = bool(delta.get("role")) and not text
        else:
            text = choice.get("text") or ""
        if choices:
            self.first = False
        if text:
            outcome.event_ns.append(arrival_ns)
            outcome.texts.append(text)
            outcome.usage_tokens.append(completion if isinstance(completion, int) else None)


async def stream_request(
    connection: Connection,
    endpoint: Endpoint,
    api: str,
    payload: bytes,
    headers: dict[str, str],
    outcome: StreamOutcome,
    *,
    stall_s: float,
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    clock: Clock = perf_counter_ns,
) -> None:
    """Send one request on ``connection`` and read its stream into ``outcome`` (raises ``RequestFailed``)."""
    outcome.sent_ns = clock()  # just before the bytes go to the socket: the server cannot read them earlier
    connection.send(endpoint, "POST", API_PATHS[api], payload, headers)
    response = await connection.read_head(clock)
    outcome.first_byte_ns = response.first_byte_ns
    outcome.http_status = response.status
    decoder = BodyDecoder(response.headers)
    if response.status != 200:
        body = bytearray()
        await read_body(connection, decoder, lambda data, _: body.extend(data[:4096]), stall_s, clock)
        if 300 <= response.status < 400:  # never followed: only the given host is ever contacted
            where = terminal_safe(response.headers.get("location", "?"), newlines=False)[:200]
            raise RequestFailed("redirect_refused", f"HTTP {response.status} to {where}: redirects are not followed",
                                response.status)  # fmt: skip
        kind = "http_429" if response.status == 429 else "http_5xx" if response.status >= 500 else "http_4xx"
        detail = terminal_safe(bytes(body[:300]).decode("utf-8", "replace"), newlines=False)
        raise RequestFailed(kind, f"HTTP {response.status}: {detail}", response.status)
    splitter = EventSplitter(max_event_bytes)
    parser = EventParser(api, outcome)

    last_arrival = [0]

    def on_data(data: bytes, arrival_ns: int) -> None:
        last_arrival[0] = arrival_ns
        for event in splitter.feed(data):
            parser.handle(event, arrival_ns)

    outcome.reads = await read_body(connection, decoder, on_data, stall_s, clock)
    if splitter.pending.strip():  # a last event the server closed without its blank line: it came in the last read
        parser.handle(splitter.pending, last_arrival[0])
    outcome.end_ns = clock()


# --- tokens per event, after the stream -------------------------------------------------------------------


# Tokens of each text delta of one answer, counted on the whole answer (merges across deltas count once).
EventTokenCounter = Callable[[Sequence[str]], list[int]]


def count_event_tokens(outcome: StreamOutcome, counter: EventTokenCounter | None) -> tuple[list[int], str]:
    """Tokens of each event and where the counts came from (``schema.serving.TOKENS_FROM_*``)."""
    cumulative = outcome.usage_tokens
    if cumulative and all(isinstance(value, int) for value in cumulative):
        counts, previous = [], 0
        for value in cumulative:
            counts.append(max(0, int(value) - previous))  # type: ignore[arg-type]
            previous = max(previous, int(value))  # type: ignore[arg-type]
        return counts, "usage_deltas"
    if outcome.usage_completion_tokens == len(outcome.texts):
        # as many text events as the server says it generated tokens: every event carried exactly one (an event
        # with text holds at least one token, so none can hold two): exact, whatever re-tokenizing would say
        return [1] * len(outcome.texts), "usage_total"
    if counter is not None:
        return counter(outcome.texts), "tokenizer"
    return [1] * len(outcome.texts), "one_per_event"


def tokenizer_counter(tokenizer: Any) -> EventTokenCounter:
    """The served model's tokenizer on the whole answer once; each token goes to the event that delivered its
    last character (the instant the client could have it)."""

    def count(texts: Sequence[str]) -> list[int]:
        ends, position = [], 0
        for text in texts:
            position += len(text)
            ends.append(position)
        encoded = tokenizer("".join(texts), add_special_tokens=False, return_offsets_mapping=True)
        counts = [0] * len(texts)
        event = 0
        for _, end in encoded["offset_mapping"]:
            while event < len(ends) - 1 and end > ends[event]:
                event += 1
            counts[event] += 1
        return counts

    return count


def word_counter(texts: Sequence[str]) -> list[int]:
    """The mock's tokens: one per space-separated word (``serving.mock.WORD``)."""
    return [len(text.split()) for text in texts]


def short_error(error: BaseException) -> str:
    return terminal_safe(str(error) or type(error).__name__, newlines=False)[:300]


def request_headers(api_key: str | None, index: int) -> dict[str, str]:
    headers = {"x-request-id": f"tokbench-{index}"}
    if api_key:
        headers["authorization"] = f"Bearer {api_key}"
    return headers


def spec_lengths(specs: Sequence[RequestSpec]) -> tuple[list[int], list[int]]:
    return [s.prompt_tokens for s in specs], [s.output_tokens for s in specs]
