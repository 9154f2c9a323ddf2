"""Subscription: the bounded queue, overflow policies, gap markers, wake-ups and teardown."""

from __future__ import annotations

import asyncio

import pytest

from broadcaster import Control, Event, HubClosed, OverflowPolicy, SubscriberEvicted, Subscription


def ev(n: int, data: bytes = b"{}", topic: str = "t") -> Event:
    return Event(topic, f"0000000a.0000000e.{n}", "message", data, 1000)


def make_sub(
    queue_size: int = 3,
    queue_bytes: int = 1 << 20,
    overflow: str = OverflowPolicy.DISCONNECT,
    released: list[Subscription] | None = None,
) -> Subscription:
    return Subscription(
        ["t"],
        queue_size=queue_size,
        queue_bytes=queue_bytes,
        overflow=OverflowPolicy(overflow),
        on_release=released.append if released is not None else None,
    )


def gap(first: int, last: int, dropped: int | None = None) -> Control:
    count = last - first + 1 if dropped is None else dropped
    return Control(
        "gap", {"dropped": count, "first_id": f"0000000a.0000000e.{first}", "last_id": f"0000000a.0000000e.{last}"}
    )


def ids(items: list[Event | Control]) -> list[str]:
    return [item.id if isinstance(item, Event) else f"<{item.kind}>" for item in items]


async def test_subscription_delivers_in_offer_order():
    sub = make_sub(queue_size=10)
    events = [ev(n) for n in range(1, 6)]
    for event in events:
        sub.offer(event)
    assert sub.queued == 5
    async with asyncio.timeout(1):
        assert [await sub.get() for _ in range(2)] == events[:2]
    assert sub.drain() == events[2:]
    assert sub.queued == 0
    assert sub.drain() == []


async def test_subscription_evicted_when_queue_full_in_events():
    released: list[Subscription] = []
    sub = make_sub(queue_size=3, released=released)
    for n in range(1, 4):
        sub.offer(ev(n))
    assert not sub.evicted
    sub.offer(ev(4))
    assert sub.evicted
    # The queue is freed at once: an evicted subscriber holds no memory.
    assert sub.queued == 0 and sub.drain() == []
    assert sub.ended
    assert sub.end is not None and sub.end.kind == "fault"
    assert sub.end.fields["reason"] == "slow consumer"
    assert "Last-Event-ID" in sub.end.fields["message"]
    assert released == [sub], "an evicted subscription leaves the hub at once"
    with pytest.raises(SubscriberEvicted, match="overflowed"):
        async with asyncio.timeout(1):
            await sub.get()
    sub.offer(ev(5))
    assert sub.queued == 0, "an evicted subscription takes no more events"


async def test_subscription_evicted_when_queue_full_in_bytes():
    payload = b'"' + b"x" * 100 + b'"'
    one = ev(1, payload).size
    sub = make_sub(queue_size=100, queue_bytes=2 * one)
    sub.offer(ev(1, payload))
    sub.offer(ev(2, payload))
    assert not sub.evicted and sub.queued == 2
    sub.offer(ev(3, payload))
    assert sub.evicted and sub.queued == 0


async def test_subscription_iteration_raises_when_evicted():
    sub = make_sub(queue_size=1)
    sub.offer(ev(1))
    sub.offer(ev(2))
    with pytest.raises(SubscriberEvicted):
        async with asyncio.timeout(1):
            async for _ in sub:
                pass


async def test_subscription_room_is_freed_by_consuming():
    sub = make_sub(queue_size=2)
    sub.offer(ev(1))
    sub.offer(ev(2))
    async with asyncio.timeout(1):
        assert await sub.get() == ev(1)
    sub.offer(ev(3))
    assert not sub.evicted
    assert sub.drain() == [ev(2), ev(3)]


async def test_subscription_drop_oldest_puts_one_gap_where_events_went_missing():
    sub = make_sub(queue_size=3, overflow="drop-oldest")
    for n in range(1, 7):
        sub.offer(ev(n))
    # 1..3 dropped to make room for 4..6: one merged marker in their place.
    items = sub.drain()
    assert items == [gap(1, 3), ev(4), ev(5), ev(6)]
    assert sub.dropped == 3
    assert not sub.evicted


