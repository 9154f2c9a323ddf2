"""Replay (resume and tail) against the hub, on both backends: order, bounds, seams and resets.

Each test plays the stream's part: subscribe live first, prepare the replay, send its
pages, then release the held live events past the seam (`replay.seam`). What the client
would receive must be every event after the start point, once each, each topic in seq order.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import orjson
import pytest

from broadcaster import Hub
from broadcaster._event import Control, Event
from broadcaster._ids import Cursor, StreamCursor, parse_cursor, topic_tag
from broadcaster._replay import Replay

from .support.waiting import eventually


@pytest.fixture
def make_hub(settings):
    @contextlib.asynccontextmanager
    async def make(**changes):
        async with Hub(settings=settings.replace(**changes)) as hub:
            yield hub

    return make


async def publish(hub: Hub, topic: str, *values: int) -> list[Event]:
    return await hub.publish_many(topic, [("message", orjson.dumps(v)) for v in values])


async def replayed_items(replay: Replay) -> list[Event | Control]:
    items: list[Event | Control] = []
    async with asyncio.timeout(5):
        async for page in replay.pages():
            assert 0 < sum(type(i) is Event for i in page) <= replay.page_size or page == [page[0]]
            items.extend(page)
    return items


def released(held: list[Event | Control], replay: Replay) -> list[Event]:
    """The held live events a stream sends after the replay: those past the seam."""
    return [i for i in replay.seam(held) if type(i) is Event]


def after(*events: Event, base_ms: int | None = None) -> Cursor:
    """The resume point a client sends after receiving `events` (the last of each topic counts)."""
    cursor = StreamCursor(0 if base_ms is None else base_ms, limit=64)
    text = b""
    for event in events:
        text = cursor.advance(event.topic, event.id.encode())
    return parse_cursor(text.decode() if base_ms is not None else text.decode().partition("~")[2])


def ids(items) -> list[str]:
    return [i.id for i in items if type(i) is Event]


def controls(items, kind: str) -> list[Control]:
    return [i for i in items if type(i) is Control and i.kind == kind]


def assert_in_order(events: list[Event]) -> None:
    """Per topic: seqs strictly increase; across topics: publish times do not go back."""
    for topic in {e.topic for e in events}:
        seqs = [e.seq for e in events if e.topic == topic]
        assert seqs == sorted(set(seqs)), f"seqs of {topic} must strictly increase"


async def test_replay_resume_merges_topics_and_patterns_by_publish_time(hub):
    first = await publish(hub, "a", 0)
    published = []
    for n in range(1, 13):
        published += await publish(hub, ["a", "b", "c.x", "c.y", "other"][n % 5], n)
    async with await hub.subscribe(["a", "b", "c.*"]) as sub:
        # The client saw a's first event; b and the c.* topics had nothing for it since first.ts.
        replay = Replay(hub, ["a", "b", "c.*"], after=after(first[0], base_ms=first[0].ts), page_size=4)
        await replay.prepare()
        items = await replayed_items(replay)
        expected = [e for e in published if e.topic != "other"]
        assert sorted(ids(items)) == sorted(e.id for e in expected)
        assert len(ids(items)) == len(expected)
        events = [i for i in items if type(i) is Event]
        assert [e.ts for e in events] == sorted(e.ts for e in events), "merged by publish time"
        for topic in ("a", "b", "c.x", "c.y"):
            assert [e.json() for e in events if e.topic == topic] == [e.json() for e in expected if e.topic == topic]
        assert not controls(items, "reset")
        assert replay.replayed == len(expected)
        assert replay.live() == Control("live", {"replayed": len(expected)})
        assert replay.floors == {t: (e.epoch, e.seq) for e in expected for t in [e.topic]}
        assert sub.queued == 0


async def test_replay_resume_from_one_topic_id_alone_announces_the_topics_it_has_no_position_of(hub):
    """A bare id on a multi-topic stream says nothing of the other topics: their events cannot be matched."""
    (a1,) = await publish(hub, "a", 1)
    await publish(hub, "b", 2)
    (a3,) = await publish(hub, "a", 3)
    async with await hub.subscribe(["a", "b"]):
        replay = Replay(hub, ["a", "b"], after=parse_cursor(a1.id))
        await replay.prepare()
        items = await replayed_items(replay)
    assert [i.kind for i in items if type(i) is Control] == ["reset"]
    assert items[0].fields["topics"] == ["b"]
    assert "no position" in items[0].fields["reason"]
    assert ids(items) == [a3.id]


async def test_replay_stays_in_id_order_when_topics_are_published_during_the_replay(hub):
    """Live events of one topic must not follow newer replayed events of another (a resume would skip them)."""
    start = (await publish(hub, "a", 0))[0]
    await publish(hub, "a", 1)
    await publish(hub, "b", 2, 3)  # a full page on b: its next page is read during the replay
    async with await hub.subscribe(["a", "b"]) as sub:
        replay = Replay(hub, ["a", "b"], after=after(start, base_ms=start.ts), page_size=2)
        await replay.prepare()
        sent: list[Event | Control] = []
        async with asyncio.timeout(5):
            async for page in replay.pages():
                sent.extend(page)
                if len(sent) == 2:  # while the client takes the first page, both topics move on
                    await publish(hub, "a", 4)
                    await publish(hub, "b", 5)
        await eventually(lambda: sub.queued == 2)
        stream = [i for i in sent if type(i) is Event] + released(sub.drain(), replay)
        assert sorted(e.json() for e in stream) == [1, 2, 3, 4, 5]
        assert [e.json() for e in stream if e.topic == "a"] == [1, 4]
        assert [e.json() for e in stream if e.topic == "b"] == [2, 3, 5]
        assert_in_order(stream)


async def test_replay_drops_held_events_published_between_subscribe_and_history_read(hub):
    start = (await publish(hub, "t", 0))[0]
    async with await hub.subscribe(["t"]) as sub:
        await publish(hub, "t", 1, 2, 3)  # both held live and in the history the replay reads
        await eventually(lambda: sub.queued == 3)
        replay = Replay(hub, ["t"], after=after(start))
        await replay.prepare()
        replayed = [i for i in await replayed_items(replay) if type(i) is Event]
        await publish(hub, "t", 4)
        await eventually(lambda: sub.queued == 4)
        stream = replayed + released(sub.drain(), replay)
        assert [e.json() for e in stream] == [1, 2, 3, 4]
        assert replay.live().fields == {"replayed": 3}


@pytest.mark.parametrize("count", [1, 2, 3, 4, 6, 7], ids=lambda n: f"{n}-events")
async def test_replay_pages_at_page_size_boundaries_lose_and_repeat_nothing(hub, count):
    start = (await publish(hub, "t", -1))[0]
    published = await publish(hub, "t", *range(count))
    async with await hub.subscribe(["t"]):
        replay = Replay(hub, ["t"], after=after(start), page_size=3)
        await replay.prepare()
        pages = []
        async with asyncio.timeout(5):
            async for page in replay.pages():
                pages.append(page)
        assert [len(p) for p in pages] == [3] * (count // 3) + ([count % 3] if count % 3 else [])
        assert [e.id for p in pages for e in p] == [e.id for e in published]


async def test_replay_resume_at_the_newest_event_replays_nothing_and_says_live(hub):
    last = (await publish(hub, "t", 1, 2))[-1]
    async with await hub.subscribe(["t"]):
        replay = Replay(hub, ["t"], after=after(last))
        await replay.prepare()
        assert await replayed_items(replay) == []
        assert replay.live() == Control("live", {"replayed": 0})
        assert replay.floors == {"t": (last.epoch, last.seq)}


async def test_replay_pattern_without_retained_topics_replays_nothing(hub):
    start = (await publish(hub, "a", 0))[0]
    await publish(hub, "a", 1)
    async with await hub.subscribe(["nothing.*", "a"]):
        replay = Replay(hub, ["nothing.*", "a"], after=after(start, base_ms=start.ts))
        await replay.prepare()
        assert [e.json() for e in await replayed_items(replay)] == [1]
    async with await hub.subscribe(["nothing.*"]) as sub:
        replay = Replay(hub, ["nothing.*"], after=after(start, base_ms=start.ts))
        await replay.prepare()
        assert await replayed_items(replay) == []
        assert replay.floors == {}  # nothing is dropped: a topic that appears later is all live
        (new,) = await publish(hub, "nothing.new", 2)
        await eventually(lambda: sub.queued == 1)
        assert released(sub.drain(), replay) == [new]


async def test_replay_tail_takes_the_newest_events_across_topics(hub):
    """Across topics, "newest" is by publish time (milliseconds): the events here are a millisecond apart."""
    for n in range(10):
        (event,) = await publish(hub, ["a", "b", "c.x"][n % 3], n)
        await eventually(lambda e=event: time.time_ns() // 1_000_000 > e.ts, what="the next millisecond")
    async with await hub.subscribe(["a", "b", "c.*"]):
        replay = Replay(hub, ["a", "b", "c.*"], tail=4)
        await replay.prepare()
        items = await replayed_items(replay)
        assert [e.json() for e in items] == [6, 7, 8, 9]
        assert replay.live().fields == {"replayed": 4}


async def test_replay_tail_larger_than_retained_sends_all_retained(make_hub):
    async with make_hub(history_size=5) as hub:
        await publish(hub, "t", *range(8))
        async with await hub.subscribe(["t"]):
            replay = Replay(hub, ["t"], tail=50)
            await replay.prepare()
            items = await replayed_items(replay)
            assert [e.json() for e in items] == [3, 4, 5, 6, 7]
            assert not controls(items, "reset")


async def test_replay_tail_zero_or_nothing_retained_replays_nothing(hub):
    async with await hub.subscribe(["t"]):
        for tail in (3, 0):  # nothing retained yet; then something retained but tail=0
            replay = Replay(hub, ["t"], tail=tail)
            await replay.prepare()
            assert await replayed_items(replay) == []
            assert replay.floors == {}  # every live event is new
            await publish(hub, "t", 1)


async def test_replay_reset_when_resume_point_was_trimmed_then_what_is_retained(make_hub):
    async with make_hub(history_size=5) as hub:
        published = await publish(hub, "t", *range(10))
        async with await hub.subscribe(["t", "u"]):
            replay = Replay(hub, ["t", "u"], after=after(published[1], base_ms=published[1].ts))
            await replay.prepare()
            items = await replayed_items(replay)
        assert items[0] == Control(
            "reset",
            {
                "reason": "the resume point is older than the retained history; events after it were lost",
                "topics": ["t"],
            },
        )
        assert [e.json() for e in items[1:]] == [5, 6, 7, 8, 9]
        assert replay.live().fields == {"replayed": 5}


async def test_replay_reset_when_resume_point_is_older_than_history_ttl(make_hub):
    async with make_hub(history_ttl_s=0.5) as hub:
        old = await publish(hub, "t", 1, 2)
        expires = time.monotonic() + 0.6
        await eventually(lambda: time.monotonic() > expires, what="the first events expired")
        await publish(hub, "t", 3, 4)
        async with await hub.subscribe(["t"]):
            replay = Replay(hub, ["t"], after=after(old[0]))
            await replay.prepare()
            items = await replayed_items(replay)
    assert [i.kind for i in items if type(i) is Control] == ["reset"]
    assert items[0].fields["topics"] == ["t"]
    assert [e.json() for e in items[1:]] == [3, 4]


async def test_replay_idle_topic_whose_events_expired_resumes_without_reset(make_hub):
    """Every event the client saw expired and nothing came since: nothing was lost, no reset."""
    async with make_hub(history_ttl_s=0.3) as hub:
        (last,) = await publish(hub, "t", 1)
        expires = time.monotonic() + 0.4
        await eventually(lambda: time.monotonic() > expires, what="the event expired")
        async with await hub.subscribe(["t"]):
            replay = Replay(hub, ["t"], after=after(last))
            await replay.prepare()
            assert await replayed_items(replay) == []


async def test_replay_resume_point_newer_than_the_history_gets_reset_and_then_every_live_event(hub):
    (last,) = await publish(hub, "t", 1)
    beyond = parse_cursor(f"{topic_tag('t')}.{last.epoch}.{last.seq + 5}")
    async with await hub.subscribe(["t"]) as sub:
        replay = Replay(hub, ["t"], after=beyond)
        await replay.prepare()
        items = await replayed_items(replay)
        assert [i.kind for i in items] == ["reset"]
        assert "newer than any event" in items[0].fields["reason"]
        assert "history was lost" in items[0].fields["reason"]
        await publish(hub, "t", 2)
        await eventually(lambda: sub.queued == 1)
        assert [e.json() for e in released(sub.drain(), replay)] == [2]


async def test_replay_resume_point_of_another_epoch_gets_reset_then_the_current_history(hub):
    (current,) = await publish(hub, "t", 1)
    lost = parse_cursor(f"{topic_tag('t')}.{'0' * 8}.7")  # an epoch this backend never had (a restart)
    async with await hub.subscribe(["t"]):
        replay = Replay(hub, ["t"], after=lost)
        await replay.prepare()
        items = await replayed_items(replay)
    assert [i.kind if type(i) is Control else i.id for i in items] == ["reset", current.id]
    assert "history" in items[0].fields["reason"] and "lost" in items[0].fields["reason"]


async def test_replay_old_format_id_gets_reset_then_the_whole_history(hub):
    """Ids of the scheme before per-topic ids (`<ms>-<n>`) name no current history: reset, never a 400.

    Every event of the new scheme was published after the upgrade: the client saw none of them."""
    await publish(hub, "t", 1)
    async with await hub.subscribe(["t"]):
        replay = Replay(hub, ["t"], after=parse_cursor("1795384983745-42"))
        await replay.prepare()
        items = await replayed_items(replay)
    assert [i.kind if type(i) is Control else i.json() for i in items] == ["reset", 1]
    assert "older server version" in items[0].fields["reason"]


async def test_replay_reports_events_trimmed_while_it_ran(make_hub):
    async with make_hub(history_size=6) as hub:
        published = await publish(hub, "t", *range(1, 7))
        async with await hub.subscribe(["t"]) as sub:
            replay = Replay(hub, ["t"], after=after(published[0]), page_size=2)
            await replay.prepare()
            items: list[Event | Control] = []
            async with asyncio.timeout(5):
                async for page in replay.pages():
                    items.extend(page)
                    if len(items) == 2:  # a fast producer overtakes a slow replay
                        await publish(hub, "t", *range(7, 13))
            await eventually(lambda: sub.queued == 6)
            live = released(sub.drain(), replay)
    assert [i.json() if type(i) is Event else i.kind for i in items] == [2, 3, 4, 5, "reset"]
    assert items[-1].fields["last_event_id"] == published[4].id  # lost: what came after 5
    assert [e.json() for e in live] == [7, 8, 9, 10, 11, 12]


def test_replay_needs_exactly_one_start_point():
    with pytest.raises(ValueError, match="exactly one"):
        Replay(None, ["t"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="exactly one"):
        Replay(None, ["t"], after=parse_cursor("1-1"), tail=3)  # type: ignore[arg-type]
