"""The server process dies and comes back: the subscriber resumes where it was, or says what was lost.

Issue 13, acceptance 1 and 2. The servers are `python -m broadcaster serve`
processes, killed with SIGKILL (no goodbye to clients) and started again on
the same port; the producer publishes straight into the real Redis meanwhile.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest

from broadcaster import Control, parse_cursor, parse_event_id, topic_tag
from broadcaster.client import Event, Live, Reset, Retry, Subscriber, publish
from broadcaster.client._subscriber import NO_POSITION
from producers import RedisTarget

from ..support.servers import ProcessServer, ThreadServer
from ..support.waiting import eventually
from .helpers import events, take, take_events

# Each server process start takes 0.5 s here, and several seconds on a loaded machine (six engineers, two cores).
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(90)]

TOTAL = 5000
#: Quick retries: a restart takes a fraction of a second here, and the test should not wait for a 15 s cap.
FAST = Retry(initial_s=0.05, cap_s=0.5)


def _kill(server: ProcessServer) -> None:
    """SIGKILL: no goodbye to the clients."""
    assert server.process is not None
    server.process.kill()
    server.process.wait(10)


def _restart(server: ProcessServer) -> None:
    server.stop()
    server.start()


def _kill_and_restart(server: ProcessServer) -> None:
    _kill(server)
    _restart(server)


def _history_ids(url: str, topic: str) -> list[str]:
    """The ids of a topic's retained events, oldest first (the history download)."""
    answer = httpx.get(f"{url}/topics/{topic}/history", params={"limit": TOTAL + 10}, timeout=30)
    answer.raise_for_status()
    return [orjson.loads(line)["id"] for line in answer.content.splitlines()]


