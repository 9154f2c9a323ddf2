"""Reading a range of a topic's archive across segments: the export download and deep resume.

A range is bounded by event ids or by times (`Bound`). An id is placed in the files
exactly: by its epoch's run and its seq (`_order`), never by its time, since ids order
events within an epoch only and the files give the order of the epochs. `plan` resolves
the bounds against the topic's archive (a `RangeError` names a bound it cannot place)
and picks the segments. Segments wholly inside the range are streamed as they are,
block by block; only the segments at its ends are read line by line (the head of each
line gives its id and time without parsing its data). Blocks are read in a worker
thread and gzip segments decompressed as they stream, so memory stays flat whatever the
range's size.

A `reset` line is kept when the hole it announces (between the events around it)
overlaps the range; with `after` (deep resume) any hole after the start does. (A `reset`
line at the very end of a segment that lies wholly before the start is not seen.)
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncGenerator, Iterator
from dataclasses import dataclass

from .._event import Control, Event
from .._exceptions import InvalidEventId
from .._ids import parse_event_id, topic_tag
from . import _lines
from ._catalog import ArchiveCatalog, SegmentInfo
from ._order import EpochOrder, Key, Parts, id_parts


class RangeError(ValueError):
    """A bound the archive cannot place (`status` 404) or bounds in the wrong order (400)."""

    def __init__(self, parameter: str, message: str, status: int = 400) -> None:
        super().__init__(f"{parameter}: {message}")
        self.parameter = parameter
        self.status = status


@dataclass(frozen=True, slots=True)
class Bound:
    """One end of a range: an event id (its epoch and seq) or a time (Unix ms). `text` is what the client sent."""

    text: str
    id: Parts | None = None
    ts: int | None = None

    @classmethod
    def parse(cls, text: str, topic: str) -> Bound:
        """An event id of `topic`, or an ISO 8601 time or date (UTC unless it names an offset). Raises `ValueError`."""
        try:
            ref = parse_event_id(text)
        except InvalidEventId:
            parts = id_parts(text)  # an id of the scheme before 0.2, as archives written then hold
            if parts is not None:
                return cls(text, id=parts)
        else:
            if ref.tag != topic_tag(topic):
                raise ValueError(f"{text[:64]!r} is an event id of another topic")
            return cls(text, id=(ref.epoch, ref.seq, 0))
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


class Window:
    """A `Range` placed in one topic's archive: its id bounds as keys of the archive's `order`.

    Raises `RangeError` if an id bound's epoch is not in the archive, or `from` is after `to`.
    """

    def __init__(self, rng: Range, order: EpochOrder) -> None:
        self.order = order
        self.after = rng.after
        self.start_key, self.start_ts = self._place("from", rng.start)
        self.end_key, self.end_ts = self._place("to", rng.end)
        start, end = rng.start, rng.end
        if start is not None and end is not None:
            reversed_ids = self.start_key is not None and self.end_key is not None and self.start_key > self.end_key
            reversed_ts = self.start_ts is not None and self.end_ts is not None and self.start_ts > self.end_ts
            if reversed_ids or reversed_ts:
                raise RangeError("from", f"{start.text[:64]!r} is after to ({end.text[:64]!r})")

    def _place(self, parameter: str, bound: Bound | None) -> tuple[Key | None, int | None]:
        if bound is None:
            return None, None
        if bound.id is None:
            return None, bound.ts
        key = self.order.key(bound.id)
        if key is None:
            message = f"the event id {bound.text[:64]!r} is not in this topic's archive (not archived, or removed)"
            raise RangeError(parameter, message, 404)
        return key, None

    def position(self, key: Key, ts: int) -> int:
        """-1 before the range, 0 inside, 1 after it."""
        start, end = self.start_key, self.end_key
        if start is not None and (key < start or (self.after and key == start)):
            return -1
        if self.start_ts is not None and ts < self.start_ts:
            return -1
        if end is not None and key > end:
            return 1
        if self.end_ts is not None and ts >= self.end_ts:
            return 1
        return 0

    def past_start(self, key: Key, ts: int) -> bool:
        """Whether an event in the range lies beyond its start: a hole just before it is in the range."""
        if self.after:
            return True
        if self.start_key is not None:
            return key > self.start_key
        return self.start_ts is None or ts > self.start_ts

    def at_end(self, key: Key) -> bool:
        """Whether an event is the range's last (its end is this id)."""
        return self.end_key is not None and self.end_key == key

    def covers(self, info: SegmentInfo) -> int | None:
        """Where a described segment lies: -1 before, 1 after, 0 wholly inside; None: it straddles an end."""
        first_key, last_key = self.order.key_of(info.first_id), self.order.key_of(info.last_id)
        if first_key is None or last_key is None or info.first_ts is None or info.last_ts is None:
            return None  # no event in it (only reset lines): read it line by line
        last = self.position(last_key, info.last_ts)
        first = self.position(first_key, info.first_ts)
        if last < 0:
            return -1
        if first > 0:
            return 1
        # Wholly inside, and no reset line at either end can announce a hole outside the range.
        inside = first == last == 0 and self.past_start(first_key, info.first_ts) and not self.at_end(last_key)
        return 0 if inside else None


