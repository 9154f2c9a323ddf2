"""Export: one streamed NDJSON download of a range across segments, exact and with flat memory."""

from __future__ import annotations

import gc
import time
import tracemalloc

import orjson
import pytest

from broadcaster import Control, Event
from broadcaster.archive import ArchiveCatalog, ArchiveOptions, Bound, Range, export_blocks
from broadcaster.archive._writer import ArchiveWriter

from .conftest import TOPIC
from .support import BASE_MS, NDJSON_LINES, event_id, make_events

URL = f"/topics/{TOPIC}/archive/export"


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _numbers(body: bytes) -> list[int]:
    return [orjson.loads(line)["data"]["n"] for line in body.splitlines() if b'"control"' not in line]


async def test_export_by_ids_is_exactly_the_range_across_plain_and_gzip_segments(archive_client, built):
    events = make_events(TOPIC, 40, step_ms=1000)
    async with archive_client() as client:
        response = await client.get(URL, params={"from": events[2].id, "to": events[33].id})
        everything = await client.get(URL)
        first_only = await client.get(URL, params={"to": events[0].id})
        last_only = await client.get(URL, params={"from": events[39].id})
    assert response.status_code == 200 and response.headers["content-type"] == "application/x-ndjson"
    assert _numbers(response.content) == list(range(3, 35))
    assert response.headers["content-disposition"] == (
        f'attachment; filename="{TOPIC}_{events[2].id}_{events[33].id}.ndjson"'
    )
    assert everything.content == NDJSON_LINES(events)  # the stream's lines, byte for byte
    assert _numbers(first_only.content) == [1] and _numbers(last_only.content) == [40]


async def test_export_by_times_includes_from_and_excludes_to(archive_client, built):
    async with archive_client() as client:
        response = await client.get(URL, params={"from": _iso(BASE_MS + 5000), "to": _iso(BASE_MS + 30_000)})
        by_date = await client.get(URL, params={"from": "2025-01-14", "to": "2025-01-15"})
        offset = await client.get(URL, params={"from": "2025-01-14T11:00:05+01:00"})
    assert _numbers(response.content) == list(range(6, 31))  # ts 5 s .. 29 s
    assert (
        'filename="sensors.kitchen_2025-01-14T10-00-05Z_2025-01-14T10-00-30Z.ndjson"'
        in (response.headers["content-disposition"])
    )
    assert _numbers(by_date.content) == list(range(1, 41))
    assert _numbers(offset.content) == list(range(6, 41))


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"from": "yesterday"}, "from"),
        ({"to": "12-"}, "to"),
        ({"from": "2025-13-01"}, "from"),
        ({"from": event_id(TOPIC, 5), "to": event_id(TOPIC, 2)}, "from"),
        ({"from": "2025-01-15", "to": "2025-01-14"}, "from"),
    ],
    ids=["from-word", "to-broken-id", "from-bad-month", "ids-reversed", "times-reversed"],
)
async def test_export_bad_from_or_to_is_a_400_naming_the_parameter(archive_client, params, name):
    async with archive_client() as client:
        response = await client.get(URL, params=params)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter" and error["message"].startswith(name)


async def test_export_of_a_topic_without_archive_is_a_404(archive_client):
    async with archive_client() as client:
        response = await client.get("/topics/nothing.here/archive/export")
    assert response.status_code == 404 and response.json()["error"]["code"] == "not_archived"


async def test_export_keeps_the_reset_lines_whose_hole_overlaps_the_range(tmp_path):
    writer = ArchiveWriter(tmp_path, ArchiveOptions(), NDJSON_LINES)
    writer.open()
    reset = Control("reset", {"reason": "test", "last_event_id": None, "topics": [TOPIC]})
    events = make_events(TOPIC, 6)
    writer.write(TOPIC, [reset, *events[:2], reset, *events[2:4], reset, *events[4:]])
    writer.close()
    catalog = ArchiveCatalog(tmp_path)

    async def lines(start: Event, end: Event) -> list[str]:
        rng = Range(Bound.parse(start.id, TOPIC), Bound.parse(end.id, TOPIC))
        body = b"".join([block async for block in export_blocks(catalog, TOPIC, rng)])
        return [str(r.get("control") or r["data"]["n"]) for r in map(orjson.loads, body.splitlines())]

    # A reset line announces a hole between the events around it: kept when the hole is inside the range.
    assert await lines(events[2], events[3]) == ["3", "4"]
    assert await lines(events[3], events[4]) == ["4", "reset", "5"]
    assert await lines(events[0], events[5]) == ["1", "2", "reset", "3", "4", "reset", "5", "6"]
    after = Range(Bound.parse(events[1].id, TOPIC), None, after=True)  # deep resume after event 2: the hole after it
    body = b"".join([block async for block in export_blocks(catalog, TOPIC, after)])
    assert [r.get("control") or r["data"]["n"] for r in map(orjson.loads, body.splitlines())] == [
        "reset",
        3,
        4,
        "reset",
        5,
        6,
    ]


async def test_export_across_30_segments_streams_the_exact_events_with_flat_memory(tmp_path):
    """Acceptance 5: 30 segments (some gzip) of 200 KB, a range from inside the first to inside the last."""
    writer = ArchiveWriter(tmp_path, ArchiveOptions(segment_bytes=200_000, gzip=True), NDJSON_LINES)
    writer.open()
    pad = "x" * 900
    events = [
        Event(TOPIC, event_id(TOPIC, n), "message", orjson.dumps({"n": n, "pad": pad}), BASE_MS + n)
        for n in range(1, 6601)
    ]
    closed = []
    for start in range(0, len(events), 500):
        closed += writer.write(TOPIC, events[start : start + 500])
    for path in closed[::3]:
        writer.compress(path)
    writer.close()
    catalog = ArchiveCatalog(tmp_path)
    segments = catalog.segments(TOPIC)
    assert len(segments) >= 30 and sum(s.gzip for s in segments) >= 10
    total = len(NDJSON_LINES(events))
    rng = Range(Bound.parse(events[99].id, TOPIC), Bound.parse(events[6499].id, TOPIC))

    gc.collect()
    tracemalloc.start()
    try:
        count = 0
        expected = 100
        async for block in export_blocks(catalog, TOPIC, rng):
            for line in block.splitlines():
                assert orjson.loads(line)["data"]["n"] == expected
                expected += 1
                count += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 6401 and expected == 6501
    # The whole range is ~6 MB; what is held at once is a block or two (256 KB each) and a line split.
    assert total > 6_000_000 and peak < 2_000_000, f"peak {peak} bytes while exporting {total} bytes"
