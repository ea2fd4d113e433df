"""The endpoint's capabilities, probed before any load: what its stream looks like and what it refuses.

A few short requests find out: the served models, whether the chat stream opens with a role-only chunk, whether
it ends with ``[DONE]``, whether usage comes in the stream (and per chunk, vLLM's ``continuous_usage_stats``),
which request fields it rejects (HTTP 4xx, e.g. transformers serve's 422 for unknown fields), which field makes
it generate exactly N tokens (``ignore_eos``, ``min_tokens``, transformers' ``generation_config``) and whether it
reads the prompt as long as the client built it. What the workload needs and the server cannot do becomes a
skip reason: the run is recorded as skipped, never run as a silently different workload.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

from tokbench.clock import Clock, perf_counter_ns
from tokbench.schema.serving import EndpointCapabilities
from tokbench.serving.client import (
    EventTokenCounter,
    RequestSpec,
    StreamOutcome,
    build_payload,
    count_event_tokens,
    request_headers,
    stream_request,
)
from tokbench.serving.http import BodyDecoder, Connection, Endpoint, RequestFailed, read_body

FIXED_LENGTH_FIELDS = ("ignore_eos", "min_tokens", "generation_config")
PROBE_TOKENS = 8
STREAM_OPTIONS = {"include_usage": True, "continuous_usage_stats": True}


@dataclass(frozen=True)
class ProbeNeeds:
    """What the workload asks of the server."""

    api: str
    model: str | None
    probe: RequestSpec  # a short request of the workload's kind
    fixed_output: bool = True  # exact output lengths (else the server may stop early; recorded per request)
    check_prompt_tokens: bool = True  # the client built exact-length prompts with the model's tokenizer


async def _probe(
    endpoint: Endpoint, api: str, payload: dict[str, Any], api_key: str | None, timeout_s: float, clock: Clock
) -> StreamOutcome:
    outcome = StreamOutcome(intended_ns=clock())
    connection = await Connection.open(endpoint, timeout_s)
    try:
        body = json.dumps(payload).encode()
        await asyncio.wait_for(
            stream_request(connection, endpoint, api, body, request_headers(api_key, -1), outcome, stall_s=timeout_s,
                           clock=clock),
            timeout_s,
        )  # fmt: skip
    except RequestFailed as error:
        outcome.status, outcome.error, outcome.http_status = error.kind, str(error), error.http_status
    except asyncio.TimeoutError:
        outcome.status, outcome.error = "timeout", f"no answer within {timeout_s:g} s"
    finally:
        connection.close()
    return outcome


async def list_models(endpoint: Endpoint, api_key: str | None, timeout_s: float) -> tuple[str, ...]:
    """The ids ``GET /v1/models`` lists (empty when the server has no such route)."""
    connection = await Connection.open(endpoint, timeout_s)
    try:
        headers = {"authorization": f"Bearer {api_key}"} if api_key else {}
        connection.send(endpoint, "GET", "/v1/models", b"", headers)
        response = await asyncio.wait_for(connection.read_head(), timeout_s)
        body = bytearray()
        decoder = BodyDecoder(response.headers)
        await asyncio.wait_for(read_body(connection, decoder, lambda data, _: body.extend(data), timeout_s), timeout_s)
        if response.status != 200:
            return ()
        data = json.loads(bytes(body))
        return tuple(str(m.get("id")) for m in data.get("data", []) if isinstance(m, dict) and m.get("id"))
    except (RequestFailed, ValueError, asyncio.TimeoutError, AttributeError):
        return ()
    finally:
        connection.close()


async def check_endpoint(
    endpoint: Endpoint, needs: ProbeNeeds, api_key: str | None, counter: EventTokenCounter | None,
    timeout_s: float = 60.0, clock: Clock = perf_counter_ns,
) -> tuple[EndpointCapabilities, str]:  # fmt: skip
    """The capabilities and the model name to send (the one given, else the first the server lists)."""
    start = clock()
    models = await list_models(endpoint, api_key, timeout_s)
    model = needs.model or (models[0] if models else "")
    skips: list[str] = []
    notes: list[str] = []
    rejected: list[str] = []
    if not model:
        skips.append("the server lists no model and none was given: pass --model")
        return EndpointCapabilities(api=needs.api, models=models, skip_reasons=tuple(skips)), model
    base = build_payload(needs.api, model, needs.probe, None, STREAM_OPTIONS)
    first = await _probe(endpoint, needs.api, base, api_key, timeout_s, clock)
    stream_options = True
    if first.status in ("http_4xx",):
        rejected.append("stream_options")
        base.pop("stream_options")
        first = await _probe(endpoint, needs.api, base, api_key, timeout_s, clock)
        stream_options = False
    if first.status != "ok":
        skips.append(f"a plain streaming {needs.api} request failed: {first.status}: {first.error}")
        return EndpointCapabilities(api=needs.api, models=models, rejected_fields=tuple(rejected),
                                    skip_reasons=tuple(skips), elapsed_ns=clock() - start), model  # fmt: skip
    per_chunk = bool(first.usage_tokens) and all(isinstance(v, int) for v in first.usage_tokens)
    fixed_field, honoured = await _find_fixed_length(endpoint, needs, model, api_key, counter, timeout_s, clock,
                                                     stream_options, rejected)  # fmt: skip
    if needs.fixed_output and not honoured:
        skips.append(
            f"the server does not generate exactly the asked output length with any of {', '.join(FIXED_LENGTH_FIELDS)}"
            " (rejected or ignored): pass --allow-early-stop to measure what it generates"
        )
    prompt_ok = None
    if needs.check_prompt_tokens and first.usage_prompt_tokens is not None:
        prompt_ok = first.usage_prompt_tokens == needs.probe.prompt_tokens
        if not prompt_ok:
            skips.append(
                f"the server read {first.usage_prompt_tokens} prompt tokens where the client built "
                f"{needs.probe.prompt_tokens} with the model's tokenizer: its tokenizer or chat template differs "
                "(pass the served model's tokenizer with --tokenizer)"
            )
    elif needs.check_prompt_tokens:
        notes.append("the server reports no prompt tokens: input lengths are the client's count")
    if first.usage_completion_tokens is None and not per_chunk:
        notes.append("no usage in the stream: output tokens are counted with the tokenizer on the text")
    capabilities = EndpointCapabilities(
        api=needs.api, streams=True, role_only_first_chunk=first.role_only_first_chunk if needs.api == "chat" else None,
        done_sentinel=first.saw_done, usage_in_stream=first.usage_completion_tokens is not None,
        usage_per_chunk=per_chunk, rejected_fields=tuple(rejected), fixed_output_field=fixed_field,
        fixed_output_honoured=honoured, prompt_tokens_honoured=prompt_ok, models=models,
        skip_reasons=tuple(skips), notes=tuple(notes), elapsed_ns=clock() - start,
    )  # fmt: skip
    return capabilities, model


async def _find_fixed_length(
    endpoint: Endpoint, needs: ProbeNeeds, model: str, api_key: str | None, counter: EventTokenCounter | None,
    timeout_s: float, clock: Clock, stream_options: bool, rejected: list[str],
) -> tuple[str | None, bool | None]:  # fmt: skip
    """The first field that is accepted and gives exactly the asked tokens, and whether one did."""
    for name in FIXED_LENGTH_FIELDS:
        payload = build_payload(needs.api, model, needs.probe, name, STREAM_OPTIONS if stream_options else None)
        outcome = await _probe(endpoint, needs.api, payload, api_key, timeout_s, clock)
        if outcome.status == "http_4xx":
            rejected.append(name)
            continue
        if outcome.status != "ok":
            continue
        counted = sum(count_event_tokens(outcome, counter)[0])
        generated = outcome.usage_completion_tokens if outcome.usage_completion_tokens is not None else counted
        if generated == needs.probe.output_tokens:
            return name, True
    return None, False
