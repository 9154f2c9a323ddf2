"""Two server processes on the six-node cluster: across shards, multi-topic, patterns that learn new topics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse
from redis.crc import key_slot

from ..e2e.test_two_processes import _start_together
from ..support.redis_cluster import RedisCluster
from ..support.servers import ProcessServer

pytestmark = [pytest.mark.e2e, pytest.mark.redis]


@pytest.fixture(scope="module")
def two_servers(redis_cluster: RedisCluster) -> Iterator[tuple[ProcessServer, ProcessServer]]:
    """Shared by this module's tests (distinct topics each): booting processes is the slow part."""
    servers = tuple(ProcessServer("--redis-url", redis_cluster.url, "--heartbeat-s", "0.5") for _ in range(2))
    try:
        _start_together(servers)
        yield servers  # type: ignore[misc]
    finally:
        for server in servers:
            server.stop()


def _on_three_masters(prefix: str) -> list[str]:
    """Three topic names whose slots belong to the three different masters (of 0-5460, 5461-10922, 10923-)."""
    found: dict[int, str] = {}
    n = 0
    while len(found) < 3:
        topic = f"{prefix}{n}"
        found.setdefault(min(key_slot(f"broadcaster:{{{topic}}}".encode()) // 5461, 2), topic)
        n += 1
    return [found[k] for k in sorted(found)]


async def _ndjson_events(
    stream: httpx.Response, count: int, controls: list[str] | None = None
) -> list[dict[str, object]]:
    """The first `count` events; the control messages met on the way go to `controls`."""
    out = []
    lines = stream.aiter_lines()
    async with asyncio.timeout(10):
        while len(out) < count:
            line = orjson.loads(await anext(lines))
            if "control" not in line:
                out.append(line)
            elif controls is not None:
                controls.append(str(line["control"]))
    return out


async def test_cluster_multi_topic_stream_across_shards_and_resume_from_its_last_id(two_servers):
    """A multi-topic SSE stream over three masters; its last `id:` (the stream's cursor) resumes every topic."""
    a, b = two_servers
    topics = _on_three_masters("multi.")
    params = [("topic", t) for t in topics]
    async with httpx.AsyncClient(timeout=10) as client:
        published = []
        cursors = []
        async with aconnect_sse(client, "GET", f"{b.url}/events", params=params) as sse:
            assert sse.response.status_code == 200
            events = sse.aiter_sse()
            for n in range(9):
                answer = await client.post(f"{a.url}/topics/{topics[n % 3]}/events", json={"n": n})
                assert answer.status_code == 201, answer.text
                published.append(answer.json()["id"])
            got = []
            async with asyncio.timeout(10):
                while len(got) < 9:
                    event = await anext(events)
                    if event.event == "message" and event.data:
                        got.append(event.json())
                        cursors.append(event.id)
        assert [(e["topic"], e["id"], e["data"]) for e in got] == [
            (topics[n % 3], published[n], {"n": n}) for n in range(9)
        ]
        # Resume on the other process after the fourth event: exactly the five after it, each topic in order.
        resume = [*params, ("last_event_id", cursors[3]), ("format", "ndjson")]
        controls: list[str] = []
        async with client.stream("GET", f"{a.url}/events", params=resume) as stream:
            again = await _ndjson_events(stream, 5, controls)
        assert "reset" not in controls, controls
        assert sorted(e["id"] for e in again) == sorted(published[4:])
        for topic in topics:
            assert [e["id"] for e in again if e["topic"] == topic] == [
                published[n] for n in range(4, 9) if n % 3 == topics.index(topic)
            ]


async def test_cluster_pattern_stream_gets_the_first_event_of_a_topic_created_after_it_opened(two_servers):
    a, b = two_servers
    async with httpx.AsyncClient(timeout=10) as client:
        async with aconnect_sse(client, "GET", f"{b.url}/events", params={"topic": "fresh.*"}) as sse:
            assert sse.response.status_code == 200
            events = sse.aiter_sse()
            new_topics = _on_three_masters("fresh.")
            for round_ in range(3):
                for topic in new_topics:
                    # Published on the other process: B learns of the topic from the registry.
                    answer = await client.post(f"{a.url}/topics/{topic}/events", json={"round": round_})
                    assert answer.status_code == 201, answer.text
            got = []
            async with asyncio.timeout(10):
                while len(got) < 9:
                    event = await anext(events)
                    if (
                        event.event == "message" and event.data
                    ):  # a pattern stream's data is the envelope, with the topic
                        envelope = event.json()
                        got.append((envelope["topic"], envelope["data"]["round"]))
        # Every topic's first event too (it was published before B had subscribed the topic), in order.
        for topic in new_topics:
            assert [r for t, r in got if t == topic] == [0, 1, 2], got


async def test_cluster_workers_2_serve_streams_and_publishes(redis_cluster: RedisCluster):
    with ProcessServer("--redis-url", redis_cluster.url, "--workers", "2") as server:
        topics = _on_three_masters("workers.")
        async with httpx.AsyncClient(timeout=10) as client:
            async with contextlib.AsyncExitStack() as stack:
                streams = []
                for n in range(6):  # spread over the workers by the kernel
                    url = f"{server.url}/topics/{topics[n % 3]}/events"
                    streams.append(await stack.enter_async_context(client.stream("GET", url)))
                assert all(s.status_code == 200 for s in streams)
                ids = {}
                for topic in topics:
                    answer = await client.post(f"{server.url}/topics/{topic}/events", json={"t": topic})
                    assert answer.status_code == 201, answer.text
                    ids[topic] = answer.json()["id"]
                for n, stream in enumerate(streams):
                    (event,) = await _ndjson_events(stream, 1)
                    assert (event["id"], event["data"]) == (ids[topics[n % 3]], {"t": topics[n % 3]})
