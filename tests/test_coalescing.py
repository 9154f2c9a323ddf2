"""Coalescing (`coalesce_ms`): a window's events leave in one write per subscriber, in order."""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from broadcaster import Event, Hub, Settings
from broadcaster._subscription import Item
from broadcaster.backends.memory import MemoryBackend

from .conftest import TEST_SETTINGS
from .support.servers import thread_server
from .support.waiting import eventually


class RecordingSink:
    """A socket stand-in that takes everything and records each write (a real object, not a mock)."""

    def __init__(self, *, accepting: bool = True) -> None:
        self.accepting = accepting
        self.writes: list[list[str]] = []

    def write(self, items: list[Item]) -> bool:
        if not self.accepting:
            return False
        self.writes.append([i.id for i in items if isinstance(i, Event)])
        return True


async def _parked(sub) -> asyncio.Task[None]:
    """A consumer parked in wait(), as a stream writer is between writes."""
    task = asyncio.create_task(sub.wait())
    await eventually(lambda: sub._waiter is not None, within=2)
    return task


async def test_coalescing_sends_a_windows_events_in_one_write():
    settings = Settings(**{**TEST_SETTINGS, "coalesce_ms": 50})
    async with Hub(MemoryBackend(), settings=settings) as hub:
        sub = await hub.subscribe(["t"])
        sink = sub.sink = RecordingSink()
        waiting = await _parked(sub)
        published = [(await hub.publish("t", b'{"n":%d}' % n)).id for n in range(5)]
        await eventually(lambda: sink.writes, within=2, what="the window's flush")
        assert sink.writes == [published], "one write with the five events, in order"
        assert not waiting.done(), "the consumer was not woken: the sink took everything"
        waiting.cancel()


async def test_without_coalescing_each_burst_is_written_at_once():
    async with Hub(MemoryBackend(), settings=Settings(**TEST_SETTINGS)) as hub:
        sub = await hub.subscribe(["t"])
        sink = sub.sink = RecordingSink()
        waiting = await _parked(sub)
        first = await hub.publish("t", b"1")
        await eventually(lambda: sink.writes == [[first.id]], within=2)
        second = await hub.publish("t", b"2")
        await eventually(lambda: sink.writes == [[first.id], [second.id]], within=2)
        waiting.cancel()


async def test_coalescing_wakes_the_consumer_when_the_socket_is_backed_up():
    settings = Settings(**{**TEST_SETTINGS, "coalesce_ms": 20})
    async with Hub(MemoryBackend(), settings=settings) as hub:
        sub = await hub.subscribe(["t"])
        sub.sink = RecordingSink(accepting=False)
        waiting = await _parked(sub)
        event = await hub.publish("t", b"1")
        async with asyncio.timeout(2):
            await waiting  # woken: the consumer's own (waiting) writes take over
        assert sub.drain() == [event]


@pytest.mark.e2e
async def test_coalesced_stream_delivers_every_event_in_order():
    settings = Settings(**{**TEST_SETTINGS, "coalesce_ms": 200, "port": 8000})
    server = thread_server(settings)
    with server as running:
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
            async with client.stream("GET", "/topics/c/events") as response:
                lines = response.aiter_lines()
                ids = [(await client.post("/topics/c/events", json={"n": n})).json()["id"] for n in range(20)]
                got: list[str] = []
                async with asyncio.timeout(5):
                    while len(got) < 20:
                        line = orjson.loads(await anext(lines))
                        if "control" not in line:
                            got.append(line["id"])
                assert got == ids


@pytest.mark.e2e
async def test_coalesced_events_go_out_before_the_shutdown_message():
    """Stopping inside a window: its events are written, then `shutdown`, nothing lost."""
    settings = Settings(**{**TEST_SETTINGS, "coalesce_ms": 1000, "port": 8000})
    server = thread_server(settings)
    running = server.__enter__()
    try:
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as client:
            async with client.stream("GET", "/topics/c/events") as response:
                lines = response.aiter_lines()
                ids = [(await client.post("/topics/c/events", json={"n": n})).json()["id"] for n in range(3)]
                stopping = asyncio.create_task(asyncio.to_thread(server.__exit__, None, None, None))
                got: list[dict] = []
                async with asyncio.timeout(5):
                    async for raw in lines:
                        line = orjson.loads(raw)
                        if line.get("control") != "heartbeat":
                            got.append(line)
                assert [line["id"] for line in got[:-1]] == ids
                assert got[-1]["control"] == "shutdown"
                await stopping
    finally:
        if running.thread.is_alive():
            server.__exit__(None, None, None)


async def test_a_burst_of_events_leaves_in_one_write_without_coalescing():
    """Ingest publishes a chunk's lines together: a subscriber gets them in one write, not one per event."""
    async with Hub(MemoryBackend(), settings=Settings(**TEST_SETTINGS)) as hub:
        sub = await hub.subscribe(["t"])
        sink = sub.sink = RecordingSink()
        waiting = await _parked(sub)
        events = await hub.publish_many("t", [("message", b"%d" % n) for n in range(50)])
        await eventually(lambda: sink.writes, within=2)
        assert sink.writes == [[e.id for e in events]]
        waiting.cancel()


async def test_a_burst_longer_than_the_queue_is_written_mid_burst_not_overflowed():
    """A subscriber whose socket keeps up is not evicted because a single burst exceeds its queue."""
    async with Hub(MemoryBackend(), settings=Settings(**TEST_SETTINGS)) as hub:
        sub = await hub.subscribe(["t"], queue_size=10)
        sink = sub.sink = RecordingSink()
        waiting = await _parked(sub)
        events = await hub.publish_many("t", [("message", b"%d" % n) for n in range(35)])
        await eventually(lambda: sum(map(len, sink.writes)) == 35, within=2, what="all 35 written")
        assert [i for write in sink.writes for i in write] == [e.id for e in events], "in order, none lost"
        assert [len(write) for write in sink.writes] == [10, 10, 10, 5], "written whenever the queue filled"
        assert not sub.evicted and not waiting.done()
        waiting.cancel()


async def test_a_burst_longer_than_the_queue_still_overflows_when_the_socket_is_backed_up():
    async with Hub(MemoryBackend(), settings=Settings(**TEST_SETTINGS)) as hub:
        sub = await hub.subscribe(["t"], queue_size=10)
        sub.sink = RecordingSink(accepting=False)
        waiting = await _parked(sub)
        await hub.publish_many("t", [("message", b"%d" % n) for n in range(11)])
        # The default policy (disconnect) applies when the socket takes nothing.
        await eventually(lambda: sub.evicted, within=2, what="evicted")
        async with asyncio.timeout(2):
            await waiting
