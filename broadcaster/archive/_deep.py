"""Deep resume: a resume point older than the retained history, replayed from the archive first.

`DeepReplay` is the stream's `Replay` with one more source in front. When the history
has lost events after the resume point (the `Replay` would open with `reset`) and the
archive holds the topic, the stream sends:

1. from the archive: the events after the resume point that are older than the oldest
   retained event (the archive's own `reset` lines included, where it has holes);
2. from the history: what the plain `Replay` sends (after the resume point, up to its bound);
3. `live`, with how many came from each (`replayed`, `from_archive`, `from_history`), then live.

The seam between 1 and 2 is the oldest retained event: the archive part stops before it,
the history part starts with it. The seam with live is the `Replay`'s (its `floor`). The
`reset` is dropped only when the archive covers the whole hole: its first event is at or
before the resume point, and it reaches the retained history. Otherwise it stays, and
what the archive has is still sent after it.

For streams of one topic (a pattern or several topics get the plain `Replay`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from .._event import Control, Event, EventId, format_id, parse_id
from .._hub import Hub
from .._replay import Replay
from .._topics import is_pattern
from ._catalog import ArchiveCatalog
from ._export import Bound, Range, export_blocks, items_of


def _extent(catalog: ArchiveCatalog, topic: str) -> tuple[EventId, EventId] | None:
    """The first and the newest archived event ids of `topic` (None: no event archived). Blocking."""
    if topic not in catalog.topics():
        return None
    segments = catalog.segments(topic)
    first = next((s.first_id for s in map(catalog.describe, segments) if s.first_id), None)
    newest = next((s.last_id for s in map(catalog.describe, reversed(segments)) if s.last_id), None)
    if first is None or newest is None:
        return None
    return parse_id(first), parse_id(newest)


class DeepReplay(Replay):
    """A `Replay` after `after` that fills what the history lost from the archive (see the module docstring)."""

    def __init__(self, hub: Hub, catalog: ArchiveCatalog, selectors: Sequence[str], *, after: EventId) -> None:
        super().__init__(hub, selectors, after=after)
        self.catalog = catalog
        #: Events sent from the archive (the rest of `replayed` came from the history).
        self.from_archive = 0
        self._topic: str | None = None
        self._stop_at: EventId | None = None  # the oldest retained event: where the history takes over

    async def prepare(self) -> None:
        await super().prepare()
        after = self.after
        if self._reset is None or after is None or len(self.selectors) != 1 or is_pattern(self.selectors[0]):
            return  # nothing lost, or not a stream of one topic
        topic = self.selectors[0]
        extent = await asyncio.to_thread(_extent, self.catalog, topic)
        if extent is None or extent[1] <= after:
            return  # the archive has nothing after the resume point either
        probe = await self.hub.history(topic, after=after, limit=1)
        oldest = probe.events[0].seq if probe.events else None
        self._topic = topic
        self._stop_at = oldest
        first, newest = extent
        if first <= after and (oldest is None or newest >= oldest):
            self._reset = None  # the archive covers the hole: nothing was lost

    async def pages(self, limit: int | None = None) -> AsyncIterator[list[Event | Control]]:
        topic, after = self._topic, self.after
        if topic is None or after is None:
            async for page in super().pages(limit):
                yield page
            return
        if self._reset is not None:
            reset, self._reset = self._reset, None
            yield [reset]
        rng = Range(Bound(format_id(after), id=after), None, after=True)
        last: EventId | None = None
        async with contextlib.aclosing(export_blocks(self.catalog, topic, rng)) as blocks:
            async for block in blocks:
                page = []
                done = False
                for item in items_of(topic, block):
                    if type(item) is Event:
                        seq = item.seq
                        if (self._stop_at is not None and seq >= self._stop_at) or (
                            limit is not None and self.replayed >= limit
                        ):
                            done = True
                            break
                        self.replayed += 1
                        self.from_archive += 1
                        last = seq
                    page.append(item)
                if page:
                    yield page
                if done:
                    break
        async for page in super().pages(limit):
            yield page
        if last is not None and (self.floor is None or last > self.floor):
            # No history to hand over to (all of it expired): live events up to what was sent are duplicates.
            self.floor = last

    def live(self) -> Control:
        control = super().live()
        if self._topic is not None:
            control.fields["from_archive"] = self.from_archive
            control.fields["from_history"] = self.replayed - self.from_archive
        return control
