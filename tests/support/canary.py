"""A canary subscriber: it must receive every event published while a test attacks the server.

`Canary` opens one NDJSON stream on its own topic, publishes events with their
send time in them, and checks that each arrived, in order, with no gap, reset
or error control message; `latencies_ms` are publish-to-receive times.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any, Self

import httpx
import orjson

from .waiting import eventually


class Canary:
    def __init__(self, url: str, topic: str = "canary", *, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.topic = topic
        self.headers = headers or {}
        self.published: list[str] = []
        self.received: list[str] = []
        self.controls: list[dict[str, Any]] = []
        self.latencies_ms: list[float] = []
        self._client: httpx.AsyncClient | None = None
        self._task: asyncio.Task[None] | None = None
        self._open = asyncio.Event()
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        timeout = httpx.Timeout(10, read=None)
        self._client = await self._stack.enter_async_context(
            httpx.AsyncClient(base_url=self.url, timeout=timeout, headers=self.headers)
        )
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._open.wait(), 10)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            if not self._task.cancelled() and self._task.exception() is not None:
                raise self._task.exception()  # type: ignore[misc]
        await self._stack.aclose()

    async def _read(self) -> None:
        assert self._client is not None
        async with self._client.stream("GET", f"/topics/{self.topic}/events") as response:
            assert response.status_code == 200, response.status_code
            self._open.set()
            async for raw in response.aiter_lines():
                if not raw:
                    continue
                line = orjson.loads(raw)
                if "control" in line:
                    if line["control"] != "heartbeat":
                        self.controls.append(line)
                    continue
                self.received.append(line["id"])
                self.latencies_ms.append((time.perf_counter_ns() - line["data"]["sent_ns"]) / 1e6)

    async def publish(self, count: int = 1) -> None:
        """Publish `count` events, one POST each (on a connection of the canary's own)."""
        assert self._client is not None
        for _ in range(count):
            response = await self._client.post(f"/topics/{self.topic}/events", json={"sent_ns": time.perf_counter_ns()})
            assert response.status_code == 201, (response.status_code, response.text)
            self.published.append(response.json()["id"])

    async def publish_every(self, interval_s: float, stop: asyncio.Event) -> None:
        """Publish one event every `interval_s` until `stop` is set (run it beside an attack)."""
        while not stop.is_set():
            await self.publish()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_s)

    async def verify(self, within: float = 10.0) -> None:
        """Every published event arrived, in order, and no gap/reset/error was announced."""
        assert self.published, "the canary published nothing"
        await eventually(lambda: len(self.received) >= len(self.published), within=within, what="canary deliveries")
        assert self.received == self.published
        assert self.controls == []
        assert self._task is not None and not self._task.done(), "the canary's stream ended"

    def p99_ms(self) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
