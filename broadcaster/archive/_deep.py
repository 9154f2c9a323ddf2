"""Deep resume: a resume point older than the retained history, replayed from the archive first.

`DeepReplay` is the stream's `Replay` with one more source in front. When the history
has lost events after the resume point (the `Replay` would open with `reset`: trimmed,
or the topic's history was lost and a new epoch began) and the archive holds the
resume point's epoch, the stream sends:

1. from the archive: the events after the resume point in the files' order (across
   epochs: the archive's own `reset` lines included, where it has holes), up to the
   history's first event;
2. from the history: what the plain `Replay` sends (after the resume point, or the whole
   current epoch, up to its bound);
3. `live`, with how many came from each (`replayed`, `from_archive`, `from_history`), then live.

The seam between 1 and 2 is the first event the history part sends, `(epoch, seq)`: the
archive part stops at the first event of that epoch with that seq or later, the history
part starts with it (when the history's epoch is not in the archive at all, the archive
part runs to the archive's end: the epochs differ, nothing can be sent twice). The seam
with live is the `Replay`'s (its `floors`). The `reset` is dropped only when the archive
covers the whole hole: it holds the resume point or the event right after it, and it
reaches the event right before the history's first (for a history that starts at seq 1,
it reached that epoch). Otherwise it stays, and what the archive has is still sent after it.

For streams of one topic (a pattern or several topics get the plain `Replay`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence

from .._event import Control, Event
from .._hub import Hub
from .._ids import Cursor, Position, format_id
from .._replay import Replay
from .._topics import is_pattern
from ._catalog import ArchiveCatalog
from ._export import Bound, Range, RangeError, export_blocks, items_of
from ._order import EpochOrder, Key


def _extent(catalog: ArchiveCatalog, topic: str) -> tuple[EpochOrder, Key, Key] | None:
    """The topic's epoch order, and the places of its first and newest archived events (None: none). Blocking."""
    if topic not in catalog.topics():
        return None
    described = [catalog.describe(info) for info in catalog.segments(topic)]
    order = catalog.order(described)
    first = next((k for s in described if (k := order.key_of(s.first_id)) is not None), None)
    newest = next((k for s in reversed(described) if (k := order.key_of(s.last_id)) is not None), None)
    if first is None or newest is None:
        return None
    return order, first, newest


class DeepReplay(Replay):
    """A `Replay` after the cursor `after` that fills what the history lost from the archive (module docstring)."""

    def __init__(self, hub: Hub, catalog: ArchiveCatalog, selectors: Sequence[str], *, after: Cursor) -> None:
        super().__init__(hub, selectors, after=after)
        self.catalog = catalog
        #: Events sent from the archive (the rest of `replayed` came from the history).
        self.from_archive = 0
        self._topic: str | None = None
        self._position: Position | None = None
        #: The history part's first event, (epoch, seq): where the archive part stops (None: at its end).
        self._handover: Position | None = None
        #: Whether the archive fills the whole hole (then the history's `reset` is not sent).
        self._covered = False

    async def prepare(self) -> None:
        await super().prepare()
        self._topic = self._position = self._handover = None
        self._covered = False
        after = self.after
        if not self._resets or after is None or len(self.selectors) != 1 or is_pattern(self.selectors[0]):
            return  # nothing lost, or not a stream of one topic
        topic = self.selectors[0]
        position = after.position(topic)
        if position is None:
            return  # the resume point has no place in this topic (an id of an older version)
        extent = await asyncio.to_thread(_extent, self.catalog, topic)
        if extent is None:
            return
        order, first, newest = extent
        start = order.key((position[0], position[1], 0))
        if start is None or newest <= start:
            return  # the archive does not hold the resume point's epoch, or nothing after it
        handover = self._history_start(topic)
        if handover is not None and handover[0] == position[0] and handover[1] <= position[1]:
            # The history went back behind the resume point (a replica that lagged was promoted):
            # what the archive has after it is all there is of that epoch, and may not be all.
            handover = None
            self._covered = False
        else:
            joins = None if handover is None else order.key((handover[0], handover[1] - 1, 0))
            self._covered = first <= (start[0], start[1] + 1, 0) and joins is not None and newest >= joins
        self._topic, self._position, self._handover = topic, position, handover

    def _history_start(self, topic: str) -> Position | None:
        """The first event the plain replay sends of `topic`: its seq, or the newest + 1 if it sends none."""
        floor = self.floors.get(topic)
        if floor is None:
            return None  # the backend knows nothing of the topic: the archive is all there is
        epoch, newest = floor
        first = next((part.buffer[0].seq for part in self._topics if part.topic == topic and part.buffer), None)
        return epoch, newest + 1 if first is None else first

    async def pages(self, limit: int | None = None) -> AsyncIterator[list[Event | Control]]:
        topic, position = self._topic, self._position
        if topic is None or position is None:
            async for plain in super().pages(limit):
                yield plain
            return
        resets, self._resets = self._resets, []
        if not self._covered:
            yield list(resets)
        handover = self._handover
        rng = Range(Bound(format_id(topic, *position), id=(position[0], position[1], 0)), None, after=True)
        try:
            async with contextlib.aclosing(export_blocks(self.catalog, topic, rng)) as blocks:
                async for block in blocks:
                    page: list[Event | Control] = []
                    done = False
                    for item in items_of(topic, block):
                        if type(item) is Event:
                            if (handover is not None and item.epoch == handover[0] and item.seq >= handover[1]) or (
                                limit is not None and self.replayed >= limit
                            ):
                                done = True
                                break
                            self.replayed += 1
                            self.from_archive += 1
                        page.append(item)
                    if page:
                        yield page
                    if done:
                        break
        except RangeError:
            if self._covered:  # retention removed the resume point's epoch since `prepare`
                yield list(resets)
        async for rest in super().pages(limit):
            yield rest

    def live(self) -> Control:
        control = super().live()
        if self._topic is not None:
            control.fields["from_archive"] = self.from_archive
            control.fields["from_history"] = self.replayed - self.from_archive
        return control
