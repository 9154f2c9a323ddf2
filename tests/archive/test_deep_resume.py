"""Deep resume (acceptance 4): a resume point older than the history replays from the archive, then history, live."""

from __future__ import annotations

import httpx
import orjson
import pytest
from httpx_sse import connect_sse

from broadcaster import Control, Event, Hub, format_id, parse_cursor
from broadcaster.archive import ArchiveCatalog, ArchiveOptions, Archiver, DeepReplay
from broadcaster.archive._writer import ArchiveWriter

from ..support.servers import thread_server
from ..support.waiting import eventually, eventually_sync
from .support import NDJSON_LINES, deep_items

TOPIC = "deep.sensor"


def _post(client: httpx.Client, numbers: range) -> dict:
    body = b"".join(orjson.dumps({"n": n}) + b"\n" for n in numbers)
    answer = client.post(f"/topics/{TOPIC}/events", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert answer.status_code == 200 and answer.json()["accepted"] == len(numbers)
    return answer.json()


def _archived_up_to(client: httpx.Client, last_id: str) -> bool:
    segments = client.get(f"/topics/{TOPIC}/archive").json().get("segments") or []
    return bool(segments) and segments[0]["last_id"] == last_id


def _ndjson_stream(client: httpx.Client, after: str, live: int) -> tuple[list[int], list[dict]]:
    numbers, controls = [], []
    params = {"format": "ndjson", "last_event_id": after}
    with client.stream("GET", f"/topics/{TOPIC}/events", params=params) as response:
        lines = response.iter_lines()
        for line in lines:
            item = orjson.loads(line)
            if "control" in item:
                controls.append(item)
                if item["control"] == "live":
                    break
            else:
                numbers.append(item["data"]["n"])
        with httpx.Client(base_url=str(client.base_url)) as publisher:
            _post(publisher, range(5010, 5010 + live))
        for line in lines:
            item = orjson.loads(line)
            if "control" not in item:
                numbers.append(item["data"]["n"])
                if numbers[-1] == 5010 + live - 1:
                    break
    return numbers, controls


def _sse_stream(client: httpx.Client, after: str, live: int) -> tuple[list[int], list[dict]]:
    numbers, controls = [], []
    with connect_sse(client, "GET", f"/topics/{TOPIC}/events", headers={"Last-Event-ID": after}) as source:
        events = source.iter_sse()
        for sse in events:
            if sse.event == "message" and sse.id:  # (the retry: preamble parses as an empty event)
                numbers.append(orjson.loads(sse.data)["n"])
            elif sse.event in ("reset", "live", "gap"):
                controls.append({"control": sse.event, **orjson.loads(sse.data)})
                if sse.event == "live":
                    break
        with httpx.Client(base_url=str(client.base_url)) as publisher:
            _post(publisher, range(5010, 5010 + live))
        for sse in events:
            if sse.event == "message" and sse.id:  # (the retry: preamble parses as an empty event)
                numbers.append(orjson.loads(sse.data)["n"])
                if numbers[-1] == 5010 + live - 1:
                    break
    return numbers, controls


@pytest.mark.e2e
@pytest.mark.parametrize("fmt", ["sse", "ndjson"])
def test_resume_from_before_5000_events_scrolled_out_of_a_1000_event_history(make_settings, tmp_path, fmt):
    settings = make_settings(history_size=1000, archive_dir=str(tmp_path), archive_topics="deep.*")
    with thread_server(settings) as server, httpx.Client(base_url=server.url, timeout=30) as client:
        seen = _post(client, range(10))  # a client saw these, then went away
        gone = _post(client, range(10, 5010))  # 5000 more: 4000 of them scroll out of the history
        eventually_sync(lambda: _archived_up_to(client, gone["last_id"]), what="the archive caught up")
        stream = _sse_stream if fmt == "sse" else _ndjson_stream
        numbers, controls = stream(client, seen["last_id"], live=3)
    assert numbers == list(range(10, 5013))  # all 5000, then live: no gap, no duplicate
    assert controls == [{"control": "live", "replayed": 5000, "from_archive": 4000, "from_history": 1000}]


async def _archive(hub: Hub, root, numbers: range) -> list[Event]:
    events = await hub.publish_many(TOPIC, [("message", orjson.dumps({"n": n})) for n in numbers])
    return events


async def _replay(hub: Hub, root, after: str) -> tuple[list[int | str], DeepReplay]:
    return await deep_items(hub, root, TOPIC, after)


async def test_deep_resume_after_the_history_expired_whole(make_settings, tmp_path):
    """The memory backend forgets an expired topic with its trim mark: the archive still fills the hole."""
    async with Hub(settings=make_settings(history_ttl_s=0.5)) as hub:
        async with Archiver(hub, tmp_path, [TOPIC], ArchiveOptions(), render=NDJSON_LINES) as archiver:
            first = await _archive(hub, tmp_path, range(1, 11))
            await eventually(lambda: archiver.written == 10)
            await eventually(lambda: _empty(hub), within=5, what="the history expired")
            await _archive(hub, tmp_path, range(11, 16))
            await eventually(lambda: archiver.written == 15)  # the archive reaches into the new history
            items, replay = await _replay(hub, tmp_path, first[2].id)
    assert items == list(range(4, 16))
    assert replay.live().fields == {"replayed": 12, "from_archive": 7, "from_history": 5}


async def _empty(hub: Hub) -> bool:
    return not (await hub.history(TOPIC, after=None, limit=1)).events


async def test_deep_resume_keeps_the_reset_when_the_archive_starts_after_the_resume_point(make_settings, tmp_path):
    async with Hub(settings=make_settings(history_size=5)) as hub:
        early = await _archive(hub, tmp_path, range(1, 21))  # 1..15 scroll out before any archiver runs
        async with Archiver(hub, tmp_path, [TOPIC], ArchiveOptions(), render=NDJSON_LINES) as archiver:
            await eventually(lambda: archiver.written == 5)  # it starts from the oldest retained: 16..20
            await _archive(hub, tmp_path, range(21, 31))  # 21..25 scroll out: archived only
            await eventually(lambda: archiver.written == 15)
            items, replay = await _replay(hub, tmp_path, early[2].id)
    # 4..15 are lost (nothing has them): reset first, then what the archive and the history hold.
    assert items == ["reset", *range(16, 31)]
    assert replay.live().fields == {"replayed": 15, "from_archive": 10, "from_history": 5}


async def test_deep_resume_passes_on_the_archives_own_reset_lines(make_settings, tmp_path):
    async with Hub(settings=make_settings(history_size=5)) as hub:
        events = await _archive(hub, tmp_path, range(1, 11))
        writer = ArchiveWriter(tmp_path, ArchiveOptions(), NDJSON_LINES)  # an archive with a hole after event 3
        writer.open()
        hole = Control("reset", {"reason": "test", "last_event_id": events[2].id, "topics": [TOPIC]})
        writer.write(TOPIC, [*events[:3], hole, *events[6:]])
        writer.close()
        items, _ = await _replay(hub, tmp_path, events[0].id)
    assert items == [2, 3, "reset", 6, 7, 8, 9, 10]


async def test_resume_inside_the_history_does_not_read_the_archive(hub, tmp_path):
    async with Archiver(hub, tmp_path, [TOPIC], ArchiveOptions(), render=NDJSON_LINES) as archiver:
        events = await _archive(hub, tmp_path, range(1, 6))
        await eventually(lambda: archiver.written == 5)
        items, replay = await _replay(hub, tmp_path, events[1].id)
    assert items == [3, 4, 5] and replay.live().fields == {"replayed": 3}


async def test_deep_resume_of_a_pattern_stream_is_the_plain_replay(make_settings, tmp_path):
    async with Hub(settings=make_settings(history_size=5)) as hub:
        async with Archiver(hub, tmp_path, [TOPIC], ArchiveOptions(), render=NDJSON_LINES) as archiver:
            events = await _archive(hub, tmp_path, range(1, 21))
            await eventually(lambda: archiver.written == 20)
        replay = DeepReplay(hub, ArchiveCatalog(tmp_path), ["deep.*"], after=parse_cursor(events[2].id))
        await replay.prepare()
        pages = [item async for page in replay.pages() for item in page]
    assert isinstance(pages[0], Control) and pages[0].kind == "reset"
    assert [orjson.loads(e.data)["n"] for e in pages[1:]] == list(range(16, 21))


@pytest.mark.e2e
@pytest.mark.redis
async def test_deep_resume_opened_during_a_redis_outage_waits_then_replays_from_the_archive(
    make_settings, redis_server_factory, tmp_path
):
    """A stream never answers a non-200 for a transient backend fault, deep resume included."""
    redis = redis_server_factory("--appendonly", "yes", "--appendfsync", "always")  # its data survives a kill
    settings = make_settings(redis_url=redis.url, history_size=5, archive_dir=str(tmp_path))
    async with Hub(settings=settings) as hub:  # the deployment's archiver, a process of its own
        async with Archiver(hub, tmp_path, [TOPIC], ArchiveOptions(), render=NDJSON_LINES) as archiver:
            events = await _archive(hub, tmp_path, range(1, 21))  # 1..15 scroll out of the history
            await eventually(lambda: archiver.written == 20)
    with thread_server(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            redis.stop()
            params = {"format": "ndjson", "last_event_id": events[2].id, "max_events": 17}
            async with client.stream("GET", f"/topics/{TOPIC}/events", params=params) as response:
                assert response.status_code == 200  # answered while Redis is down
                redis.start()  # with its data: the same history, the same epoch
                lines = [orjson.loads(line) async for line in response.aiter_lines()]
    numbers = [line["data"]["n"] for line in lines if "control" not in line]
    controls = [line for line in lines if line.get("control") not in (None, "heartbeat")]
    assert numbers == list(range(4, 21))
    assert controls == []  # max_events used up by the replay: no `live`, and no `reset`


async def test_deep_resume_past_a_history_that_went_backwards_sends_what_the_archive_has_after_a_reset(hub, tmp_path):
    """The archive saw events 6..8 that the history lost (a lagging replica promoted): the client at 6 gets 7, 8."""
    events = await _archive(hub, tmp_path, range(1, 6))
    epoch = events[0].epoch
    lost = [Event(TOPIC, format_id(TOPIC, epoch, n), "message", b'{"n":%d}' % n, events[-1].ts + n) for n in (6, 7, 8)]
    writer = ArchiveWriter(tmp_path, ArchiveOptions(), NDJSON_LINES)
    writer.open()
    writer.write(TOPIC, [*events, *lost])
    writer.close()
    items, replay = await _replay(hub, tmp_path, lost[0].id)
    assert items == ["reset", 7, 8]  # newer than the history: what followed 8 may be lost too
    assert replay.live().fields == {"replayed": 2, "from_archive": 2, "from_history": 0}
