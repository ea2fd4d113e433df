"""A scripted OpenAI-compatible server (stdlib asyncio): the truth source for the serving client's tests.

It streams ``/v1/completions`` and ``/v1/chat/completions`` with scripted delays (time to the first event, a gap
per token), ``k`` tokens per event, an optional role-only first chunk, ``data: [DONE]`` or not, usage in the final
chunk or in every chunk (vLLM's continuous_usage_stats), and a known capacity: at most ``capacity`` requests
generate at once, the rest wait in FIFO order, so its service rate is ``capacity / service time``. Faults are
scripted by arrival order (HTTP errors, 429, a connection dropped mid-stream, malformed or gigantic lines, a
stall). It records, per request, when it read the request and when it wrote each event (``perf_counter_ns``,
the clock the client uses: on Linux one CLOCK_MONOTONIC for every process), served at ``GET /mock/log``.

    python -m tokbench.serving.mock --port 0 --ttft-ms 20 --tpot-ms 5 --tokens-per-event 2
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

FAULTS = (
    "http_500", "http_429", "http_422", "die_mid_stream", "malformed", "gigantic_line", "stall", "close_at_once",
    "redirect",
)  # fmt: skip
WORD = "tok"  # every token is this text followed by a space: one token per word, countable without a tokenizer


@dataclass(frozen=True)
class MockScript:
    """How the mock answers. Times in microseconds; output length from the request's max_tokens when given."""

    ttft_us: int = 0  # after the request is admitted (capacity) until the first content event
    tpot_us: int = 0  # between consecutive tokens (an event of k tokens waits k gaps)
    tokens_per_event: int = 1
    default_output_tokens: int = 16
    role_chunk: bool = True  # chat: a role-only chunk before generation, as transformers serve and vLLM send
    send_done: bool = True
    usage: str = "final"  # "final" | "continuous" | "none" | "requested" (only with stream_options.include_usage)
    capacity: int = 0  # requests generating at once; 0 = unlimited
    rejected_fields: tuple[str, ...] = ()  # request fields answered with 422 (as transformers serve does)
    honour_fixed_length: bool = True  # with ignore_eos / min_tokens: exactly max_tokens; else a scripted early stop
    early_stop_tokens: int = 0  # without a fixed-length field, stop after this many tokens (0 = never early)
    faults: Mapping[int, str] = field(default_factory=dict)  # 0-based arrival order -> fault name
    gigantic_bytes: int = 4 * 1024 * 1024
    model: str = "mock-model"

    def to_json(self) -> str:
        data = asdict(self)
        data["faults"] = {str(k): v for k, v in self.faults.items()}
        return json.dumps(data)

    @classmethod
    def from_json(cls, text: str) -> MockScript:
        data = json.loads(text)
        data["faults"] = {int(k): v for k, v in data.get("faults", {}).items()}
        data["rejected_fields"] = tuple(data.get("rejected_fields", ()))
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass
class ServedRequest:
    arrival: int
    request_id: str
    path: str
    received_ns: int
    admitted_ns: int = 0
    write_ns: list[int] = field(default_factory=list)  # each content event's write
    event_tokens: list[int] = field(default_factory=list)
    fault: str = ""


