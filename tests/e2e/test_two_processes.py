"""Two server processes on one real Redis: events cross processes; each process subscribes once per topic."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import orjson
import pytest
import redis.asyncio as aioredis
from httpx_sse import aconnect_sse

from ..support.redis_server import RedisServer
from ..support.servers import ProcessServer
from ..support.waiting import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.redis]

PREFIX = "broadcaster:"


@pytest.fixture(scope="module")
def two_servers(redis_server: RedisServer | str) -> Iterator[tuple[ProcessServer, ProcessServer]]:
    """Shared by the tests of this module (they use distinct topics): booting processes is the slow part."""
    redis_url = redis_server if isinstance(redis_server, str) else redis_server.url
    servers = (
        ProcessServer("--redis-url", redis_url, "--heartbeat-s", "0.5"),
        ProcessServer("--redis-url", redis_url, "--heartbeat-s", "0.5"),
    )
    try:
        _start_together(servers)
        yield servers
    finally:
        for server in servers:
            server.stop()


def _start_together(servers: tuple[ProcessServer, ...]) -> None:
    """Boot the processes in parallel (each takes a second or so to import and bind)."""
    errors: list[BaseException] = []

    def start(server: ProcessServer) -> None:
        try:
            server.start()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    if errors:
        raise errors[0]


@contextlib.asynccontextmanager
async def _redis(url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(url)
    try:
        yield client
    finally:
        await client.aclose()


async def _numsub(client: aioredis.Redis, topic: str) -> int:
    [(_, count)] = await client.pubsub_numsub(PREFIX + topic)
    return int(count)


async def test_two_processes_event_published_on_a_reaches_sse_and_ndjson_on_b(two_servers):
    a, b = two_servers
    async with httpx.AsyncClient(timeout=10) as client:
        async with (
            client.stream("GET", f"{b.url}/topics/cross/events") as ndjson,
            aconnect_sse(client, "GET", f"{b.url}/topics/cross/events") as sse,
        ):
            # Both responses started: process B's hub has confirmed its Redis subscription.
            assert ndjson.status_code == 200 and sse.response.status_code == 200
            lines = ndjson.aiter_lines()
            events = sse.aiter_sse()
            for n in range(3):
                answer = await client.post(f"{a.url}/topics/cross/events", params={"type": "tick"}, json={"n": n})
                assert answer.status_code == 201, answer.text
                published = answer.json()
                async with asyncio.timeout(5):
                    line = orjson.loads(await anext(lines))
                    while "control" in line:
                        line = orjson.loads(await anext(lines))
                    event = await anext(events)
                    while not event.data:
                        event = await anext(events)
                assert (line["id"], line["type"], line["data"]) == (published["id"], "tick", {"n": n})
                assert (event.id, event.event, event.json()) == (published["id"], "tick", {"n": n})


async def test_two_processes_pubsub_numsub_one_per_process_then_zero(two_servers, redis_url):
    a, b = two_servers
    topic = "numsub"
    async with _redis(redis_url) as redis, httpx.AsyncClient(timeout=10) as client:
        assert await _numsub(redis, topic) == 0
        async with contextlib.AsyncExitStack() as stack:
            streams = []
            for server in (a, b):
                for n in range(5):
                    params = {"format": "sse"} if n % 2 else {}
                    url = f"{server.url}/topics/{topic}/events"
                    streams.append(await stack.enter_async_context(client.stream("GET", url, params=params)))
            assert all(stream.status_code == 200 for stream in streams)
            # Every response has started, so each process has confirmed its (single) subscription.
            assert await _numsub(redis, topic) == 2
            for server in (a, b):
                listing = (await client.get(f"{server.url}/topics")).json()["topics"]
                assert {t["topic"]: t["subscribers"] for t in listing}[topic] == 5
            answer = await client.post(f"{a.url}/topics/{topic}/events", json="all")
            assert answer.status_code == 201
            for stream in streams:
                async with asyncio.timeout(5):
                    async for raw in stream.aiter_lines():
                        if answer.json()["id"] in raw:
                            break
        # All ten clients left: each process unsubscribes after its last local subscriber.
        await eventually(_zero(redis, topic), within=5, what=f"PUBSUB NUMSUB {PREFIX}{topic} == 0")
        for server in (a, b):
            listing = (await client.get(f"{server.url}/topics")).json()["topics"]
            assert {t["topic"]: t["subscribers"] for t in listing}.get(topic, 0) == 0


def _zero(redis: aioredis.Redis, topic: str):
    async def check() -> bool:
        return await _numsub(redis, topic) == 0

    return check


async def _subscription_totals(redis: aioredis.Redis) -> tuple[int, int]:
    """(channels, patterns) subscribed over all pub/sub connections of the Redis server."""
    clients = await redis.client_list()
    return sum(int(c["sub"]) for c in clients), sum(int(c["psub"]) for c in clients)


async def test_two_processes_several_topics_each_subscribed_once(two_servers, redis_url):
    a, b = two_servers
    async with _redis(redis_url) as redis, httpx.AsyncClient(timeout=10) as client:
        channels_before, patterns_before = await _subscription_totals(redis)
        async with contextlib.AsyncExitStack() as stack:
            for server in (a, b):
                for _ in range(3):
                    url = f"{server.url}/events"
                    params = {"topic": ["t1", "t2", "pat.*"]}
                    stream = await stack.enter_async_context(client.stream("GET", url, params=params))
                    assert stream.status_code == 200
            counts = await redis.pubsub_numsub(PREFIX + "t1", PREFIX + "t2")
            assert [int(count) for _, count in counts] == [2, 2]
            # Six clients, two processes: two channels and one pattern more per process, not per client.
            channels, patterns = await _subscription_totals(redis)
            assert (channels - channels_before, patterns - patterns_before) == (4, 2)
        await eventually(_zero(redis, "t1"), within=5)
        await eventually(_zero(redis, "t2"), within=5)

        async def back_to_before() -> bool:
            return await _subscription_totals(redis) == (channels_before, patterns_before)

        await eventually(back_to_before, within=5, what="pattern subscriptions released")
