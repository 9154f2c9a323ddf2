"""SIGTERM with open streams: every stream ends cleanly with a `shutdown` message and a spread-out reconnect hint,
and the process exits 0 at once rather than at the end of its graceful timeout."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time

import httpx
import orjson
import pytest

from ..support.servers import ProcessServer
from ..support.waiting import eventually

pytestmark = pytest.mark.e2e

RETRY_MS = 1000
GRACE_S = 10.0


async def _read_to_end(response: httpx.Response) -> list[str]:
    """Every line of the stream until the server ends it (a clean end of the chunked body)."""
    return [line async for line in response.aiter_lines()]


async def test_shutdown_sigterm_ends_streams_with_shutdown_and_exits_zero():
    server = ProcessServer("--retry-ms", str(RETRY_MS), "--shutdown-grace-s", str(GRACE_S), "--heartbeat-s", "0.5")
    with server:
        process = server.process
        assert process is not None
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client, contextlib.AsyncExitStack() as stack:
            sse_streams = [
                await stack.enter_async_context(client.stream("GET", "/topics/bye/events", params={"format": "sse"}))
                for _ in range(3)
            ]
            ndjson_streams = [
                await stack.enter_async_context(client.stream("GET", "/topics/bye/events")),
                await stack.enter_async_context(client.stream("GET", "/events", params={"topic": ["bye", "x.*"]})),
            ]
            assert all(s.status_code == 200 for s in sse_streams + ndjson_streams)
            answer = await client.post("/topics/bye/events", json="last words")
            assert answer.status_code == 201

            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):
                sse_lines = await asyncio.gather(*(_read_to_end(s) for s in sse_streams))
                ndjson_lines = await asyncio.gather(*(_read_to_end(s) for s in ndjson_streams))
            await eventually(lambda: process.poll() is not None, within=5, what="the server process exits")
            exited_after = time.monotonic() - started

        print(f"SIGTERM to exit: {exited_after:.2f}s")
        assert process.returncode == 0
        assert exited_after < GRACE_S / 2, f"exit took {exited_after:.2f}s: the streams held shutdown up"

    hints = []
    for lines in sse_lines:
        # The event before the shutdown was delivered, and the stream ends with the shutdown frame.
        assert f"id: {answer.json()['id']}" in lines
        frame = lines[-4:]
        assert frame[0].startswith("retry: ") and frame[1:] == ["event: shutdown", frame[2], ""], lines[-6:]
        retry = int(frame[0].removeprefix("retry: "))
        data = orjson.loads(frame[2].removeprefix("data: "))
        assert data["control"] == "shutdown"
        assert data["retry_ms"] == retry
        hints.append(retry)
    for lines in ndjson_lines:
        parsed = [orjson.loads(line) for line in lines if line]
        assert answer.json()["id"] in [line.get("id") for line in parsed]
        last = parsed[-1]
        assert last["control"] == "shutdown"
        assert "data" not in last
        hints.append(last["retry_ms"])
    assert all(RETRY_MS <= hint <= 2 * RETRY_MS for hint in hints), hints
    assert len(set(hints)) > 1, f"every client got the same reconnect hint: {hints}"
