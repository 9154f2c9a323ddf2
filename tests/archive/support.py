"""Helpers for archive tests: events with known ids, reading a topic's archive back."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import orjson

from broadcaster import Event, Hub, format_id, parse_cursor
from broadcaster.archive import ArchiveCatalog, DeepReplay
from broadcaster.archive._layout import segment_files
from broadcaster.http.streams.encoders import NDJSONEncoder

#: The NDJSON stream's lines: what the server hands the archive to write.
NDJSON_LINES = NDJSONEncoder().download

BASE_MS = 1_736_848_800_000  # 2025-01-14T10:00:00Z
#: The epoch of the events these helpers make (any 8 hex digits: epochs are names, not numbers).
EPOCH = "5eed0001"


def event_id(topic: str, n: int, epoch: str = EPOCH) -> str:
    """The id of the `n`th event of `topic` in `epoch`: `<tag>.<epoch>.<n>`."""
    return format_id(topic, epoch, n)


def make_events(
    topic: str, count: int, *, start: int = 1, ts: int = BASE_MS, step_ms: int = 0, epoch: str = EPOCH
) -> list[Event]:
    """`count` events of `topic` with seqs n from `start` in `epoch`, data `{"n": n}`."""
    events = []
    for n in range(start, start + count):
        at = ts + (n - start) * step_ms
        events.append(Event(topic, event_id(topic, n, epoch), "message", orjson.dumps({"n": n}), at))
    return events


def read_topic(root: Path, topic: str) -> list[dict[str, Any]]:
    """Every line of a topic's segments, oldest first, parsed (gzip ones decompressed)."""
    records = []
    for path in segment_files(root / topic).values():
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        assert raw == b"" or raw.endswith(b"\n"), f"{path.name} ends in an unfinished line"
        records.extend(orjson.loads(line) for line in raw.splitlines())
    return records


async def deep_items(hub: Hub, root: Path, topic: str, after: str) -> tuple[list[int | str], DeepReplay]:
    """A deep replay of `topic` after the resume point `after`: each event's `n`, or a control's kind."""
    replay = DeepReplay(hub, ArchiveCatalog(root), [topic], after=parse_cursor(after))
    await replay.prepare()
    items: list[int | str] = []
    async for page in replay.pages():
        items += [orjson.loads(i.data)["n"] if isinstance(i, Event) else i.kind for i in page]
    return items, replay


def event_numbers(records: list[dict[str, Any]]) -> list[int]:
    return [r["data"]["n"] for r in records if "control" not in r]