class MockServer:
    """The server: ``await start()`` then ``port``; ``log`` holds every request served."""

    def __init__(self, script: MockScript, host: str = "127.0.0.1", port: int = 0, reuse_port: bool = False) -> None:
        self.script = script
        self.host, self.port = host, port
        self.reuse_port = reuse_port
        self.log: list[ServedRequest] = []
        self._arrivals = 0
        self._slots = asyncio.Semaphore(script.capacity) if script.capacity > 0 else None
        self._server: asyncio.base_events.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve_connection, self.host, self.port, reuse_port=self.reuse_port or None, limit=2**20
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)

    async def _serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                received_ns = time.perf_counter_ns()
                method, path, headers = _parse_head(head)
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                keep = await self._dispatch(method, path, headers, body, received_ns, writer)
                if not keep:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    async def _dispatch(
        self, method: str, path: str, headers: dict[str, str], body: bytes, received_ns: int,
        writer: asyncio.StreamWriter,
    ) -> bool:  # fmt: skip
        if method == "GET" and path == "/health":
            return _reply(writer, 200, b'{"status":"ok"}')
        if method == "GET" and path == "/v1/models":
            models = {"object": "list", "data": [{"id": self.script.model, "object": "model", "owned_by": "tokbench"}]}
            return _reply(writer, 200, json.dumps(models).encode())
        if method == "GET" and path == "/mock/log":
            return _reply(writer, 200, json.dumps([asdict(r) for r in self.log]).encode())
        if method == "POST" and path in ("/v1/completions", "/v1/chat/completions"):
            return await self._generate(path, headers, body, received_ns, writer)
        return _reply(writer, 404, b'{"error":"not found"}')

    async def _generate(
        self, path: str, headers: dict[str, str], body: bytes, received_ns: int, writer: asyncio.StreamWriter
    ) -> bool:
        arrival = self._arrivals
        self._arrivals += 1
        fault = self.script.faults.get(arrival, "")
        served = ServedRequest(arrival, headers.get("x-request-id", str(arrival)), path, received_ns, fault=fault)
        self.log.append(served)
        try:
            request = json.loads(body or b"{}")
        except json.JSONDecodeError:
            return _reply(writer, 400, b'{"error":"body is not JSON"}')
        rejected = sorted(set(request) & set(self.script.rejected_fields))
        if rejected or fault == "http_422":
            return _reply(writer, 422, json.dumps({"detail": f"Unexpected fields in the request: {rejected}"}).encode())
        if fault in ("http_500", "http_429"):
            return _reply(writer, int(fault[-3:]), b'{"error":"scripted"}')
        if fault == "close_at_once":
            return False
        if fault == "redirect":  # to another host: a client that follows it would leak the request (and its key)
            writer.write(b"HTTP/1.1 307 Temporary Redirect\r\nlocation: http://192.0.2.1/v1/completions\r\n"
                         b"content-length: 0\r\n\r\n")  # fmt: skip
            return True
        if not request.get("stream"):
            return _reply(writer, 400, b'{"error":"the mock only streams"}')
        if self._slots is None:
            return await self._stream(path, request, served, writer)
        async with self._slots:
            return await self._stream(path, request, served, writer)

    def _output_tokens(self, request: dict[str, Any]) -> int:
        script = self.script
        wanted = int(request.get("max_tokens") or request.get("max_completion_tokens") or script.default_output_tokens)
        fixed = bool(request.get("ignore_eos")) or int(request.get("min_tokens") or 0) >= wanted
        if "generation_config" in request:
            settings = json.loads(request["generation_config"])
            wanted = int(settings.get("max_new_tokens", wanted))
            fixed = int(settings.get("min_new_tokens") or 0) >= wanted
        if script.early_stop_tokens and not (fixed and script.honour_fixed_length):
            return min(wanted, script.early_stop_tokens)
        return wanted

    async def _stream(
        self, path: str, request: dict[str, Any], served: ServedRequest, writer: asyncio.StreamWriter
    ) -> bool:
        script, chat = self.script, path.endswith("chat/completions")
        served.admitted_ns = time.perf_counter_ns()
        total = self._output_tokens(request)
        include_usage = script.usage in ("final", "continuous") or (
            script.usage == "requested" and (request.get("stream_options") or {}).get("include_usage")
        )
        continuous = script.usage == "continuous" or (
            script.usage == "requested" and (request.get("stream_options") or {}).get("continuous_usage_stats")
        )
        writer.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")
        if chat and script.role_chunk:
            _write_chunk(writer, _sse(_chunk(chat, script.model, role=True)))
        start = time.perf_counter_ns()
        deadline = start + script.ttft_us * 1000
        sent = 0
        while sent < total:
            tokens = min(script.tokens_per_event, total - sent)
            deadline += (tokens - 1 if sent == 0 else tokens) * script.tpot_us * 1000
            await _sleep_until(deadline)
            if served.fault == "stall" and sent > 0:
                await asyncio.sleep(3600)
            if served.fault == "die_mid_stream" and sent >= total // 2 and sent > 0:
                writer.transport.abort()
                return False
            sent += tokens
            payload = _chunk(chat, script.model, text=(WORD + " ") * tokens,
                             usage=(served.admitted_ns, sent) if continuous else None)  # fmt: skip
            data = _sse(payload)
            if served.fault == "malformed" and sent >= total // 2:
                data = b"data: {not json\n\n"
            if served.fault == "gigantic_line" and sent >= total // 2:
                data = b"data: " + b"x" * script.gigantic_bytes + b"\n\n"
            served.write_ns.append(time.perf_counter_ns())
            served.event_tokens.append(tokens)
            _write_chunk(writer, data)
            await writer.drain()
        final = _chunk(chat, script.model, finish="length", usage=(0, total) if include_usage else None, prompt=request)
        tail = _sse(final) + (b"data: [DONE]\n\n" if script.send_done else b"")
        _write_chunk(writer, tail)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True


