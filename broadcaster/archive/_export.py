"""Reading a range of a topic's archive across segments: the export download and deep resume.

A range is bounded by event ids or by times (`Bound`). Segments wholly inside it
are streamed as they are, block by block; only the segments at its ends are read
line by line (the head of each line gives its id and time without parsing its
data). Blocks are read in a worker thread and gzip segments decompressed as they
stream, so memory stays flat whatever the range's size.

A `reset` line is kept when the hole it announces (the ids between the events
around it) overlaps the range; with `after` (deep resume) any hole after the start
does. (A `reset` line at the very end of a segment that lies wholly before the start
is not seen.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass

from .._event import Control, Event, EventId, parse_id
from .._exceptions import InvalidEventId
from . import _lines
from ._catalog import ArchiveCatalog, SegmentInfo


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a range: an event id or a time (Unix ms). `text` is what the client sent."""

    text: str
    id: EventId | None = None
    ts: int | None = None

    @classmethod
    def parse(cls, text: str) -> Bound:
        """An event id, or an ISO 8601 time or date (UTC unless it names an offset). Raises `ValueError`."""
        try:
            return cls(text, id=parse_id(text))
        except InvalidEventId:
            pass
        try:
            when = datetime.datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(
                f"{text[:64]!r} is neither an event id nor an ISO 8601 time (2025-01-14T10:00:00Z or 2025-01-14)"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=datetime.UTC)
        return cls(text, ts=int(when.timestamp() * 1000))


@dataclass(frozen=True, slots=True)
class Range:
    """Events from `start` (inclusive) to `end`: inclusive for an id, exclusive for a time.

    `after` makes the start exclusive (deep resume: the events after the client's last one).
    """

    start: Bound | None = None
    end: Bound | None = None
    after: bool = False

    def position(self, event_id: EventId, ts: int) -> int:
        """-1 before the range, 0 inside, 1 after it."""
        start, end = self.start, self.end
        if start is not None:
            if start.id is not None and (event_id < start.id or (self.after and event_id == start.id)):
                return -1
            if start.ts is not None and ts < start.ts:
                return -1
        if end is not None:
            if end.id is not None and event_id > end.id:
                return 1
            if end.ts is not None and ts >= end.ts:
                return 1
        return 0

    def past_start(self, event_id: EventId, ts: int) -> bool:
        """Whether an event in the range lies beyond its start: a hole just before it is in the range."""
        start = self.start
        if start is None or self.after:
            return True
        return event_id > start.id if start.id is not None else start.ts is None or ts > start.ts

    def at_end(self, event_id: EventId) -> bool:
        """Whether an event is the range's last (its end is this id)."""
        return self.end is not None and self.end.id == event_id

    def covers(self, info: SegmentInfo) -> int | None:
        """Where a described segment lies: -1 before, 1 after, 0 wholly inside; None: it straddles an end."""
        if info.first_id is None or info.last_id is None or info.first_ts is None or info.last_ts is None:
            return None  # no event in it (only reset lines): read it line by line
        first_id, last_id = parse_id(info.first_id), parse_id(info.last_id)
        last = self.position(last_id, info.last_ts)
        first = self.position(first_id, info.first_ts)
        if last < 0:
            return -1
        if first > 0:
            return 1
        # Wholly inside, and no reset line at either end can announce a hole outside the range.
        inside = first == last == 0 and self.past_start(first_id, info.first_ts) and not self.at_end(last_id)
        return 0 if inside else None


class _Filter:
    """Keeps the lines of a stretch of a segment that fall in the range (see the module docstring)."""

    def __init__(self, rng: Range) -> None:
        self.range = rng
        self.pending: list[bytes] = []
        self.done = False

    def feed(self, block: bytes) -> bytes:
        out: list[bytes] = []
        for line in block.splitlines(keepends=True):
            head = _lines.event_head(line)
            if head is not None:
                event_id, ts = parse_id(head[0]), head[2]
            else:
                record = _lines.parse_line(line)
                if record is None or not _lines.is_event(record):
                    self.pending.append(line)  # a reset line: its fate depends on the events around it
                    continue
                event_id, ts = parse_id(str(record["id"])), int(record["ts"])
            position = self.range.position(event_id, ts)
            if position < 0:
                self.pending.clear()
                continue
            if position > 0:
                out.extend(self.pending)  # a hole between an event inside and one after the end
                self.pending.clear()
                self.done = True
                break
            if self.pending and self.range.past_start(event_id, ts):
                out.extend(self.pending)  # a hole that reaches into the range
            self.pending.clear()
            out.append(line)
            if self.range.at_end(event_id):
                self.done = True  # nothing after the last event of the range belongs to it
                break
        return b"".join(out)

    def finish(self) -> bytes:
        tail, self.pending = b"".join(self.pending), []
        return tail


async def _segment_blocks(info: SegmentInfo) -> AsyncGenerator[bytes, None]:
    f = await asyncio.to_thread(_lines.open_segment, info.path)
    try:
        blocks: Iterator[bytes] = _lines.read_blocks(f, None if info.gzip else info.size)
        while (block := await asyncio.to_thread(next, blocks, None)) is not None:
            yield block
    finally:
        await asyncio.to_thread(f.close)


def plan(catalog: ArchiveCatalog, topic: str, rng: Range) -> list[tuple[SegmentInfo, bool]]:
    """The segments to read, oldest first, each with whether it must be filtered line by line. Blocking."""
    chosen = []
    for info in catalog.segments(topic):
        info = catalog.describe(info)
        where = rng.covers(info)
        if where == 1:
            break
        if where != -1:
            chosen.append((info, where is None))
    return chosen


async def export_blocks(catalog: ArchiveCatalog, topic: str, rng: Range) -> AsyncGenerator[bytes, None]:
    """The range's lines as blocks of whole NDJSON lines, oldest first."""
    segments = await asyncio.to_thread(plan, catalog, topic, rng)
    line_filter = _Filter(rng)
    for info, filtered in segments:
        # aclosing: a consumer that stops early (deep resume at the history's seam) closes the file now.
        async with contextlib.aclosing(_segment_blocks(info)) as blocks:
            async for block in blocks:
                if not filtered:
                    yield line_filter.finish() + block
                    continue
                kept = line_filter.feed(block)
                if kept:
                    yield kept
                if line_filter.done:
                    return
    tail = line_filter.finish()
    if tail:
        yield tail


def items_of(topic: str, block: bytes) -> list[Event | Control]:
    """The events and `reset` lines of a block of segment lines, as the stream sends them.

    An event shares the line's data bytes (no JSON parsing of the data); a `reset` line becomes
    a `reset` control message (without the `ts` the archive adds).
    """
    items: list[Event | Control] = []
    for line in block.splitlines():
        head = _lines.event_head(line)
        if head is not None:
            event_id, event_type, ts, start = head
            items.append(Event(topic, event_id, event_type, line[start:-1], ts))
            continue
        record = _lines.parse_line(line)
        if record is not None and record.get("control") == "reset":
            items.append(Control("reset", {k: v for k, v in record.items() if k not in ("control", "ts")}))
    return items
