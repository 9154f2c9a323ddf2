"""Replay: the retained events a stream sends before going live (resume and `?tail=`).

The stream subscribes live first and holds live events in its queue; then it
sends the replay; then the held events, skipping those the replay already sent.
No gap and no duplicate at the seam (Mercure's liveQueue/Ready scheme).

Ids are ordered across topics, so a multi-topic replay is a merge by id of the
topics' histories, and the last id a client saw says exactly what it has seen
of every topic: if it is cut off in the middle of a replay, it resumes cleanly.
"""

from __future__ import annotations

import heapq
import time
from collections.abc import AsyncIterator, Sequence

from ._event import Control, Event, EventId, format_id
from ._hub import Hub
from ._topics import is_pattern

DEFAULT_PAGE_SIZE = 500


class _Cursor:
    __slots__ = ("topic", "buffer", "position", "exhausted")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.buffer: list[Event] = []
        self.position = 0
        self.exhausted = False


class Replay:
    """The replay of one stream: `prepare()` (may raise `BackendUnavailable`), then `pages()`.

    After the replay, `last` maps each replayed topic to the id of its last
    replayed event, for skipping held live events, and `replayed` counts them.
    """

    def __init__(
        self,
        hub: Hub,
        selectors: Sequence[str],
        *,
        after: EventId | None = None,
        tail: int | None = None,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        if (after is None) == (tail is None):
            raise ValueError("a replay needs exactly one of after= and tail=")
        self.hub = hub
        self.selectors = tuple(selectors)
        self.after = after
        self.tail = tail
        self.page_size = page_size
        self.replayed = 0
        self.last: dict[str, EventId] = {}
        self._cursors: list[_Cursor] = []
        self._tail_events: list[Event] = []
        self._reset: Control | None = None

    async def _topics(self) -> list[str]:
        topics: dict[str, None] = {}
        for selector in self.selectors:
            if is_pattern(selector):
                topics.update((info.topic, None) for info in await self.hub.retained_topics(selector))
            else:
                topics[selector] = None
        return list(topics)

    async def prepare(self) -> None:
        """Read the first page of every topic (and detect a `reset`), before the response starts."""
        topics = await self._topics()
        if self.tail is not None:
            merged: list[Event] = []
            for topic in topics:
                merged.extend(await self.hub.tail(topic, self.tail))
            merged.sort(key=lambda e: e.seq)
            self._tail_events = merged[len(merged) - self.tail :] if self.tail else []
            return
        assert self.after is not None
        lost: list[str] = []
        for topic in topics:
            cursor = _Cursor(topic)
            trimmed = await self._fill(cursor, self.after)
            if trimmed is not None and trimmed > self.after:
                lost.append(topic)
            self._cursors.append(cursor)
        horizon_ms = time.time_ns() // 1_000_000 - int(self.hub.settings.history_ttl_s * 1000)
        if lost or self.after[0] < horizon_ms:
            self._reset = Control(
                "reset",
                {
                    "reason": "the resume point is older than the retained history; events after it were lost",
                    "last_event_id": format_id(self.after),
                    "topics": lost or topics,
                },
            )

    async def _fill(self, cursor: _Cursor, after: EventId) -> EventId | None:
        page = await self.hub.history(cursor.topic, after=after, limit=self.page_size)
        cursor.buffer = page.events
        cursor.position = 0
        cursor.exhausted = len(page.events) < self.page_size
        return page.trimmed

    async def pages(self) -> AsyncIterator[list[Event | Control]]:
        """The replay, as lists of at most `page_size` items, in id order (a `reset` first if any)."""
        if self._reset is not None:
            yield [self._reset]
        if self.tail is not None:
            events = self._tail_events
            for start in range(0, len(events), self.page_size):
                chunk = events[start : start + self.page_size]
                self._count(chunk)
                yield list[Event | Control](chunk)
            return
        heap: list[tuple[EventId, int]] = []
        for index, cursor in enumerate(self._cursors):
            if cursor.buffer:
                heapq.heappush(heap, (cursor.buffer[0].seq, index))
        page: list[Event | Control] = []
        while heap:
            _, index = heapq.heappop(heap)
            cursor = self._cursors[index]
            event = cursor.buffer[cursor.position]
            page.append(event)
            self.last[event.topic] = event.seq
            self.replayed += 1
            cursor.position += 1
            if cursor.position == len(cursor.buffer) and not cursor.exhausted:
                await self._fill(cursor, event.seq)
            if cursor.position < len(cursor.buffer):
                heapq.heappush(heap, (cursor.buffer[cursor.position].seq, index))
            if len(page) >= self.page_size:
                yield page
                page = []
        if page:
            yield page

    def _count(self, events: Sequence[Event]) -> None:
        for event in events:
            self.last[event.topic] = event.seq
        self.replayed += len(events)

    def live(self) -> Control:
        """The `live` control message: the replay is complete, live events follow."""
        return Control("live", {"replayed": self.replayed})