class _Filter:
    """Keeps the lines of a stretch of a segment that fall in the range (see the module docstring)."""

    def __init__(self, window: Window) -> None:
        self.range = window
        self.pending: list[bytes] = []
        self.done = False

    def feed(self, block: bytes) -> bytes:
        out: list[bytes] = []
        for line in block.splitlines(keepends=True):
            head = _lines.event_head(line)
            if head is not None:
                key, ts = self.range.order.key_of(head[0]), head[2]
            else:
                record = _lines.parse_line(line)
                if record is None or not _lines.is_event(record):
                    self.pending.append(line)  # a reset line: its fate depends on the events around it
                    continue
                key, ts = self.range.order.key_of(str(record["id"])), int(record["ts"])
            if key is None:  # not an id of either scheme (a hand-edited file): kept like a reset line
                self.pending.append(line)
                continue
            position = self.range.position(key, ts)
            if position < 0:
                self.pending.clear()
                continue
            if position > 0:
                out.extend(self.pending)  # a hole between an event inside and one after the end
                self.pending.clear()
                self.done = True
                break
            if self.pending and self.range.past_start(key, ts):
                out.extend(self.pending)  # a hole that reaches into the range
            self.pending.clear()
            out.append(line)
            if self.range.at_end(key):
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


@dataclass(frozen=True, slots=True)
class Plan:
    """A range placed in a topic's archive, and the segments to read (oldest first; True: line by line)."""

    window: Window
    segments: list[tuple[SegmentInfo, bool]]


def plan(catalog: ArchiveCatalog, topic: str, rng: Range) -> Plan:
    """Place `rng` in the topic's archive and choose the segments to read. Blocking; raises `RangeError`."""
    described = [catalog.describe(info) for info in catalog.segments(topic)]
    window = Window(rng, catalog.order(described))
    chosen = []
    for info in described:
        where = window.covers(info)
        if where == 1:
            break
        if where != -1:
            chosen.append((info, where is None))
    return Plan(window, chosen)


async def stream_plan(planned: Plan) -> AsyncGenerator[bytes, None]:
    """The planned range's lines as blocks of whole NDJSON lines, oldest first."""
    line_filter = _Filter(planned.window)
    for info, filtered in planned.segments:
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


async def export_blocks(catalog: ArchiveCatalog, topic: str, rng: Range) -> AsyncGenerator[bytes, None]:
    """The range's lines as blocks of whole NDJSON lines, oldest first. Raises `RangeError` before the first."""
    planned = await asyncio.to_thread(plan, catalog, topic, rng)
    async with contextlib.aclosing(stream_plan(planned)) as blocks:
        async for block in blocks:
            yield block


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
