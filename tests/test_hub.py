"""Hub on the memory backend, no HTTP: fan-out, ordering, ref-counted backend subscriptions, lifecycle."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Any

import pytest

from broadcaster import (
    Control,
    Event,
    EventTooLarge,
    Hub,
    HubClosed,
    InvalidEventType,
    InvalidTopic,
    Settings,
    Subscription,
)
from broadcaster.backends import BackendMessage, HistoryPage, TopicInfo
from broadcaster.backends.memory import MemoryBackend

from .conftest import TEST_SETTINGS
from .support.waiting import eventually


class RecordingBackend:
    """A real `MemoryBackend` behind a wrapper that records (un)subscribe calls and can hold or break them."""

    def __init__(self) -> None:
        self.inner = MemoryBackend()
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.closes = 0
        self.subscribe_gate: asyncio.Event | None = None
        self.unsubscribe_gate: asyncio.Event | None = None
        #: A message on this topic makes `messages()` raise, as a broken transport would.
        self.poison_topic: str | None = None

    async def __aenter__(self) -> RecordingBackend:
        await self.inner.__aenter__()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.closes += 1
        await self.inner.__aexit__(*exc_info)

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def ping(self) -> None:
        await self.inner.ping()

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Event]:
        return await self.inner.publish(topic, items)

    async def subscribe(self, keys: Collection[str]) -> None:
        self.calls.append(("subscribe", tuple(keys)))
        if self.subscribe_gate is not None:
            await self.subscribe_gate.wait()
        await self.inner.subscribe(keys)

    async def unsubscribe(self, keys: Collection[str]) -> None:
        self.calls.append(("unsubscribe", tuple(keys)))
        if self.unsubscribe_gate is not None:
            await self.unsubscribe_gate.wait()
        await self.inner.unsubscribe(keys)

    async def messages(self) -> AsyncIterator[BackendMessage]:
        async for message in self.inner.messages():
            if isinstance(message.event, Event) and message.event.topic == self.poison_topic:
                raise RuntimeError("the transport broke")
            yield message

    async def history(self, topic: str, *, after: tuple[int, int] | None, limit: int) -> HistoryPage:
        return await self.inner.history(topic, after=after, limit=limit)

    async def tail(self, topic: str, count: int) -> list[Event]:
        return await self.inner.tail(topic, count)

    async def topics(self, pattern: str = "*") -> list[TopicInfo]:
        return await self.inner.topics(pattern)

    def subscribed(self) -> set[str]:
        """The keys the real backend delivers now."""
        return set(self.inner._topics) | set(self.inner._patterns)


def hub_settings(**changes: Any) -> Settings:
    return Settings(**{**TEST_SETTINGS, **changes})


def make_hub(**changes: Any) -> tuple[Hub, RecordingBackend]:
    backend = RecordingBackend()
    return Hub(backend, settings=hub_settings(**changes)), backend


async def take(sub: Subscription, n: int, within: float = 5.0) -> list[Event | Control]:
    async with asyncio.timeout(within):
        return [await sub.get() for _ in range(n)]


def payloads(items: list[Event | Control]) -> list[bytes]:
    return [item.data for item in items if isinstance(item, Event)]


async def test_hub_delivers_in_publish_order_per_topic():
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        sub = await hub.subscribe(["orders"])
        published = [await hub.publish("orders", b"%d" % n) for n in range(50)]
        received = await take(sub, 50)
        assert received == published
        assert [e.seq for e in published] == sorted(e.seq for e in published)
        await sub.aclose()


async def test_hub_multi_topic_subscription_gets_events_in_id_order():
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        sub = await hub.subscribe(["a", "b"])
        published = []
        for n in range(10):
            published.append(await hub.publish("a" if n % 3 else "b", b"%d" % n))
        received = await take(sub, 10)
        assert received == published
        for topic in ("a", "b"):  # seqs count per topic, from 1, without a gap
            seqs = [e.seq for e in published if e.topic == topic]
            assert seqs == list(range(1, len(seqs) + 1))


async def test_hub_publish_returns_stored_event():
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        event = await hub.publish("orders", b'{"n":1}', "created")
        assert (event.topic, event.type, event.data) == ("orders", "created", b'{"n":1}')
        assert event.seq == 1 and abs(event.ts - time.time() * 1000) < 60_000
        as_json = await hub.publish_json("orders", {"n": 2})
        assert as_json.data == b'{"n":2}' and as_json.type == "message"
        page = await hub.history("orders")
        assert page.events == [event, as_json]


async def test_hub_fans_out_to_many_subscribers():
    hub, backend = make_hub()
    async with hub:
        subs = [await hub.subscribe(["wide"]) for _ in range(100)]
        assert hub.subscriber_count("wide") == 100
        published = await hub.publish_many("wide", [("message", b"%d" % n) for n in range(20)])
        for sub in subs:
            assert await take(sub, 20) == published
        # One backend subscription for the process, whatever its number of subscribers.
        assert backend.calls == [("subscribe", ("wide",))]


async def test_hub_fans_out_the_same_event_object():
    """Serialise once: every subscriber gets the same Event, so its frames are built once."""
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        first, second = await hub.subscribe(["t"]), await hub.subscribe(["t"])
        await hub.publish("t", b"1")
        (a,) = await take(first, 1)
        (b,) = await take(second, 1)
        assert a is b


async def test_hub_evicting_a_slow_subscriber_does_not_affect_others():
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        slow = await hub.subscribe(["t"], queue_size=2)
        fast = await hub.subscribe(["t"], queue_size=100)
        received: list[Event | Control] = []

        async def consume() -> None:
            while len(received) < 10:
                received.append(await fast.get())

        async with asyncio.timeout(5), asyncio.TaskGroup() as tg:
            tg.create_task(consume())
            published = [await hub.publish("t", b"%d" % n) for n in range(10)]
        assert received == published
        assert slow.evicted and slow.ended
        assert slow.end is not None and slow.end.fields["reason"] == "slow consumer"
        assert hub.subscriber_count("t") == 1
        assert hub.metrics.evicted == 1
        assert not fast.evicted


async def test_hub_drop_policy_counts_dropped_events():
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        sub = await hub.subscribe(["t"], queue_size=2, overflow="drop-newest")
        published = await hub.publish_many("t", [("message", b"%d" % n) for n in range(5)])
        await eventually(lambda: sub.dropped == 3)
        items = sub.drain()
        assert items == [
            published[0],
            published[1],
            Control("gap", {"dropped": 3, "first_id": published[2].id, "last_id": published[4].id}),
        ]
        assert hub.dropped == 3
        await sub.aclose()
        assert hub.dropped == 3, "drops of closed subscriptions stay counted"


async def test_hub_cleans_up_when_the_consuming_body_raises():
    hub, backend = make_hub()
    async with hub:
        with pytest.raises(RuntimeError, match="consumer failed"):
            async with await hub.subscribe(["c"]) as sub:
                await hub.publish("c", b"1")
                await take(sub, 1)
                raise RuntimeError("consumer failed")
        assert sub.ended
        assert hub.subscriber_count("c") == 0
        assert hub.subscriptions == 0 and hub.keys == 0
        await eventually(lambda: "c" not in backend.subscribed(), what="backend unsubscribed")
        assert backend.calls == [("subscribe", ("c",)), ("unsubscribe", ("c",))]


async def test_hub_cleans_up_when_the_consumer_is_cancelled():
    hub, backend = make_hub()
    async with hub:
        started = asyncio.Event()

        async def consume() -> None:
            async with await hub.subscribe(["c"]) as sub:
                started.set()
                async for _ in sub:
                    pass

        task = asyncio.create_task(consume())
        async with asyncio.timeout(5):
            await started.wait()
        assert hub.subscriber_count("c") == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            async with asyncio.timeout(5):
                await task
        assert hub.subscriber_count("c") == 0
        await eventually(lambda: "c" not in backend.subscribed(), what="backend unsubscribed")


async def test_hub_second_aclose_is_a_noop():
    hub, backend = make_hub()
    async with hub:
        sub = await hub.subscribe(["t"])
    first_end = sub.end
    assert hub.closed and backend.closes == 1
    await hub.aclose()
    await hub.aclose()
    assert backend.closes == 1
    assert sub.end is first_end


async def test_hub_subscribe_and_publish_after_close_raise_hub_closed():
    hub = Hub(MemoryBackend(), settings=hub_settings())
    async with hub:
        pass
    with pytest.raises(HubClosed):
        await hub.subscribe(["t"])
    with pytest.raises(HubClosed):
        await hub.publish("t", b"1")
    with pytest.raises(HubClosed):
        await hub.history("t")
    with pytest.raises(HubClosed):
        await hub.ping()
    with pytest.raises(HubClosed, match="cannot be reopened"):
        await hub.__aenter__()


async def test_hub_subscribe_before_start_raises_hub_closed():
    hub = Hub(MemoryBackend(), settings=hub_settings())
    with pytest.raises(HubClosed, match="not started"):
        await hub.subscribe(["t"])
    with pytest.raises(HubClosed, match="not started"):
        await hub.publish("t", b"1")
    await hub.aclose()  # closing a never-started hub is allowed and ends it
    assert hub.closed


async def test_hub_aclose_without_opening_does_not_touch_the_backend():
    hub, backend = make_hub()
    await hub.aclose()
    assert backend.closes == 0


async def test_hub_ref_counts_backend_subscriptions():
    hub, backend = make_hub()
    async with hub:
        backend.subscribe_gate = asyncio.Event()
        # Five subscribers arrive while the first backend subscribe is still in flight.
        tasks = [asyncio.create_task(hub.subscribe(["x"])) for _ in range(5)]
        await eventually(lambda: hub.subscriber_count("x") == 5)
        assert not any(task.done() for task in tasks), "subscribe returns only once the backend subscription holds"
        backend.subscribe_gate.set()
        async with asyncio.timeout(5):
            subs = await asyncio.gather(*tasks)
        assert backend.calls == [("subscribe", ("x",))]
        assert backend.subscribed() == {"x"}

        for sub in subs[:4]:
            await sub.aclose()
        assert hub.subscriber_count("x") == 1
        assert backend.subscribed() == {"x"}
        assert backend.calls == [("subscribe", ("x",))]

        await subs[4].aclose()
        await eventually(lambda: backend.subscribed() == set(), what="unsubscribed after the last left")
        assert backend.calls == [("subscribe", ("x",)), ("unsubscribe", ("x",))]

        again = await hub.subscribe(["x"])
        assert backend.calls[-1] == ("subscribe", ("x",))
        await hub.publish("x", b"1")
        assert payloads(await take(again, 1)) == [b"1"]


async def test_hub_ref_counts_patterns_and_topics_separately():
    hub, backend = make_hub()
    async with hub:
        a = await hub.subscribe(["orders", "sensors.*"])
        b = await hub.subscribe(["sensors.*"])
        assert backend.subscribed() == {"orders", "sensors.*"}
        assert hub.keys == 2
        await a.aclose()
        await eventually(lambda: backend.subscribed() == {"sensors.*"})
        await b.aclose()
        await eventually(lambda: backend.subscribed() == set())
        assert hub.keys == 0


async def test_hub_subscribe_during_unsubscribe_ends_subscribed():
    """The last subscriber leaves and a new one arrives while the backend unsubscribe is in flight."""
    hub, backend = make_hub()
    async with hub:
        first = await hub.subscribe(["x"])
        backend.unsubscribe_gate = asyncio.Event()
        await first.aclose()
        await eventually(lambda: backend.calls[-1] == ("unsubscribe", ("x",)))
        arriving = asyncio.create_task(hub.subscribe(["x"]))
        await eventually(lambda: hub.subscriber_count("x") == 1)
        backend.unsubscribe_gate.set()
        async with asyncio.timeout(5):
            second = await arriving
        assert backend.subscribed() == {"x"}
        await hub.publish("x", b"after")
        assert payloads(await take(second, 1)) == [b"after"]


async def test_hub_pattern_and_topic_overlap_delivers_once():
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        sub = await hub.subscribe(["sensors.kitchen", "sensors.*", "*"])
        other = await hub.subscribe(["sensors.*"])
        first = await hub.publish("sensors.kitchen", b"1")
        second = await hub.publish("sensors.hall", b"2")
        third = await hub.publish("sensors.kitchen", b"3")
        assert await take(sub, 3) == [first, second, third]
        assert await take(other, 3) == [first, second, third]
        await hub.publish("end", b"4")
        assert payloads(await take(sub, 1)) == [b"4"]
        assert sub.queued == 0 and other.queued == 0


async def test_hub_pattern_matches_across_dots():
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        sub = await hub.subscribe(["sensors.*"])
        await hub.publish("sensors", b"0")  # not matched: the pattern needs the dot
        await hub.publish("sensors.a.b.c", b"1")
        await hub.publish("other.sensors.x", b"2")
        await hub.publish("sensors.z", b"3")
        assert payloads(await take(sub, 2)) == [b"1", b"3"]
        assert sub.queued == 0


@pytest.mark.parametrize(
    ("topic", "event_type", "data", "error"),
    [
        ("", "message", b"1", InvalidTopic),
        ("bad topic", "message", b"1", InvalidTopic),
        ("x" * 201, "message", b"1", InvalidTopic),
        ("orders\n", "message", b"1", InvalidTopic),
        ("sensors.*", "message", b"1", InvalidTopic),
        ("orders", "gap", b"1", InvalidEventType),
        ("orders", "bad type", b"1", InvalidEventType),
        ("orders", "x\r\nid: 9", b"1", InvalidEventType),
        ("orders", "message", b'"' + b"x" * 100 + b'"', EventTooLarge),
        ("orders", "message", b'{"a":\n1}', ValueError),
        ("orders", "message", b'"a"\r', ValueError),
        ("orders", "message", b"", ValueError),
    ],
    ids=[
        "empty-topic",
        "topic-space",
        "topic-too-long",
        "topic-trailing-lf",
        "pattern-as-topic",
        "reserved-type",
        "type-space",
        "type-crlf-injection",
        "too-large",
        "data-lf",
        "data-cr",
        "data-empty",
    ],
)
async def test_hub_publish_rejects_invalid_input(topic, event_type, data, error):
    async with Hub(MemoryBackend(), settings=hub_settings(max_event_bytes=64)) as hub:
        with pytest.raises(error):
            await hub.publish(topic, data, event_type)
        assert hub.metrics.published == 0


async def test_hub_publish_accepts_data_at_the_size_limit():
    async with Hub(MemoryBackend(), settings=hub_settings(max_event_bytes=64)) as hub:
        event = await hub.publish("orders", b'"' + b"x" * 62 + b'"')
        assert len(event.data) == 64
        with pytest.raises(EventTooLarge) as info:
            await hub.publish("orders", b'"' + b"x" * 63 + b'"')
        assert (info.value.size, info.value.limit) == (65, 64)


async def test_hub_publish_many_validates_every_item_before_publishing_any():
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        with pytest.raises(InvalidEventType):
            await hub.publish_many("orders", [("message", b"1"), ("live", b"2")])
        assert (await hub.history("orders")).events == []
        assert await hub.publish_many("orders", []) == []


async def test_hub_subscribe_rejects_bad_arguments():
    async with Hub(MemoryBackend(), settings=hub_settings(queue_size=10, max_queue_size=100)) as hub:
        with pytest.raises(InvalidTopic):
            await hub.subscribe(["ok", "not ok"])
        with pytest.raises(ValueError, match="at least one topic"):
            await hub.subscribe([])
        with pytest.raises(ValueError, match="between 1 and 100"):
            await hub.subscribe(["t"], queue_size=101)
        with pytest.raises(ValueError, match="between 1 and 100"):
            await hub.subscribe(["t"], queue_size=0)
        with pytest.raises(ValueError):
            await hub.subscribe(["t"], overflow="sometimes")
        assert hub.subscriptions == 0 and hub.keys == 0


async def test_hub_shutdown_sends_each_subscription_its_own_randomised_shutdown():
    settings = hub_settings(retry_ms=1000)
    async with Hub(MemoryBackend(), settings=settings) as hub:
        subs = [await hub.subscribe(["t"]) for _ in range(20)]
        last = await hub.publish("t", b"last")
        await eventually(lambda: all(sub.queued == 1 for sub in subs))
    ends = [sub.end for sub in subs]
    assert all(end is not None and end.kind == "shutdown" for end in ends)
    assert len({id(end) for end in ends}) == 20, "each subscription gets its own message"
    retries = [end.fields["retry_ms"] for end in ends if end is not None]
    assert all(1000 <= r <= 2000 for r in retries)
    assert len(set(retries)) > 1, "reconnect hints are spread, so clients do not return at once"
    for sub in subs:
        # Queued events are still delivered before the stream ends.
        async with asyncio.timeout(1):
            assert [item async for item in sub] == [last]
        assert sub.ended


async def test_hub_shutdown_delivers_queued_events_then_stops_iteration():
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        sub = await hub.subscribe(["t"])
        published = await hub.publish_many("t", [("message", b"1"), ("message", b"2")])
        await eventually(lambda: sub.queued == 2)
    async with asyncio.timeout(1):
        assert [item async for item in sub] == published
    assert sub.end is not None and sub.end.kind == "shutdown"


async def test_hub_shutdown_wakes_a_waiting_consumer():
    hub = Hub(MemoryBackend(), settings=hub_settings())
    async with hub:
        sub = await hub.subscribe(["t"])
        consumer = asyncio.create_task(anext(aiter(sub), None))
        await asyncio.sleep(0)
    async with asyncio.timeout(2):
        assert await consumer is None


async def test_hub_pump_failure_marks_unhealthy_and_ends_streams_with_error():
    hub, backend = make_hub()
    async with hub:
        backend.poison_topic = "boom"
        quiet = await hub.subscribe(["quiet"])
        loud = await hub.subscribe(["boom"])
        assert hub.healthy
        await hub.publish("boom", b"1")
        await eventually(lambda: not hub.healthy, what="hub marked unhealthy")
        assert hub.failure is not None and "the transport broke" in hub.failure
        for sub in (quiet, loud):
            assert sub.ended
            assert sub.end is not None and sub.end.kind == "fault"
            assert sub.end.fields["reason"] == "server fault"
            assert "the transport broke" in sub.end.fields["message"]
            with pytest.raises(HubClosed):
                async with asyncio.timeout(1):
                    await sub.get()
    assert backend.closes == 1


async def test_hub_topic_stats_counts_subscribers_and_events():
    async with Hub(MemoryBackend(), settings=hub_settings()) as hub:
        sub = await hub.subscribe(["a"])
        await hub.publish_many("a", [("message", b"1"), ("message", b"2")])
        await take(sub, 2)
        stats = {s.topic: s for s in await hub.topic_stats()}
        assert stats["a"].subscribers == 1
        assert stats["a"].events == 2
        assert stats["a"].retained == 2
        assert stats["a"].last_id is not None
