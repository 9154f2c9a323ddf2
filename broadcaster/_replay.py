"""Replay: the retained events a stream sends before going live (resume and `?tail=`).

The stream subscribes live first and holds live events in its queue; then it
sends the replay; then the held events, skipping those the replay covered.
No gap and no duplicate at the seam (Mercure's liveQueue/Ready scheme).

Ids are ordered across topics, so a multi-topic replay is a merge by id of the
topics' histories, and the last id a client saw says what it has seen of every
topic of the stream. That only holds if the stream it received was in id order,
seam included, so the replay has an upper bound:

- `upper` is the newest id of the stream's topics, read *after* the live
  subscription exists and *before* any history page. Every event with an id up
  to `upper` was published before the pages are read, so they hold it; every
  event with a greater id was published after the subscription, so the live
  queue holds it.
- The replay sends the events in `(after, upper]`, merged by id; the stream then
  drops held live events with an id up to `floor` (`upper`, or the resume point
  if greater). The client gets one sequence in strictly increasing id order.

Without the bound, topics read at different moments could let a live event of
one topic come after a newer replayed event of another; a client cut off right
there would resume past the first (a gap) or before the second (a duplicate).
"""

from __future__ import annotations

import heapq
import time
from collections.abc import AsyncIterator, Sequence

from ._event import Control, Event, EventId, format_id, parse_id
from ._hub import Hub
from ._topics import is_pattern

DEFAULT_PAGE_SIZE = 500
#: A resume point more than this ahead of the server's clock was not issued by this server's history.
FUTURE_TOLERANCE_MS = 60_000


class _Cursor:
    __slots__ = ("topic", "buffer", "position", "exhausted")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.buffer: list[Event] = []
        self.position = 0
        self.exhausted = False