@pytest.mark.redis
@pytest.mark.timeout(150)
async def test_restarts_redis_server_killed_twice_client_yields_every_event_once_in_order(redis_url):
    server = ProcessServer("--redis-url", redis_url, "--history-size", "10000", "--heartbeat-s", "0.5")
    with server:
        async with Subscriber(server.url, "load", retry=FAST, heartbeat_timeout=3.0) as sub:
            received: list[Event] = []

            async def consume() -> None:
                async for item in sub:
                    if isinstance(item, Event):
                        received.append(item)
                        if len(received) == TOTAL:
                            return

            killed = [asyncio.Event(), asyncio.Event()]
            #: (events received before the kill, events published before the kill): each restart falls while
            #: the producer is publishing, and what it publishes after a kill only the next server can deliver.
            plan = [(TOTAL // 5, 2 * TOTAL // 5), (TOTAL // 2, 7 * TOTAL // 10)]

            async def produce() -> None:
                async with RedisTarget(redis_url, history_size=10000) as target:
                    for n in range(TOTAL):
                        for (_, hold_at), done in zip(plan, killed, strict=True):
                            if n == hold_at:
                                await target.flush()
                                await done.wait()
                        await target.publish("load", b'{"n":%d}' % n)
                        if n % 25 == 24:
                            await asyncio.sleep(0.01)  # at most about 2500 events/s
                    await target.flush()

            async with asyncio.timeout(120), asyncio.TaskGroup() as tasks:
                consumer = tasks.create_task(consume())
                producer = tasks.create_task(produce())
                for restarts, ((mark, _), done) in enumerate(zip(plan, killed, strict=True)):
                    await eventually(
                        lambda m=mark, r=restarts: sub.reconnects == r and len(received) >= m,
                        within=20,
                        what=f"{mark} events received after {restarts} restarts",
                    )
                    _kill(server)
                    done.set()  # the producer goes on while the server is down, into Redis
                    await asyncio.to_thread(_restart, server)
                await producer
                await consumer
            assert sub.reconnects == 2
        published = await asyncio.to_thread(_history_ids, server.url, "load")

    assert len(published) == TOTAL
    assert [e.id for e in received] == published  # every event once, in publish order
    assert [e.data["n"] for e in received] == list(range(TOTAL))


@pytest.mark.redis
@pytest.mark.parametrize("fmt", ["ndjson", "sse"])
async def test_restarts_multi_topic_stream_resumes_every_topic_with_its_cursor(redis_url, fmt):
    """Several topics and a pattern: after the restart each topic gets exactly what it missed, a new topic too."""
    server = ProcessServer("--redis-url", redis_url, "--heartbeat-s", "0.5")
    topics = ["multi.a", "multi.b.*", "multi.quiet"]
    with server:
        async with (
            RedisTarget(redis_url) as target,
            Subscriber(server.url, topics, format=fmt, retry=FAST) as sub,
        ):
            for topic in ["multi.a", "multi.b.x", "multi.a"]:
                await target.publish(topic, b'"before"')
            await target.flush()
            before = events(await take_events(sub, 3))
            _kill(server)
            for n, topic in enumerate(["multi.b.x", "multi.a", "multi.b.new", "multi.quiet", "multi.b.x"]):
                await target.publish(topic, b"%d" % n)
            await target.flush()
            await asyncio.to_thread(_restart, server)
            items = await take(sub, lambda items: isinstance(items[-1], Live))
            position = sub.last_event_id
    assert sub.reconnects == 1
    assert not any(isinstance(item, Reset) for item in items), items
    assert [e.data for e in before] == ["before"] * 3
    # Each missed event once, and each topic's in publish order (nothing orders two topics).
    missed = events(items)
    assert sorted(e.data for e in missed) == [0, 1, 2, 3, 4]
    for topic, numbers in {"multi.a": [1], "multi.b.x": [0, 4], "multi.b.new": [2], "multi.quiet": [3]}.items():
        assert [e.data for e in missed if e.topic == topic] == numbers
    # The position holds the last id of every topic delivered (a cursor), so the next resume is exact too.
    last = {topic_tag(e.topic): parse_event_id(e.id) for e in [*before, *missed]}
    assert parse_cursor(position or "").positions == {tag: (ref.epoch, ref.seq) for tag, ref in last.items()}


@pytest.mark.redis
async def test_restarts_history_trimmed_while_down_gives_reset_then_carries_on(redis_url):
    """Events published while the server was down outnumber the history: a `Reset` says so, then live."""
    server = ProcessServer("--redis-url", redis_url, "--history-size", "5", "--heartbeat-s", "0.5")
    with server:
        async with (
            RedisTarget(redis_url, history_size=5) as target,
            Subscriber(server.url, "small", retry=FAST) as sub,
        ):
            await target.publish("small", b'"first"')
            await target.flush()
            first = events(await take_events(sub, 1))
            assert first[0].data == "first"
            _kill(server)
            for n in range(20):
                await target.publish("small", b"%d" % n)
            await target.flush()
            await asyncio.to_thread(_restart, server)
            items = await take(sub, lambda items: isinstance(items[-1], Live))
            await target.publish("small", b'"after"')
            await target.flush()
            items += await take_events(sub, 1)
    assert isinstance(items[0], Reset) and items[0].last_event_id == first[0].id
    assert "older than the retained history" in items[0].reason
    assert [e.data for e in events(items)] == [15, 16, 17, 18, 19, "after"]  # the 5 retained, then live
    assert sub.reconnects == 1


async def test_restarts_memory_server_restarted_client_yields_reset_and_carries_on():
    server = ProcessServer("--heartbeat-s", "0.5")
    with server:
        async with Subscriber(server.url, "mem", retry=FAST) as sub:
            before = await asyncio.to_thread(publish, server.url, "mem", "before")
            assert events(await take_events(sub, 1))[0].id == before.id
            await asyncio.to_thread(_kill_and_restart, server)
            after = await asyncio.to_thread(publish, server.url, "mem", "after")
            items = await take(sub, lambda items: items[-1] == Event(after.id, "mem", "message", after.ts, "after"))
    assert sub.reconnects == 1
    resets = [item for item in items if isinstance(item, Reset)]
    assert resets, f"no Reset before the events that followed: {items}"
    # The restarted server's history is another epoch: the resume point's history was lost, and it says so.
    assert resets[0].topics == ("mem",) and resets[0].last_event_id == before.id, resets
    assert "lost" in resets[0].reason
    assert items.index(resets[0]) < items.index(events(items)[-1])  # before what followed
    assert sub.last_event_id == after.id  # and it carried on from the new history


async def test_restarts_before_any_event_the_client_announces_it_had_no_resume_point():
    """No event yet on a one-topic stream means no id to resume from: the client cannot replay the gap, so it says so.

    (A multi-topic stream has a resume point from the start, its cursor's base: see
    test_subscriber_multi_topic_stream_resumes_from_its_base_before_any_event.)
    """
    server = ProcessServer("--heartbeat-s", "0.5")
    with server:
        async with Subscriber(server.url, "fresh", retry=FAST) as sub:
            await asyncio.to_thread(_kill_and_restart, server)
            receiving = asyncio.create_task(take_events(sub, 1))
            try:
                await eventually(lambda: sub.reconnects == 1, within=10, what="reconnected")
                after = await asyncio.to_thread(publish, server.url, "fresh", "after")
                items = await receiving
            finally:
                receiving.cancel()
    assert items == [
        Reset("reset", items[0].fields, NO_POSITION, None, ("fresh",)),  # type: ignore[union-attr]
        Event(after.id, "fresh", "message", after.ts, "after"),
    ]
    assert items[0].fields["source"] == "client"  # type: ignore[union-attr]


@pytest.mark.parametrize("fmt", ["ndjson", "sse"])
async def test_restarts_a_loss_announced_once_is_not_announced_again_at_the_next_reconnect(make_settings, fmt):
    first = ThreadServer(make_settings(retry_ms=200, heartbeat_s=0.5))
    first.start()
    second = ThreadServer(first.settings)  # the same port, a new memory history
    try:
        async with Subscriber(first.url, ["t", "u"], format=fmt, retry=FAST) as sub:
            await asyncio.to_thread(publish, first.url, "t", "old")
            await take_events(sub, 1)
            await asyncio.to_thread(first.stop)
            await asyncio.to_thread(second.start)
            lost = await take(sub, lambda items: isinstance(items[-1], Live))
            assert [item.topics for item in lost if isinstance(item, Reset)] == [("t",)]  # announced once: right
            await asyncio.to_thread(publish, second.url, "u", "new")
            await take_events(sub, 1)
            hub = second.app.state.hub  # the stream ends (a fault): the client resumes from its position
            hub._pump_task.get_loop().call_soon_threadsafe(hub.end_streams, lambda: Control("fault", {"reason": "x"}))
            again = await take(sub, lambda items: isinstance(items[-1], Live))
    finally:
        for server in (first, second):
            if server.thread.is_alive():
                server.stop()
    assert sub.reconnects == 2
    assert not [item for item in again if isinstance(item, Reset)], again  # nothing was lost this time