async def _sleep_until(deadline_ns: int) -> None:
    remaining = deadline_ns - time.perf_counter_ns()
    if remaining > 0:
        await asyncio.sleep(remaining / 1e9)


def _chunk(
    chat: bool, model: str, *, text: str | None = None, role: bool = False, finish: str | None = None,
    usage: tuple[int, int] | None = None, prompt: Mapping[str, Any] | None = None,
) -> dict[str, Any]:  # fmt: skip
    if chat:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else ({"content": text} if text else {})
        choice: dict[str, Any] = {"index": 0, "delta": delta, "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text or "", "finish_reason": finish}
    chunk: dict[str, Any] = {"id": "mock", "object": "chat.completion.chunk" if chat else "text_completion",
                             "model": model, "choices": [choice]}  # fmt: skip
    if usage is not None:
        prompt_tokens = _prompt_tokens(prompt) if prompt else 0
        chunk["usage"] = {"prompt_tokens": prompt_tokens, "completion_tokens": usage[1],
                          "total_tokens": prompt_tokens + usage[1]}  # fmt: skip
    return chunk


def _prompt_tokens(request: Mapping[str, Any]) -> int:
    if "messages" in request:
        return sum(len(str(m.get("content", "")).split()) for m in request["messages"])
    return len(str(request.get("prompt", "")).split())


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\n\n"


def _write_chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(b"%x\r\n%s\r\n" % (len(data), data))


def _reply(writer: asyncio.StreamWriter, status: int, body: bytes) -> bool:
    reason = {200: "OK", 400: "Bad Request", 404: "Not Found", 422: "Unprocessable Entity", 429: "Too Many Requests",
              500: "Internal Server Error"}.get(status, "Status")  # fmt: skip
    writer.write(
        f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n\r\n".encode()
        + body
    )
    return True


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    lines = head.decode("latin-1").split("\r\n")
    method, path, _ = lines[0].split(" ", 2)
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return method, path, headers


# --- running it ------------------------------------------------------------------------------------------------


class MockThread:
    """The mock in a thread of this process (for tests): ``with MockThread(script) as mock: mock.url``."""

    def __init__(self, script: MockScript) -> None:
        import threading

        self.script = script
        self._loop = asyncio.new_event_loop()
        self._server = MockServer(script)
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tokbench-mock", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.run_until_complete(self._server.start())
        self._ready.set()
        self._loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    @property
    def log(self) -> list[ServedRequest]:
        return list(self._server.log)

    def __enter__(self) -> MockThread:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the mock server did not start")
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    async def _shutdown(self) -> None:
        """Close the listener and end every connection still open (a stalled stream would sleep for an hour)."""
        await self._server.close()
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def _serve_forever(script: MockScript, host: str, port: int, workers: int) -> None:
    server = MockServer(script, host, port, reuse_port=workers > 1)
    await server.start()
    print(f"tokbench mock listening on http://{host}:{server.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tokbench.serving.mock", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--script", help="a MockScript as JSON (overrides the flags below)")
    parser.add_argument("--ttft-ms", type=float, default=0.0)
    parser.add_argument("--tpot-ms", type=float, default=0.0)
    parser.add_argument("--tokens-per-event", type=int, default=1)
    parser.add_argument("--capacity", type=int, default=0)
    parser.add_argument("--no-done", action="store_true")
    parser.add_argument("--usage", choices=("final", "continuous", "none", "requested"), default="final")
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "localhost", "::1"):
        print("the mock serves loopback only", file=sys.stderr)
        return 2
    script = MockScript.from_json(args.script) if args.script else MockScript(
        ttft_us=int(args.ttft_ms * 1000), tpot_us=int(args.tpot_ms * 1000), tokens_per_event=args.tokens_per_event,
        capacity=args.capacity, send_done=not args.no_done, usage=args.usage,
    )  # fmt: skip
    if args.workers > 1 and args.port == 0:
        print("--workers needs a fixed --port", file=sys.stderr)
        return 2
    for _ in range(args.workers - 1):
        if os.fork() == 0:
            break
    asyncio.run(_serve_forever(replace(script), args.host, args.port, args.workers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
