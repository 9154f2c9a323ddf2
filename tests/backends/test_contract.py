"""The backend contract: every behaviour, the same assertions, on memory, a real Redis and a real Redis Cluster.

Where the backends differ, the backend is fixed, not the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from broadcaster import Backend, BackendMessage, Event, HistoryPage, Settings, SupportsHealth, backend_from_url
from broadcaster._ids import parse_event_id, topic_tag
from broadcaster.backends.cluster import ClusterBackend

from ..support.waiting import eventually

BARRIER = "zz-barrier"


@pytest.fixture(
    params=["memory", pytest.param("redis", marks=pytest.mark.redis), pytest.param("cluster", marks=pytest.mark.redis)]
)
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class Harness:
    """A backend with its `messages()` read by one task into `received`, as the hub reads it."""

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.received: list[BackendMessage] = []
        self.reader: asyncio.Task[None] | None = None

    async def run(self) -> None:
        async for message in self.backend.messages():
            self.received.append(message)

    async def wait_for(self, count: int, within: float = 5.0) -> list[BackendMessage]:
        await eventually(lambda: len(self.received) >= count, within=within, what=f"{count} messages")
        return self.received

    async def settle(self) -> list[BackendMessage]:
        """Everything delivered before barrier events: each connection delivers in publish order, so once a
        barrier came through every connection (one per master on a cluster) nothing else is in flight."""
        barriers = getattr(self, "_barriers", None)
        if barriers is None:
            barriers = self._barriers = _barrier_topics(self.backend)
            await self.backend.subscribe(barriers)
        marks = [(await self.backend.publish(topic, [("message", b"0")]))[0].id for topic in barriers]
        await eventually(
            lambda: all(
                any(isinstance(m.event, Event) and m.event.id == mark for m in self.received) for mark in marks
            ),
            what="barrier events delivered",
        )
        return [m for m in self.received if not _is_barrier(m)]

    def seen(self) -> list[tuple[str, str, str]]:
        """(key, topic, id) of every delivered event but barriers."""
        return [
            (m.key, m.event.topic, m.event.id)
            for m in self.received
            if isinstance(m.event, Event) and not _is_barrier(m)
        ]


def _is_barrier(message: BackendMessage) -> bool:
    return isinstance(message.event, Event) and message.event.topic.startswith(BARRIER)


def _barrier_topics(backend: Backend) -> list[str]:
    """One barrier topic; on a cluster one per master (each master's shard connection delivers on its own)."""
    if not isinstance(backend, ClusterBackend):
        return [BARRIER]
    masters = {(node.host, int(node.port)) for node in backend._client.get_primaries()}
    chosen: dict[tuple[str, int], str] = {}
    for n in range(1000):
        topic = f"{BARRIER}-{n}"
        chosen.setdefault(backend._home_of(backend._channel(topic).encode()), topic)
        if masters <= chosen.keys():
            break
    return list(chosen.values())


@pytest.fixture
def open_backend(settings: Settings) -> Callable[..., contextlib.AbstractAsyncContextManager[Harness]]:
    """Open this parametrization's backend (memory or a real Redis), with settings changes, and read it."""

    @contextlib.asynccontextmanager
    async def make(**changes: Any) -> AsyncIterator[Harness]:
        local = settings.replace(**changes)
        async with backend_from_url(local.backend_url, local) as backend:
            harness = Harness(backend)
            reader = harness.reader = asyncio.create_task(harness.run())
            try:
                yield harness
            finally:
                await backend.aclose()
                try:
                    async with asyncio.timeout(5):
                        await reader
                finally:
                    reader.cancel()

    return make


def ids(events: list[Event]) -> list[str]:
    return [e.id for e in events]


async def test_backend_publish_numbers_each_topic_without_gaps(open_backend):
    async with open_backend() as h:
        events = []
        for n, topic in enumerate(["a", "b", "a", "c", "b", "a"]):
            (event,) = await h.backend.publish(topic, [("message", b"%d" % n)])
            events.append(event)
        assert [e.seq for e in events] == [1, 1, 2, 1, 2, 3], "each topic counts its own events, from 1"
        assert [e.topic for e in events] == ["a", "b", "a", "c", "b", "a"]
        assert [e.data for e in events] == [b"%d" % n for n in range(6)]
        assert len({e.id for e in events}) == 6
        for topic in "abc":
            mine = [e for e in events if e.topic == topic]
            assert len({e.epoch for e in mine}) == 1, "one epoch per topic history"
            assert [e.ts for e in mine] == sorted(e.ts for e in mine)
        for event in events:
            ref = parse_event_id(event.id)
            assert (ref.tag, ref.epoch, ref.seq) == (topic_tag(event.topic), event.epoch, event.seq)
            assert event.type == "message"
            assert abs(event.ts - time.time() * 1000) < 60_000


async def test_backend_publish_keeps_type_and_data_bytes(open_backend):
    data = '{"text": "caf\u00e9 x y", "n": [1, 2]}'.encode()
    async with open_backend() as h:
        await h.backend.subscribe(["t"])
        (event,) = await h.backend.publish("t", [("order.created", data)])
        (delivered,) = await h.wait_for(1)
        assert delivered.event == event
        assert delivered.event.type == "order.created" and delivered.event.data == data
        page = await h.backend.history("t", after=None, limit=10)
        assert page.events == [event]
        assert page.events[0].data == data


async def test_backend_publish_many_items_in_one_call_keeps_order(open_backend):
    async with open_backend() as h:
        await h.backend.subscribe(["t"])
        items = [("message" if n % 2 else "odd", b"%d" % n) for n in range(10)]
        events = await h.backend.publish("t", items)
        assert [(e.type, e.data) for e in events] == items
        assert [e.seq for e in events] == sorted({e.seq for e in events})
        delivered = await h.settle()
        assert [m.event for m in delivered] == events
        assert (await h.backend.history("t", after=None, limit=100)).events == events


async def test_backend_subscribe_then_publish_delivers_once_per_subscribed_key(open_backend):
    async with open_backend() as h:
        await h.backend.subscribe(["a", "*"])
        (on_a,) = await h.backend.publish("a", [("message", b"1")])
        (on_b,) = await h.backend.publish("b", [("message", b"2")])
        await h.settle()
        assert sorted(h.seen()) == sorted([("a", "a", on_a.id), ("*", "a", on_a.id), ("*", "b", on_b.id)])
        by_key = {m.key: m.event for m in h.received if isinstance(m.event, Event) and m.event.id == on_a.id}
        # The hub delivers an event once per subscription by object identity: one publish is one Event.
        assert by_key["a"] is by_key["*"]


async def test_backend_delivers_in_publish_order(open_backend):
    """Each topic's events in publish order. Across topics too on one connection (memory, one Redis); on a
    cluster two topics of different masters come through two connections, so only each topic's order holds
    (ids order events within a topic only: docs/resume.md)."""
    async with open_backend() as h:
        await h.backend.subscribe(["a", "b"])
        published = []
        for n in range(20):
            published += await h.backend.publish("a" if n % 2 else "b", [("message", b"%d" % n)])
        await h.settle()
        received = [m.event for m in h.received if not _is_barrier(m)]
        for topic in "ab":
            assert [e for e in received if e.topic == topic] == [e for e in published if e.topic == topic]
        if not isinstance(h.backend, ClusterBackend):
            assert received == published


async def test_backend_publish_without_subscribers_delivers_nothing(open_backend):
    async with open_backend() as h:
        await h.backend.publish("nobody", [("message", b"1")])
        assert await h.settle() == []


async def test_backend_pattern_subscription_delivers_matching_topics_only(open_backend):
    async with open_backend() as h:
        await h.backend.subscribe(["sensors.*"])
        matching = []
        for topic in ["sensors.kitchen", "other", "sensors", "sensors.hall.temp", "xsensors.a", "sensorsX"]:
            (event,) = await h.backend.publish(topic, [("message", b"1")])
            if topic.startswith("sensors."):
                matching.append(event)
        await h.settle()
        assert h.seen() == [("sensors.*", e.topic, e.id) for e in matching]


async def test_backend_unsubscribe_stops_delivery(open_backend):
    async with open_backend() as h:
        await h.backend.subscribe(["a", "p.*"])
        await h.backend.publish("a", [("message", b"1")])
        await h.backend.publish("p.x", [("message", b"2")])
        assert len(await h.settle()) == 2
        await h.backend.unsubscribe(["a", "p.*"])
        await h.backend.publish("a", [("message", b"3")])
        await h.backend.publish("p.x", [("message", b"4")])
        delivered = await h.settle()
        assert [m.event.data for m in delivered if isinstance(m.event, Event)] == [b"1", b"2"]
        # Subscribing again works.
        await h.backend.subscribe(["a"])
        (again,) = await h.backend.publish("a", [("message", b"5")])
        await h.settle()
        assert h.seen()[-1] == ("a", "a", again.id)


async def test_backend_unsubscribe_one_key_keeps_the_others(open_backend):
    async with open_backend() as h:
        await h.backend.subscribe(["a", "b"])
        await h.backend.unsubscribe(["a"])
        await h.backend.unsubscribe(["never-subscribed"])
        await h.backend.publish("a", [("message", b"1")])
        (on_b,) = await h.backend.publish("b", [("message", b"2")])
        await h.settle()
        assert h.seen() == [("b", "b", on_b.id)]


async def test_backend_history_slices_oldest_first(open_backend):
    async with open_backend() as h:
        events = await h.backend.publish("t", [("message", b"%d" % n) for n in range(6)])
        await h.backend.publish("other", [("message", b"x")])
        everything = await h.backend.history("t", after=None, limit=100)
        assert everything == HistoryPage(events, events[0].epoch, 6)
        assert (await h.backend.history("t", after=None, limit=2)).events == events[:2]
        assert (await h.backend.history("t", after=events[1].seq, limit=100)).events == events[2:]
        assert (await h.backend.history("t", after=events[1].seq, limit=3)).events == events[2:5]
        assert (await h.backend.history("t", after=events[-1].seq, limit=100)) == HistoryPage([], events[0].epoch, 6)
        assert (await h.backend.history("t", after=0, limit=100)).events == events
        # A position past the newest seq (a history that went backwards) reads nothing, and says where it stands.
        assert (await h.backend.history("t", after=99, limit=100)) == HistoryPage([], events[0].epoch, 6)
        unknown = await h.backend.history("never-published", after=None, limit=10)
        assert unknown == HistoryPage([], None, 0)


async def test_backend_history_since_ms_starts_at_a_time(open_backend):
    async with open_backend() as h:
        (early,) = await h.backend.publish("t", [("message", b"1")])
        await eventually(lambda: _now_ms() > early.ts + 5, what="clock past the first event")
        later = await h.backend.publish("t", [("message", b"2"), ("message", b"3")])
        assert (await h.backend.history("t", since_ms=later[0].ts, limit=10)).events == later
        assert (await h.backend.history("t", since_ms=early.ts, limit=10)).events == [early, *later]
        assert (await h.backend.history("t", after=2, since_ms=early.ts, limit=10)).events == later[1:]


async def test_backend_histories_count_per_topic(open_backend):
    async with open_backend() as h:
        (a1,) = await h.backend.publish("a", [("message", b"1")])
        (b1,) = await h.backend.publish("b", [("message", b"2")])
        (a2,) = await h.backend.publish("a", [("message", b"3")])
        assert (a1.seq, b1.seq, a2.seq) == (1, 1, 2)
        assert (await h.backend.history("a", after=1, limit=10)) == HistoryPage([a2], a1.epoch, 2)
        assert (await h.backend.history("b", after=0, limit=10)) == HistoryPage([b1], b1.epoch, 1)


async def test_backend_tail_returns_the_last_events_oldest_first(open_backend):
    async with open_backend() as h:
        events = await h.backend.publish("t", [("message", b"%d" % n) for n in range(5)])
        assert await h.backend.tail("t", 2) == events[3:]
        assert await h.backend.tail("t", 1) == events[4:]
        assert await h.backend.tail("t", 50) == events
        assert await h.backend.tail("t", 0) == []
        assert await h.backend.tail("never-published", 3) == []


async def test_backend_trims_by_count_and_marks_the_newest_cut(open_backend):
    async with open_backend(history_size=3) as h:
        first = await h.backend.publish("t", [("message", b"%d" % n) for n in range(3)])
        assert (await h.backend.history("t", after=None, limit=10)).events[0].seq == 1
        more = await h.backend.publish("t", [("message", b"3")])
        more += await h.backend.publish("t", [("message", b"4")])
        page = await h.backend.history("t", after=None, limit=10)
        assert page == HistoryPage(first[2:] + more, first[0].epoch, 5)
        assert await h.backend.tail("t", 10) == page.events
        # A resume point before the first retained seq lost events: the caller can tell (3 is not 1 + 1).
        resumed = await h.backend.history("t", after=first[0].seq, limit=10)
        assert resumed.events == page.events and resumed.events[0].seq != first[0].seq + 1


async def test_backend_trims_a_large_batch_exactly(open_backend):
    async with open_backend(history_size=3) as h:
        events = await h.backend.publish("t", [("message", b"%d" % n) for n in range(8)])
        page = await h.backend.history("t", after=None, limit=10)
        assert page == HistoryPage(events[5:], events[0].epoch, 8)
        (u,) = await h.backend.publish("u", [("message", b"x")])
        assert await h.backend.history("u", after=None, limit=10) == HistoryPage([u], u.epoch, 1), "per topic"


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_backend_retention_by_age_drops_old_events_on_read(open_backend):
    ttl_s = 1.0
    async with open_backend(history_ttl_s=ttl_s) as h:
        (old,) = await h.backend.publish("t", [("message", b"old")])
        await h.backend.publish("expires-too", [("message", b"x")])
        await eventually(lambda: _now_ms() > old.ts + 600, what="clock past old + 0.6 s")
        (young,) = await h.backend.publish("t", [("message", b"young")])
        await eventually(lambda: _now_ms() > old.ts + ttl_s * 1000 + 20, what="old event past its ttl")
        page = await h.backend.history("t", after=None, limit=10)
        resumed = await h.backend.history("t", after=0, limit=10)
        since = await h.backend.history("t", since_ms=old.ts, limit=10)
        tail = await h.backend.tail("t", 10)
        topics = [info.topic for info in await h.backend.topics("*")]
        assert _now_ms() < young.ts + ttl_s * 1000, "the machine was too slow for this test's window"
        assert page == HistoryPage([young], old.epoch, 2)
        assert resumed == HistoryPage([young], old.epoch, 2)
        assert since == HistoryPage([young], old.epoch, 2)
        assert tail == [young]
        assert topics == ["t"], "expires-too lost its only event; t still holds one"


async def test_backend_keeps_epoch_and_last_seq_of_a_topic_whose_events_all_expired(open_backend):
    async with open_backend(history_ttl_s=0.3) as h:
        (old,) = await h.backend.publish("t", [("message", b"old")])
        await eventually(lambda: _now_ms() > old.ts + 350, what="event past its ttl")
        # The events are gone, the history's identity is not: a resume from seq 1 finds it
        # current (nothing lost since), one from seq 5 finds it newer than anything published.
        page = await h.backend.history("t", after=None, limit=10)
        assert page == HistoryPage([], old.epoch, 1)
        assert await h.backend.history("t", after=0, limit=10) == HistoryPage([], old.epoch, 1)
        assert await h.backend.tail("t", 10) == []
        assert await h.backend.topics("*") == []
        # Publishing again continues the epoch, without a gap.
        (fresh,) = await h.backend.publish("t", [("message", b"new")])
        assert await h.backend.history("t", after=None, limit=10) == HistoryPage([fresh], old.epoch, 2)
        assert (fresh.epoch, fresh.seq) == (old.epoch, 2)


async def test_backend_new_epoch_replaces_the_named_epoch_only(open_backend):
    async with open_backend() as h:
        (first,) = await h.backend.publish("t", [("message", b"1")])
        await h.backend.new_epoch("t", "00000000")  # not the current epoch: nothing happens
        assert (await h.backend.history("t", limit=10)) == HistoryPage([first], first.epoch, 1)
        await h.backend.new_epoch("t", first.epoch)
        assert await h.backend.history("t", limit=10) == HistoryPage([], None, 0)
        (second,) = await h.backend.publish("t", [("message", b"2")])
        assert second.seq == 1 and second.epoch != first.epoch
        assert await h.backend.history("t", limit=10) == HistoryPage([second], second.epoch, 1)


async def test_backend_topics_lists_retained_topics_by_pattern(open_backend):
    async with open_backend() as h:
        assert await h.backend.topics("*") == []
        await h.backend.publish("sensors.kitchen", [("message", b"1"), ("message", b"2")])
        (hall,) = await h.backend.publish("sensors.hall", [("message", b"3")])
        (last,) = await h.backend.publish("sensors.kitchen", [("message", b"4")])
        await h.backend.publish("orders", [("message", b"5")])
        infos = await h.backend.topics("sensors.*")
        assert [(i.topic, i.retained, i.last_id) for i in infos] == [
            ("sensors.hall", 1, hall.id),
            ("sensors.kitchen", 3, last.id),
        ]
        assert [i.topic for i in await h.backend.topics("*")] == ["orders", "sensors.hall", "sensors.kitchen"]
        assert [i.topic for i in await h.backend.topics("orders")] == ["orders"]
        assert await h.backend.topics("nothing.*") == []


async def test_backend_topics_counts_retained_after_trimming(open_backend):
    async with open_backend(history_size=2) as h:
        events = await h.backend.publish("t", [("message", b"%d" % n) for n in range(5)])
        assert [(i.topic, i.retained, i.last_id) for i in await h.backend.topics("*")] == [("t", 2, events[-1].id)]


async def test_backend_concurrent_publishes_keep_per_topic_order_and_unique_ids(open_backend):
    tasks_n, per_task = 12, 15
    async with open_backend() as h:
        topics = [f"c{n}" for n in range(3)]
        await h.backend.subscribe(topics)

        async def publisher(n: int) -> list[Event]:
            out = []
            for i in range(per_task):
                out += await h.backend.publish(topics[n % 3], [("message", b'"%d-%d"' % (n, i))])
            return out

        async with asyncio.timeout(10):
            results = await asyncio.gather(*(publisher(n) for n in range(tasks_n)))
        everything = [e for events in results for e in events]
        assert len({e.id for e in everything}) == tasks_n * per_task, "ids are unique"
        for events in results:
            assert [e.seq for e in events] == sorted(e.seq for e in events), "each publisher's events in its order"
        delivered = [m.event for m in await h.settle()]
        assert len(delivered) == tasks_n * per_task
        for topic in topics:
            history = (await h.backend.history(topic, after=None, limit=1000)).events
            in_topic = [e for e in delivered if e.topic == topic]
            assert [e.seq for e in in_topic] == list(range(1, len(in_topic) + 1)), "delivered in seq order, no gap"
            assert history == in_topic
            for events in results:
                mine = {e.id for e in events}
                assert [e for e in history if e.id in mine] == [e for e in events if e.topic == topic]


async def test_backend_ping_answers(open_backend):
    async with open_backend() as h:
        assert isinstance(h.backend, SupportsHealth)
        await h.backend.ping()


async def test_backend_messages_end_after_aclose(open_backend):
    async with open_backend() as h:
        await h.backend.subscribe(["t"])
        await h.backend.aclose()
        await h.backend.aclose()  # idempotent
        assert h.reader is not None
        async with asyncio.timeout(5):
            await h.reader  # messages() ended by itself, without an error