async def test_subscription_drop_oldest_new_gap_after_consumer_caught_up():
    sub = make_sub(queue_size=2, overflow="drop-oldest")
    for n in range(1, 4):
        sub.offer(ev(n))
    assert sub.drain() == [gap(1, 1), ev(2), ev(3)]
    for n in range(4, 8):
        sub.offer(ev(n))
    assert sub.drain() == [gap(4, 5), ev(6), ev(7)]
    assert sub.dropped == 3


async def test_subscription_drop_oldest_in_bytes():
    small, big = b"1", b'"' + b"y" * 200 + b'"'
    sub = make_sub(queue_size=100, queue_bytes=ev(0, big).size + ev(0, small).size, overflow="drop-oldest")
    sub.offer(ev(1, small))
    sub.offer(ev(2, small))
    sub.offer(ev(3, big))  # does not fit beside both small ones: the oldest goes
    assert ids(sub.drain()) == ["<gap>", "0000000a.0000000e.2", "0000000a.0000000e.3"]


async def test_subscription_drop_newest_puts_one_gap_after_the_queue():
    sub = make_sub(queue_size=3, overflow="drop-newest")
    for n in range(1, 7):
        sub.offer(ev(n))
    assert sub.drain() == [ev(1), ev(2), ev(3), gap(4, 6)]
    assert sub.dropped == 3
    sub.offer(ev(7))
    assert sub.drain() == [ev(7)]


async def test_subscription_drop_newest_gap_sits_between_kept_and_later_events():
    sub = make_sub(queue_size=2, overflow="drop-newest")
    for n in range(1, 5):
        sub.offer(ev(n))
    async with asyncio.timeout(1):
        assert await sub.get() == ev(1)
    sub.offer(ev(5))  # room for one again: it goes after the marker of 3..4
    sub.offer(ev(6))  # full again: a new marker after 5
    assert sub.drain() == [ev(2), gap(3, 4), ev(5), gap(6, 6)]
    assert sub.dropped == 3


async def test_subscription_get_returns_gap_before_next_event():
    sub = make_sub(queue_size=1, overflow="drop-oldest")
    for n in range(1, 5):
        sub.offer(ev(n))
    async with asyncio.timeout(1):
        first = await sub.get()
        second = await sub.get()
    assert first == gap(1, 3)
    assert second == ev(4)


@pytest.mark.parametrize("kind", ["reset", "live"], ids=["reset", "live"])
async def test_subscription_controls_survive_drop_oldest(kind):
    sub = make_sub(queue_size=2, overflow="drop-oldest")
    sub.put_control(Control(kind, {"n": 1}))
    for n in range(1, 6):
        sub.offer(ev(n))
    assert sub.drain() == [Control(kind, {"n": 1}), gap(1, 3), ev(4), ev(5)]


async def test_subscription_drop_oldest_merges_gap_behind_a_control():
    sub = make_sub(queue_size=2, overflow="drop-oldest")
    sub.put_control(Control("live", {"replayed": 0}))
    for n in range(1, 4):
        sub.offer(ev(n))
    sub.offer(ev(4))  # the marker is now behind `live`; the next drop must still merge into it
    sub.offer(ev(5))
    items = sub.drain()
    assert items == [Control("live", {"replayed": 0}), gap(1, 3), ev(4), ev(5)]
    assert sum(1 for item in items if isinstance(item, Control) and item.kind == "gap") == 1


@pytest.mark.parametrize("control_first", [True, False], ids=["control-first", "event-first"])
@pytest.mark.parametrize("overflow", ["drop-oldest", "drop-newest"], ids=["drop-oldest", "drop-newest"])
async def test_subscription_drop_policies_keep_a_backend_gap_control(overflow, control_first):
    """A `gap` from the backend (events lost while Redis was away) has no counts; drops must not merge into it."""
    sub = make_sub(queue_size=1, overflow=overflow)
    backend_gap = Control("gap", {"reason": "events were trimmed from history while Redis was unreachable"})
    if control_first:
        sub.put_control(backend_gap)
        sub.offer(ev(1))
    else:
        sub.offer(ev(1))
        sub.put_control(backend_gap)
    sub.offer(ev(2))
    sub.offer(ev(3))
    items = sub.drain()
    assert backend_gap in items
    ours = [i for i in items if isinstance(i, Control) and i.kind == "gap" and "dropped" in i.fields]
    assert sum(g.fields["dropped"] for g in ours) == 2
    assert sub.dropped == 2
    assert [i for i in items if isinstance(i, Event)] == ([ev(3)] if overflow == "drop-oldest" else [ev(1)])


