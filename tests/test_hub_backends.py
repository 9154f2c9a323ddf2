"""Hub behaviours that depend on how a backend delivers, on both backends (Redis: real server)."""

from __future__ import annotations

import asyncio

import pytest

from broadcaster import Event, InvalidEventData


async def _events(sub, count: int) -> list[Event]:
    got: list[Event] = []
    async with asyncio.timeout(10):
        while len(got) < count:
            item = await sub.get()
            if isinstance(item, Event):
                got.append(item)
    return got


async def test_a_published_batch_reaches_a_topic_and_pattern_subscriber_once(hub):
    """Redis delivers a batch once per matching key (topic, then pattern): each event arrives once."""
    both = await hub.subscribe(["plant.a", "plant.*"])
    published = await hub.publish_many("plant.a", [("message", b'{"n":%d}' % n) for n in range(50)])
    marker = await hub.publish("plant.a", b'"end"')
    assert await _events(both, 51) == [*published, marker]
    assert both.queued == 0, "no duplicate was queued behind the marker"


async def test_events_of_a_batch_keep_their_order_across_subscribers(hub):
    subs = [await hub.subscribe(["t"]) for _ in range(5)]
    published = await hub.publish_many("t", [("message", b"%d" % n) for n in range(200)])
    for sub in subs:
        assert await _events(sub, 200) == published


@pytest.mark.parametrize("data", [b'{"a":\n1}', b'{"a":\r1}'], ids=["lf", "cr"])
async def test_backend_refuses_data_on_several_lines(hub, data):
    """The hub checks it, and so does the backend itself (producers may call it directly)."""
    with pytest.raises(InvalidEventData):
        await hub.backend.publish("t", [("message", data)])


@pytest.mark.parametrize(
    "batch",
    [[b"1", b"{\n}"], [b"1", b""], [b""], [b"1", b"2\r"], [b"\n", b"1"]],
    ids=["lf-in-second", "empty-second", "empty-only", "cr-in-second", "bare-lf"],
)
async def test_backend_refuses_a_batch_with_one_bad_item_and_publishes_none_of_it(hub, batch):
    sub = await hub.subscribe(["t"])
    with pytest.raises(InvalidEventData):
        await hub.backend.publish("t", [("message", data) for data in batch])
    assert (await hub.history("t")).events == []
    marker = await hub.publish("t", b'"after"')
    assert await _events(sub, 1) == [marker], "nothing of the refused batch was delivered"