class Replay:
    """The replay of one stream: `prepare()` (may raise `BackendUnavailable`), then `pages()`.

    Give exactly one of `after` (resume after that id) and `tail` (the last N
    retained events). After `prepare()`, `floor` is the id up to which held live
    events must be dropped (None: none); after `pages()`, `replayed` counts the
    events sent.
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
        if page_size < 1:
            raise ValueError(f"page_size must be at least 1, got {page_size}")
        self.hub = hub
        self.selectors = tuple(selectors)
        self.after = after
        self.tail = tail
        self.page_size = page_size
        self.replayed = 0
        #: The newest id of the stream's topics as the replay started (None: nothing retained).
        self.upper: EventId | None = None
        #: Held live events with an id up to this were replayed or seen by the client: drop them.
        self.floor: EventId | None = None
        self._cursors: list[_Cursor] = []
        self._reset: Control | None = None

    async def prepare(self) -> None:
        """Bound the replay, read the first page of every topic and detect a `reset`, before the response starts."""
        explicit = [s for s in self.selectors if not is_pattern(s)]
        patterns = [s for s in self.selectors if is_pattern(s)]
        topics: dict[str, None] = dict.fromkeys(explicit)
        upper: EventId | None = None
        for pattern in patterns:
            for info in await self.hub.retained_topics(pattern):
                topics[info.topic] = None
                if info.last_id is not None:
                    upper = _newer(upper, parse_id(info.last_id))
        count = 1 if self.tail is None else self.tail
        newest: list[EventId] = []  # tail: the ids of the newest `tail` events seen
        if count:
            # Listed pattern topics came with their last id; a resume needs the named topics' only.
            for topic in list(topics) if self.tail is not None else explicit:
                events = await self.hub.tail(topic, count)
                if events:
                    upper = _newer(upper, events[-1].seq)
                    if self.tail is not None:
                        newest = heapq.nlargest(self.tail, [*newest, *(e.seq for e in events)])
        if patterns:
            # A topic created while the bound was read may hold events up to it: list again.
            for pattern in patterns:
                topics.update((info.topic, None) for info in await self.hub.retained_topics(pattern))
        self.upper = upper
        if self.tail is not None:
            if not newest or upper is None:
                return  # nothing retained (or tail=0): nothing to replay, every live event is new
            self.floor = upper
            # Replay from the oldest of the newest N through `upper`: one contiguous run of ids.
            await self._open(topics, _before(min(newest)))
            return
        assert self.after is not None
        after = self.after
        now_ms = time.time_ns() // 1_000_000
        if (upper is None or after > upper) and after[0] > now_ms + FUTURE_TOLERANCE_MS:
            self.floor = upper
            self._reset = Control(
                "reset",
                {
                    "reason": "the resume point is newer than any event of this server; replaying nothing",
                    "last_event_id": format_id(after),
                    "topics": list(topics),
                },
            )
            return
        self.floor = after if upper is None else max(after, upper)
        lost = await self._open(topics, after) if upper is not None and upper > after else []
        horizon_ms = now_ms - int(self.hub.settings.history_ttl_s * 1000)
        if lost or after[0] < horizon_ms:
            self._reset = Control(
                "reset",
                {
                    "reason": "the resume point is older than the retained history; events after it were lost",
                    "last_event_id": format_id(after),
                    "topics": lost or list(topics),
                },
            )

    async def _open(self, topics: dict[str, None], start: EventId) -> list[str]:
        """Read every topic's first page after `start`; return the topics that lost events after it."""
        lost = []
        for topic in topics:
            cursor = _Cursor(topic)
            trimmed = await self._fill(cursor, start)
            if trimmed is not None and trimmed > start:
                lost.append(topic)
            if cursor.buffer:
                self._cursors.append(cursor)
        return lost

    async def _fill(self, cursor: _Cursor, after: EventId) -> EventId | None:
        assert self.upper is not None
        upper = self.upper
        page = await self.hub.history(cursor.topic, after=after, limit=self.page_size)
        events = page.events
        if events and events[-1].seq > upper:
            events = [e for e in events if e.seq <= upper]  # published after the bound: the live queue has them
            cursor.exhausted = True
        else:
            # A short page may only mean expired entries were dropped from it: only an empty
            # page, or one that reaches the bound, ends the topic.
            cursor.exhausted = not events or events[-1].seq >= upper
        cursor.buffer = events
        cursor.position = 0
        return page.trimmed

    async def pages(self, limit: int | None = None) -> AsyncIterator[list[Event | Control]]:
        """The replay in id order, as lists of at most `page_size` events (a `reset` first if any).

        `limit` stops it after that many events (a stream's `max_events`).
        """
        if self._reset is not None:
            yield [self._reset]
        heap = [(cursor.buffer[0].seq, index) for index, cursor in enumerate(self._cursors)]
        heapq.heapify(heap)
        page: list[Event | Control] = []
        while heap and (limit is None or self.replayed < limit):
            _, index = heapq.heappop(heap)
            cursor = self._cursors[index]
            event = cursor.buffer[cursor.position]
            page.append(event)
            self.replayed += 1
            cursor.position += 1
            if cursor.position == len(cursor.buffer) and not cursor.exhausted:
                trimmed = await self._fill(cursor, event.seq)
                if trimmed is not None and trimmed > event.seq:
                    # Trimmed while the replay ran (it was slower than the publishers): say so, in place.
                    page.append(self._lost_during_replay(cursor.topic, event))
            if cursor.position < len(cursor.buffer):
                heapq.heappush(heap, (cursor.buffer[cursor.position].seq, index))
            if len(page) >= self.page_size:
                yield page
                page = []
        if page:
            yield page

    @staticmethod
    def _lost_during_replay(topic: str, event: Event) -> Control:
        return Control(
            "reset",
            {
                "reason": "history was trimmed during the replay; events after this id were lost",
                "last_event_id": event.id,
                "topics": [topic],
            },
        )

    def live(self) -> Control:
        """The `live` control message: the replay is complete, live events follow."""
        return Control("live", {"replayed": self.replayed})


def _newer(current: EventId | None, candidate: EventId) -> EventId:
    return candidate if current is None or candidate > current else current


def _before(event_id: EventId) -> EventId:
    """The greatest id below `event_id` (an exclusive start that includes it)."""
    ms, n = event_id
    return (ms, n - 1) if n > 0 else (ms - 1, 2**64 - 1)