async def test_subscription_same_event_offered_twice_is_delivered_once():
    """A topic and a pattern of one subscription both match: the hub offers each event twice."""
    sub = Subscription(["t", "t*"], queue_size=10, queue_bytes=1 << 20)
    event = ev(1)
    sub.offer(event)
    sub.offer(event)
    sub.offer(ev(2))
    assert sub.drain() == [event, ev(2)]


async def test_subscription_a_batch_through_two_selectors_is_delivered_once():
    """Redis sends a published batch once per matching key: all of it by topic, then all by pattern."""
    sub = Subscription(["t", "t*"], queue_size=10, queue_bytes=1 << 20)
    batch = [ev(1), ev(2), ev(3)]
    for event in batch + batch:
        sub.offer(event)
    assert sub.drain() == batch


async def test_subscription_wait_wakes_on_offer():
    sub = make_sub()
    waiter = asyncio.create_task(sub.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    sub.offer(ev(1))
    async with asyncio.timeout(1):
        await waiter


async def test_subscription_wait_wakes_on_wake():
    sub = make_sub()
    waiter = asyncio.create_task(sub.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    sub.wake()
    async with asyncio.timeout(1):
        await waiter
    assert sub.drain() == []


async def test_subscription_wake_before_wait_is_not_lost():
    sub = make_sub()
    sub.wake()
    async with asyncio.timeout(1):
        await sub.wait()


async def test_subscription_wait_wakes_on_finish_and_ends_after_queue():
    sub = make_sub(queue_size=10)
    sub.offer(ev(1))
    sub.drain()
    waiter = asyncio.create_task(sub.wait())
    await asyncio.sleep(0)
    assert not waiter.done()
    shutdown = Control("shutdown", {"retry_ms": 3000})
    sub.offer(ev(2))  # queued before the end: still delivered
    sub.finish(shutdown)
    async with asyncio.timeout(1):
        await waiter
    assert not sub.ended
    assert sub.drain() == [ev(2)]
    assert sub.ended and sub.end == shutdown
    sub.offer(ev(3))
    assert sub.drain() == []


async def test_subscription_get_raises_hub_closed_after_finish():
    sub = make_sub()
    sub.offer(ev(1))
    sub.finish(Control("shutdown"))
    async with asyncio.timeout(1):
        assert await sub.get() == ev(1)
        with pytest.raises(HubClosed):
            await sub.get()


async def test_subscription_iteration_stops_after_finish():
    sub = make_sub()
    sub.offer(ev(1))
    sub.offer(ev(2))
    sub.finish()
    async with asyncio.timeout(1):
        got = [item async for item in sub]
    assert got == [ev(1), ev(2)]


async def test_subscription_blocked_get_wakes_on_finish():
    sub = make_sub()
    getter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    sub.finish()
    with pytest.raises(HubClosed):
        async with asyncio.timeout(1):
            await getter


async def test_subscription_finish_is_idempotent_and_keeps_first_end():
    sub = make_sub()
    first = Control("shutdown", {"retry_ms": 1})
    sub.finish(first)
    sub.finish(Control("error", {"reason": "later"}))
    assert sub.end == first


async def test_subscription_aclose_is_idempotent_and_releases_once():
    released: list[Subscription] = []
    sub = make_sub(released=released)
    sub.offer(ev(1))
    async with sub:
        pass
    assert released == [sub]
    assert sub.ended and sub.queued == 0
    await sub.aclose()
    sub.close()
    assert released == [sub]
    sub.offer(ev(2))
    assert sub.drain() == []


async def test_subscription_aclose_wakes_a_waiting_consumer():
    sub = make_sub()
    getter = asyncio.create_task(sub.get())
    await asyncio.sleep(0)
    await sub.aclose()
    with pytest.raises(HubClosed):
        async with asyncio.timeout(1):
            await getter


async def test_subscription_put_control_costs_no_room():
    sub = make_sub(queue_size=1)
    sub.put_control(Control("reset"))
    sub.put_control(Control("live"))
    sub.offer(ev(1))
    assert not sub.evicted
    assert ids(sub.drain()) == ["<reset>", "<live>", "0000000a.0000000e.1"]
