"""A minimal HTTP/1.1 client on raw asyncio streams, made for timing server-sent events.

Why not aiohttp or httpx: ``benchmarks/serving_client.py`` measured them against this client on the mock (the
figures are in the README); a raw stream read is stamped the instant it returns, with no buffering layer between
the socket and the stamp, no redirect following (only the given host is ever contacted), a bounded line length
(a gigantic SSE line is an error, not a memory blow-up), and no dependency. It speaks just what an
OpenAI-compatible endpoint needs: a POST or GET with a JSON body, a response with Content-Length, chunked
transfer encoding or a body until close; keep-alive connections reused by one request at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

from tokbench.clock import Clock, perf_counter_ns
from tokbench.errors import TokbenchError

READ_SIZE = 256 * 1024
MAX_HEAD_BYTES = 64 * 1024


class EndpointError(TokbenchError):
    """A URL tokbench cannot benchmark (a usage error)."""


class RequestFailed(Exception):
    """One request's failure: ``kind`` is one of ``schema.serving.ERROR_KINDS``."""

    def __init__(self, kind: str, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.http_status = http_status


@dataclass(frozen=True)
class Endpoint:
    """Where requests go: scheme, host, port and the base path (``/v1`` is added by the request builder)."""

    scheme: str
    host: str
    port: int
    base_path: str

    @classmethod
    def parse(cls, url: str) -> Endpoint:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https"):
            raise EndpointError(f"{url!r}: the URL must start with http:// or https://")
        if not parts.hostname:
            raise EndpointError(f"{url!r}: the URL names no host")
        if parts.username or parts.password:
            raise EndpointError("put no credentials in the URL: pass the API key with --api-key-env or --api-key-file")
        if parts.query or parts.fragment:
            raise EndpointError(f"{url!r}: give the server's base URL without a query")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as error:
            raise EndpointError(f"{url!r}: {error}") from error
        base = parts.path.rstrip("/")
        if base.endswith("/v1"):
            base = base[: -len("/v1")]
        return cls(parts.scheme, parts.hostname, port, base)

    @property
    def origin(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url(self, path: str) -> str:
        return f"{self.origin}{self.base_path}{path}"


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    first_byte_ns: int


class Connection:
    """One keep-alive connection to the endpoint's host (never any other)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.reusable = True

    @classmethod
    async def open(cls, endpoint: Endpoint, timeout_s: float) -> Connection:
        context = ssl.create_default_context() if endpoint.scheme == "https" else None
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(endpoint.host, endpoint.port, ssl=context, limit=READ_SIZE), timeout_s
            )
        except ConnectionRefusedError as error:
            raise RequestFailed("connection_refused", f"connection refused by {endpoint.origin}") from error
        except asyncio.TimeoutError as error:
            raise RequestFailed("timeout", f"no connection to {endpoint.origin} within {timeout_s:g} s") from error
        except OSError as error:
            raise RequestFailed("connection_error", f"cannot connect to {endpoint.origin}: {error}") from error
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delay on small requests
        return cls(reader, writer)

    def close(self) -> None:
        self.reusable = False
        with contextlib.suppress(Exception):  # closing a broken socket may raise anything; it is closed either way
            self.writer.close()

    def send(self, endpoint: Endpoint, method: str, path: str, body: bytes, headers: dict[str, str]) -> None:
        host = f"[{endpoint.host}]" if ":" in endpoint.host else endpoint.host
        lines = [f"{method} {endpoint.base_path}{path} HTTP/1.1", f"host: {host}:{endpoint.port}",
                 f"content-length: {len(body)}", "accept: text/event-stream, application/json"]  # fmt: skip
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body:
            lines.append("content-type: application/json")
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)

    async def read_head(self, clock: Clock = perf_counter_ns) -> Response:
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError as error:
            raise RequestFailed("malformed_stream", "response headers longer than the read limit") from error
        except asyncio.IncompleteReadError as error:
            raise RequestFailed("disconnected", "the server closed the connection before answering") from error
        first_byte_ns = clock()
        lines = head.decode("latin-1").split("\r\n")
        try:
            _, code, *_ = lines[0].split(" ", 2)
            status = int(code)
        except ValueError as error:
            raise RequestFailed("malformed_stream", f"not an HTTP status line: {lines[0][:80]!r}") from error
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if sep:
                headers[name.strip().lower()] = value.strip()
        if headers.get("connection", "").lower() == "close":
            self.reusable = False
        return Response(status, headers, first_byte_ns)


class BodyDecoder:
    """Turns raw reads into body bytes: chunked, Content-Length, or until close."""

    def __init__(self, headers: dict[str, str]) -> None:
        self.chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        length = headers.get("content-length")
        self.remaining = int(length) if length is not None and not self.chunked else None
        self.buffer = b""
        self.done = self.remaining == 0
        self._chunk_left = 0

    def feed(self, data: bytes) -> bytes:
        if not self.chunked:
            if self.remaining is not None:
                data = data[: self.remaining]
                self.remaining -= len(data)
                self.done = self.remaining == 0
            return data
        self.buffer += data
        out = []
        while True:
            if self._chunk_left > 0:
                take = self.buffer[: self._chunk_left]
                out.append(take)
                self._chunk_left -= len(take)
                self.buffer = self.buffer[len(take) :]
                if self._chunk_left > 0:
                    break
                continue
            if self._chunk_left == 0 and self.buffer.startswith(b"\r\n"):
                self.buffer = self.buffer[2:]
            line_end = self.buffer.find(b"\r\n")
            if line_end < 0:
                if len(self.buffer) > 1024:
                    raise RequestFailed("malformed_stream", "a chunk size line is longer than 1 KiB")
                break
            size_text = self.buffer[:line_end].split(b";")[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError as error:
                raise RequestFailed("malformed_stream", f"bad chunk size {size_text[:20]!r}") from error
            self.buffer = self.buffer[line_end + 2 :]
            if size == 0:
                self.done = True
                break
            self._chunk_left = size
        return b"".join(out)


class EventSplitter:
    """Splits a body into SSE events (blank-line separated), refusing any event longer than ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.pending = b""

    def feed(self, data: bytes) -> list[bytes]:
        text = self.pending + data
        if b"\r" in text:
            text = text.replace(b"\r\n", b"\n")
        events = text.split(b"\n\n")
        self.pending = events.pop()
        if len(self.pending) > self.max_bytes:
            raise RequestFailed("line_too_long", f"an SSE event longer than {self.max_bytes:,} bytes")
        return [event for event in events if event]


async def read_body(
    connection: Connection, decoder: BodyDecoder, on_data: Callable[[bytes, int], None], stall_s: float,
    clock: Clock = perf_counter_ns,
) -> int:  # fmt: skip
    """Read the body to its end, calling ``on_data(bytes, arrival_ns)`` for each read; returns the read count."""
    reads = 0
    while not decoder.done:
        try:
            data = await asyncio.wait_for(connection.reader.read(READ_SIZE), stall_s)
        except asyncio.TimeoutError as error:
            raise RequestFailed("stalled", f"no byte for {stall_s:g} s mid-stream") from error
        except (ConnectionError, OSError) as error:
            raise RequestFailed("disconnected", f"connection lost mid-stream: {error}") from error
        arrival = clock()
        if not data:
            if decoder.chunked or decoder.remaining:
                raise RequestFailed("disconnected", "the server closed the connection mid-stream")
            connection.reusable = False
            break
        reads += 1
        on_data(decoder.feed(data), arrival)
    return reads
