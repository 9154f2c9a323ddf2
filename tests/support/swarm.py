"""Many cheap raw subscribers: one asyncio Protocol per stream, no HTTP client objects, for thousands of streams."""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson


class RawStream(asyncio.Protocol):
    """A GET on a stream path over its own socket: the status, and how many event lines arrived."""

    def __init__(self, request: bytes, *, measure: bool = False) -> None:
        self.request = request
        self.measure = measure
        # With `measure`: (sent_ns, publish-to-receive ms) of each event carrying `sent_ns`.
        self.latencies: list[tuple[int, float]] = []
        self.status: int | None = None
        self.events = 0
        self.head = asyncio.get_running_loop().create_future()
        self.closed = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self._buffer = b""
        self._body = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if self._body:
            self.events += data.count(b'"data":')
            if self.measure:
                self._latencies(data)
            return
        self._buffer += data
        end = self._buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        self.status = int(self._buffer.split(b" ", 2)[1])
        rest = self._buffer[end + 4 :]
        self._buffer = b""
        self._body = True
        self.events += rest.count(b'"data":')
        if self.measure:
            self._latencies(rest)
        if not self.head.done():
            self.head.set_result(self.status)

    def _latencies(self, data: bytes) -> None:
        # Each event is one NDJSON line inside the chunked body (frames never span chunks).
        now = time.perf_counter_ns()
        for line in data.split(b"\n"):
            if line.startswith(b"{") and b'"sent_ns"' in line:
                sent = orjson.loads(line)["data"]["sent_ns"]
                self.latencies.append((sent, (now - sent) / 1e6))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.head.done():
            self.head.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def stream_request(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/x-ndjson\r\n\r\n".encode()


async def open_streams(
    port: int, count: int, path: str, *, sources: list[str] | None = None, parallel: int = 200, measure: bool = False
) -> list[RawStream]:
    """Open `count` streams (each waits for its response head), spread over `sources` local addresses."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(parallel)
    request = stream_request(path)

    async def one(n: int) -> RawStream:
        async with gate:
            local = (sources[n % len(sources)], 0) if sources else None
            _, stream = await loop.create_connection(
                lambda: RawStream(request, measure=measure), "127.0.0.1", port, local_addr=local
            )
            async with asyncio.timeout(30):
                await stream.head
            return stream

    return list(await asyncio.gather(*[one(n) for n in range(count)]))


def close_all(streams: list[RawStream]) -> None:
    for stream in streams:
        with contextlib.suppress(Exception):
            stream.close()


def p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] if ordered else float("nan")
