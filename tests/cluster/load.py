"""A bounded load for the failover and migration tests: one producer at a steady rate, many readers.

Readers are real HTTP streams on a server process: NDJSON and SSE, single-topic,
multi-topic and pattern. The producer retries a 503 (after checking its Retry-After)
until a 201, and records what was acknowledged. `check()` tells, per reader, whether it
got every acknowledged event of its topics exactly once and in order.

CI size by default (seconds); `BROADCASTER_FULL_LOAD=1` runs the issue's size (100 topics,
5 000 events, 200 readers).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import orjson

FULL = os.environ.get("BROADCASTER_FULL_LOAD") == "1"
TOPICS = 100 if FULL else 10
EVENTS = 5000 if FULL else 400
RATE = 500.0 if FULL else 200.0  # events per second
PATTERN_READERS = 20 if FULL else 2
MULTI_READERS = 40 if FULL else 4
DEADLINE_S = 120.0 if FULL else 30.0


@dataclass
class Reader:
    """One stream: the topics it covers and what it received (topic, id, n) and which controls."""

    path: str
    params: list[tuple[str, str]]
    covers: list[str]
    sse: bool
    got: list[tuple[str, str, int]] = field(default_factory=list)
    controls: list[str] = field(default_factory=list)


@dataclass
class Load:
    url: str
    prefix: str
    topics: list[str] = field(init=False)
    readers: list[Reader] = field(default_factory=list)
    acked: list[tuple[str, str, int]] = field(default_factory=list)
    refused: int = 0  # 503 answers (each carried Retry-After)

    def __post_init__(self) -> None:
        self.topics = [f"{self.prefix}{n}" for n in range(TOPICS)]
        for topic in self.topics:
            self.readers.append(Reader(f"/topics/{topic}/events", [], [topic], sse=False))
            self.readers.append(Reader(f"/topics/{topic}/events", [("format", "sse")], [topic], sse=True))
        for n in range(MULTI_READERS):
            three = [self.topics[(n + k * 3) % TOPICS] for k in range(3)]
            params = [("topic", t) for t in three] + ([("format", "sse")] if n % 2 else [])
            self.readers.append(Reader("/events", params, three, sse=bool(n % 2)))
        for n in range(PATTERN_READERS):
            params = [("topic", self.prefix + "*")] + ([("format", "sse")] if n % 2 else [])
            self.readers.append(Reader("/events", params, list(self.topics), sse=bool(n % 2)))

    async def run(self, disrupt: Callable[[], Awaitable[None]], at: float = 0.3) -> None:
        """Open every reader, publish EVENTS at RATE, call `disrupt` at fraction `at`, wait for the readers."""
        limits = httpx.Limits(max_connections=len(self.readers) + 10)
        async with httpx.AsyncClient(base_url=self.url, timeout=10, limits=limits) as client:
            opened: list[asyncio.Future[None]] = []
            tasks = []
            for reader in self.readers:
                ready = asyncio.get_running_loop().create_future()
                opened.append(ready)
                tasks.append(asyncio.create_task(self._read(client, reader, ready)))
            try:
                async with asyncio.timeout(30):
                    await asyncio.gather(*opened)
                disruption = await self._produce(client, disrupt, at)
                await disruption
                await self._settle()
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

    async def _read(self, client: httpx.AsyncClient, reader: Reader, ready: asyncio.Future[None]) -> None:
        async with client.stream("GET", reader.path, params=reader.params, timeout=None) as stream:
            assert stream.status_code == 200, reader.path
            ready.set_result(None)
            event: dict[str, str] = {}
            async for line in stream.aiter_lines():
                if not reader.sse:
                    self._take(reader, orjson.loads(line), None)
                elif line == "" and event:
                    self._take(reader, orjson.loads(event["data"]) if event.get("data") else {}, event)
                    event = {}
                elif ":" in line and not line.startswith(":"):
                    name, _, value = line.partition(":")
                    event[name] = value.removeprefix(" ")

    def _take(self, reader: Reader, body: dict[str, object] | object, sse: dict[str, str] | None) -> None:
        if sse is not None:
            kind = sse.get("event", "message")
            if kind != "message":
                reader.controls.append(kind)
                return
            if "data" not in sse:
                return
            if len(reader.covers) == 1 and reader.path.startswith("/topics/"):
                body = {"topic": reader.covers[0], "id": sse["id"], "data": body}
        assert isinstance(body, dict)
        if "control" in body:
            reader.controls.append(str(body["control"]))
            return
        data = body["data"]
        assert isinstance(data, dict)
        reader.got.append((str(body["topic"]), str(body["id"]), int(data["n"])))

    async def _produce(
        self, client: httpx.AsyncClient, disrupt: Callable[[], Awaitable[None]], at: float
    ) -> asyncio.Task[None]:
        disruption: asyncio.Task[None] | None = None
        started = time.monotonic()
        deadline = started + DEADLINE_S
        for n in range(EVENTS):
            if disruption is None and n >= EVENTS * at:
                disruption = asyncio.create_task(disrupt())
            await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))
            topic = self.topics[n % TOPICS]
            while True:
                assert time.monotonic() < deadline, f"publishing did not finish within {DEADLINE_S}s"
                with contextlib.suppress(httpx.TransportError):
                    answer = await client.post(f"/topics/{topic}/events", json={"n": n})
                    if answer.status_code == 201:
                        self.acked.append((topic, answer.json()["id"], n))
                        break
                    assert answer.status_code == 503, answer.text
                    assert answer.headers.get("retry-after"), "a 503 without Retry-After"
                    self.refused += 1
                await asyncio.sleep(0.05)  # shorter than Retry-After: the test wants to see recovery soon
        assert disruption is not None
        return disruption

    async def _settle(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(self._complete(r) for r in self.readers):
                return
            await asyncio.sleep(0.05)

    def expected(self, reader: Reader) -> list[tuple[str, str, int]]:
        return [a for a in self.acked if a[0] in reader.covers]

    def _complete(self, reader: Reader) -> bool:
        return len(reader.got) >= len(self.expected(reader)) or "reset" in reader.controls

    def problems(self) -> list[str]:
        """Readers that lost, repeated or reordered an acknowledged event (a `reset` excuses loss only).

        Events of attempts answered 503 may also arrive (the producer retried them); nothing else may.
        """
        out = []
        # A publish answered 503 may still have been applied (the answer was lost, or WAIT timed out):
        # its retry is the acknowledged one, and the first attempt reaches readers too.
        retried = {(t, n) for t, _, n in self.acked}
        for reader in self.readers:
            want, got = self.expected(reader), reader.got
            if len(set(got)) != len(got):
                out.append(f"{reader.path}{reader.params}: duplicates")
            elif "reset" in reader.controls:
                if not set(got) <= set(want):
                    out.append(f"{reader.path}{reader.params}: events never acknowledged")
            elif not set(want) <= set(got):
                out.append(f"{reader.path}{reader.params}: {len(set(want) - set(got))} acknowledged events missing")
            elif any((t, n) not in retried for t, _, n in set(got) - set(want)):
                out.append(f"{reader.path}{reader.params}: events nobody published")
            else:
                acked = set(want)
                for topic in reader.covers:
                    if [g for g in got if g[0] == topic and g in acked] != [w for w in want if w[0] == topic]:
                        out.append(f"{reader.path}{reader.params}: {topic} out of order")
        return out
