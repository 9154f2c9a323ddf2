"""Resume over real sockets: a subscriber cut off again and again, while a producer keeps publishing,
receives every event exactly once, in order (issue 4).

The subscriber drops its connection at random points (20 times, mid-replay included), then
reconnects with the last id it saw, as a browser's EventSource or a `curl` loop would: on a
multi-topic SSE stream the last `id:` (the stream's cursor); on a multi-topic NDJSON stream the
cursor of the `live` line with the last id of each topic put in (docs/resume.md).
The published sequence of each topic is read back from the history download at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import orjson
import pytest
from httpx_sse import aconnect_sse

from ..support.servers import ProcessServer, thread_server
from ..support.waiting import eventually

pytestmark = pytest.mark.e2e

TOTAL = 2000  # events published per test
BATCH = 5  # events per POST (one NDJSON body)
RATE = 1500  # events per second, steady
RECONNECTS = 20
CONTROLS = {"gap", "reset", "live", "fault", "shutdown"}
NDJSON = {"Content-Type": "application/x-ndjson"}

# (stream path and parameters, topics the producer publishes on, topics the stream covers)
STREAMS = {
    "one-topic": ("/topics/r.one/events", {}, ["r.one"], {"r.one"}),
    "multi-topic": (
        "/events",
        {"topic": ["m.a", "m.b", "p.*", "p.x"]},  # p.x twice (by name and by pattern): delivered once
        ["m.a", "p.x", "m.b", "q.other", "p.y"],
        {"m.a", "m.b", "p.x", "p.y"},
    ),
}


@dataclass
class Run:
    """What the subscriber saw."""

    events: list[dict] = field(default_factory=list)
    #: (connection number, events received before it on that connection, control)
    controls: list[tuple[int, int, dict]] = field(default_factory=list)
    connections: int = 0
    #: Single-topic: the last event id. Multi-topic SSE: the last `id:` (the cursor).
    last_id: str | None = None
    #: Multi-topic: the cursor's base (`<ms>` or `<ms>!`) and the last id per topic tag.
    base: str | None = None
    positions: dict[str, str] = field(default_factory=dict)

    def resume_point(self, multi: bool, fmt: str) -> str | None:
        if not multi or (fmt == "sse" and self.last_id is not None and "~" in self.last_id):
            return self.last_id
        if self.base is None:
            return None
        return f"{self.base}~{','.join(self.positions.values())}"

    def take_cursor(self, cursor: str) -> None:
        self.base, _, ids = cursor.partition("~")
        self.positions = {i[:8]: i for i in ids.split(",") if i}

    def take_event(self, multi: bool, event_id: str, sse_id: str | None) -> None:
        if multi and sse_id is not None:
            self.take_cursor(sse_id)
        elif multi:
            self.positions.pop(event_id[:8], None)
            self.positions[event_id[:8]] = event_id
        self.last_id = sse_id if sse_id is not None else event_id


@contextlib.asynccontextmanager
async def open_stream(
    client: httpx.AsyncClient, url: str, params: dict, fmt: str, last_id: str | None
) -> AsyncIterator[AsyncIterator[dict]]:
    """One streaming request; yields its items as dicts: events (id, topic, data) and controls (`control`)."""
    params = dict(params)
    headers = {}
    if last_id is None:
        params["tail"] = 0  # an immediate `live` line: proof that the subscription is in place
    elif fmt == "sse":
        headers["Last-Event-ID"] = last_id  # what EventSource sends
    else:
        params["last_event_id"] = last_id  # what a curl user would pass
    multi = "topic" in params
    if fmt == "sse":
        async with aconnect_sse(client, "GET", url, params=params, headers=headers) as source:
            source.response.raise_for_status()

            async def sse_items() -> AsyncIterator[dict]:
                async for sse in source.aiter_sse():
                    if not sse.data:
                        continue  # the `retry:` preamble
                    if sse.event in CONTROLS:
                        yield {"control": sse.event, **orjson.loads(sse.data)}
                    elif multi:
                        envelope = orjson.loads(sse.data)
                        assert envelope["id"] in sse.id.partition("~")[2].split(","), "the cursor holds the event's id"
                        yield {**envelope, "sse_id": sse.id}
                    else:
                        yield {"id": sse.id, "topic": url.split("/")[-2], "data": orjson.loads(sse.data)}

            yield sse_items()
    else:
        async with client.stream("GET", url, params=params) as response:
            response.raise_for_status()

            async def ndjson_items() -> AsyncIterator[dict]:
                async for line in response.aiter_lines():
                    item = orjson.loads(line)
                    if item.get("control") != "heartbeat":
                        yield item

            yield ndjson_items()


async def subscribe_with_reconnects(
    urls: list[str],
    path: str,
    params: dict,
    formats: list[str],
    expected: int,
    *,
    seed: int,
    live: asyncio.Event,
    published: list[int],
) -> Run:
    """Read `expected` events, dropping the connection at RECONNECTS random points, resuming each time."""
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, expected), RECONNECTS))
    run = Run()
    async with httpx.AsyncClient(timeout=httpx.Timeout(10.0)) as client:
        while len(run.events) < expected:
            number = run.connections
            run.connections += 1
            url = urls[number % len(urls)] + path
            fmt = formats[number % len(formats)]
            multi = "topic" in params
            async with open_stream(client, url, params, fmt, run.resume_point(multi, fmt)) as items:
                on_connection = 0
                went_live = False
                async for item in items:
                    if "control" in item:
                        run.controls.append((number, on_connection, item))
                        went_live = went_live or item["control"] == "live"
                        if multi and item["control"] == "live" and fmt == "ndjson":
                            # Where the stream started; the ids of events received since go on top.
                            positions = run.positions
                            run.take_cursor(item["cursor"])
                            run.positions = {**run.positions, **positions}
                        live.set()
                    else:
                        sse_id = item.pop("sse_id", None)
                        run.events.append(item)
                        run.take_event(multi, item["id"], sse_id)
                        on_connection += 1
                        if cuts and len(run.events) >= cuts[0]:
                            cuts.pop(0)
                            break  # leaving the block closes the connection mid-stream
                    if len(run.events) >= expected and went_live:
                        break  # all received (and the last replay's `live` too)
            if number % 3 == 1 and published[0] < TOTAL:
                # Stay away a little now and then, so that the next replay has more to send.
                target = min(TOTAL, published[0] + 100)
                await eventually(lambda t=target: published[0] >= t, within=10, what="the producer moved on")
    return run


async def produce(urls: list[str], topics: list[str], published: list[int]) -> list[tuple[str, int]]:
    """Publish TOTAL events at a steady RATE, BATCH per POST, cycling through `topics` (and servers).

    Returns what it published, (topic, value), in order.
    """
    values: list[tuple[str, int]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()
    async with httpx.AsyncClient(timeout=10) as client:
        for number, first in enumerate(range(0, TOTAL, BATCH)):
            batch = list(range(first, min(first + BATCH, TOTAL)))
            topic = topics[number % len(topics)]
            body = b"".join(orjson.dumps(v) + b"\n" for v in batch)
            answer = await client.post(
                f"{urls[number % len(urls)]}/topics/{topic}/events", content=body, headers=NDJSON
            )
            assert answer.status_code in (200, 201), answer.text
            assert answer.json()["accepted"] == len(batch)
            values.extend((topic, v) for v in batch)
            published[0] = len(values)
            delay = start + len(values) / RATE - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)  # pacing: a steady rate, not a wait for something to happen
    return values


async def published_sequences(url: str, topics: set[str]) -> dict[str, list[dict]]:
    """Every retained event of each of `topics`, in seq order, from the history downloads."""
    out = {}
    async with httpx.AsyncClient(timeout=10) as client:
        for topic in sorted(topics):
            response = await client.get(f"{url}/topics/{topic}/history")
            assert response.status_code == 200
            out[topic] = [orjson.loads(line) for line in response.text.splitlines()]
            assert not [item for item in out[topic] if "control" in item]
    return out


async def run_resume_scenario(urls: list[str], stream: str, formats: list[str], seed: int) -> None:
    path, params, publish_topics, covered = STREAMS[stream]
    expected = sum(len(range(f, min(f + BATCH, TOTAL))) for n, f in enumerate(range(0, TOTAL, BATCH))
                   if publish_topics[n % len(publish_topics)] in covered)  # fmt: skip
    live = asyncio.Event()
    published = [0]
    async with asyncio.timeout(25), asyncio.TaskGroup() as tasks:
        subscriber = tasks.create_task(
            subscribe_with_reconnects(urls, path, params, formats, expected, seed=seed, live=live, published=published)
        )
        await live.wait()  # the first connection is subscribed: from now on nothing may be missed
        producer = tasks.create_task(produce(urls, publish_topics, published))
    run = subscriber.result()
    reference = await published_sequences(urls[0], covered)
    assert sum(len(events) for events in reference.values()) == expected
    for topic, events in reference.items():
        assert [e["data"] for e in events] == [v for t, v in producer.result() if t == topic]
        received = [e for e in run.events if e["topic"] == topic]
        assert [e["id"] for e in received] == [e["id"] for e in events], topic  # no gap, no duplicate, in order
        assert [e["data"] for e in received] == [e["data"] for e in events]
    assert len(run.events) == expected
    kinds = [control["control"] for _, _, control in run.controls]
    assert set(kinds) == {"live"}, f"unexpected control messages: {kinds}"
    assert run.connections >= RECONNECTS + 1
    # `live` after every replay, with the count replayed: once per connection, unless it was cut mid-replay
    lives = {number: (before, control["replayed"]) for number, before, control in run.controls}
    assert len(lives) == len(run.controls), "one `live` per connection"
    assert all(before == replayed for before, replayed in lives.values())
    assert lives[0] == (0, 0) and run.connections - 1 in lives
    assert sum(replayed for _, replayed in lives.values()) > RECONNECTS, "the replays sent something"


@pytest.mark.parametrize("stream", list(STREAMS))
@pytest.mark.parametrize("fmt", ["sse", "ndjson"])
async def test_resume_after_repeated_disconnects_loses_and_repeats_nothing(settings, stream, fmt):
    with thread_server(settings.replace(history_size=5000)) as server:
        await run_resume_scenario([server.url], stream, [fmt], seed=zlib.crc32(f"{stream}/{fmt}".encode()))


@pytest.mark.redis
async def test_resume_on_another_server_process_sharing_redis(redis_url):
    """Disconnect from one process, resume on the other, alternately, over SSE and NDJSON."""
    env = {"BROADCASTER_REDIS_URL": redis_url, "BROADCASTER_HISTORY_SIZE": "5000", "BROADCASTER_HEARTBEAT_S": "1"}
    with ProcessServer(env=env) as first, ProcessServer(env=env) as second:
        await run_resume_scenario([first.url, second.url], "multi-topic", ["sse", "ndjson"], seed=4)


async def test_resume_after_slow_consumer_eviction_loses_nothing(settings):
    """The `disconnect` policy and resume together: an SSE client too slow for its queue is
    disconnected, reconnects with Last-Event-ID as EventSource does, and gets every event."""
    big = orjson.dumps({"pad": "x" * 16_000})
    with thread_server(settings.replace(history_size=2000, send_timeout_s=10.0)) as server:
        hub = server.app.state.hub
        published: list[str] = []
        received: list[str] = []
        controls: list[dict] = []

        async def publish(client: httpx.AsyncClient, count: int) -> None:
            body = b"".join(big + b"\n" for _ in range(count))
            answer = await client.post(f"{server.url}/topics/slow/events", content=body, headers=NDJSON)
            assert answer.json()["accepted"] == count
            published.extend([answer.json()["last_id"]] * count)  # a count; the ids come from the history

        def note(sse) -> None:
            if sse.event in CONTROLS:
                controls.append({"control": sse.event, **orjson.loads(sse.data)})
            elif sse.data:
                received.append(sse.id)

        async with (
            asyncio.timeout(20),
            httpx.AsyncClient(timeout=10) as producer,
            httpx.AsyncClient(timeout=10) as client,
        ):
            url = f"{server.url}/topics/slow/events"
            async with aconnect_sse(client, "GET", url, params={"queue": 8, "tail": 0}) as source:
                sse_events = source.aiter_sse()
                while not controls:
                    note(await anext(sse_events))
                # The client stops reading; the socket's buffers fill, then its queue of 8.
                while hub.metrics.evicted == 0:
                    assert len(published) < 3000, "the subscriber was never evicted"
                    await publish(producer, 4)
                await publish(producer, 20)  # published while it is away: history keeps them
                async for sse in sse_events:  # it reads again: what was on the wire, then the error
                    note(sse)
            assert controls[-1]["control"] == "fault" and controls[-1]["reason"] == "slow consumer"
            before = len(received)
            assert 0 < before < len(published)
            async with aconnect_sse(client, "GET", url, headers={"Last-Event-ID": received[-1]}) as source:
                async for sse in source.aiter_sse():
                    note(sse)
                    if controls[-1]["control"] == "live":
                        break
            history = await producer.get(f"{server.url}/topics/slow/history")
        assert received == [orjson.loads(line)["id"] for line in history.text.splitlines()]  # all, once, in order
        assert len(received) == len(published)
        assert controls[-1] == {"control": "live", "replayed": len(published) - before}
