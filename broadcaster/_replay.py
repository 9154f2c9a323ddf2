"""Replay: the retained events a stream sends before going live (resume and `?tail=`).

The stream subscribes live first and holds live events in its queue; then it sends the
replay; then the held events, skipping those the replay covered. No gap and no duplicate
at the seam (Mercure's liveQueue/Ready scheme), per topic:

- for each topic, `upper` is the seq of its newest event, read *after* the live
  subscription exists (with the topic's first history page). Every event up to it is in
  the history (or lost, which the replay announces); every later one was published after
  the subscription, so the live queue holds it;
- the replay sends each topic's events in `(resume point, upper]`; the stream then drops
  held live events of that topic and epoch with a seq up to `floor` (`upper`, or the
  resume point if greater).

A resume point is a cursor (`_ids`): per topic the last position the client received,
and for topics it has no position of, the time from which to replay. Each topic's
position is checked against its history: another epoch (the history was lost or
replaced), a position newer than anything published in the epoch, or events after it
that are no longer retained all answer `reset` before the replay. Topics are merged by
publish time, so a multi-topic replay reads in the order things happened; resuming does
not depend on that order, only on each topic's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from ._event import Control, Event
from ._exceptions import BackendUnavailable
from ._hub import Hub
from ._ids import Break, Cursor, Position, StreamCursor, format_id, history_break
from ._subscription import Item, Subscription
from ._topics import is_pattern
from .backends import HistoryPage

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 500

_LOST = "the history this resume point belongs to was lost (the backend restarted empty or was replaced)"
_NEWER = "the resume point is newer than any event published in this history: the history was lost"
_OLDER = "the resume point is older than the retained history; events after it were lost"
_LEGACY = "the resume point is an id of an older server version; the history cannot be matched"
_UNTRACKED = "the resume point carries no position of this topic (too many topics in one stream)"
_REASONS: dict[Break | None, str] = {Break.LOST: _LOST, Break.AHEAD: _NEWER, Break.TRIMMED: _OLDER}


class _Topic:
    """One topic's part of a replay: where it resumes, its bound, its buffered page."""

    __slots__ = ("topic", "epoch", "after", "upper", "buffer", "position", "exhausted", "since_ms")

    def __init__(self, topic: str) -> None:
        self.topic = topic
        self.epoch: str | None = None
        self.after: int | None = None
        self.upper = 0
        self.since_ms: int | None = None
        self.buffer: list[Event] = []
        self.position = 0
        self.exhausted = True


class Replay:
    """The replay of one stream: `prepare()` (may raise `BackendUnavailable`), then `pages()`.

    Give exactly one of `after` (resume from that cursor) and `tail` (the last N retained
    events). After `prepare()`, `seam()` filters the held live events; after `pages()`,
    `replayed` counts the events sent.
    """

    def __init__(
        self,
        hub: Hub,
        selectors: Sequence[str],
        *,
        after: Cursor | None = None,
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
        self.prepared = False
        #: Per topic, (epoch, seq): held live events of that epoch up to seq were replayed or seen.
        self.floors: dict[str, Position] = {}
        self._topics: list[_Topic] = []
        self._resets: list[Control] = []
        #: A multi-topic stream's starting cursor, as `prepare` leaves `stream_cursor`: `live` carries it.
        self.cursor: str | None = None
        #: A multi-topic stream's own cursor: `prepare` moves the topics it resets to where their
        #: history stands, so the next resume does not announce the same loss again.
        self.stream_cursor: StreamCursor | None = None

    async def _stream_topics(self) -> list[str]:
        topics = dict.fromkeys(s for s in self.selectors if not is_pattern(s))
        for pattern in (s for s in self.selectors if is_pattern(s)):
            topics.update((info.topic, None) for info in await self.hub.retained_topics(pattern))
        return list(topics)

    async def prepare(self) -> None:
        """Bound the replay of every topic and detect `reset`s. Raises `BackendUnavailable`."""
        self._topics = []
        self._resets = []
        self.floors = {}
        topics = await self._stream_topics()
        if self.tail is not None:
            await self._prepare_tail(topics, self.tail)
        else:
            assert self.after is not None
            await self._prepare_resume(topics, self.after)
        if self.stream_cursor is not None:
            self._move_reset_topics(self.stream_cursor)
            self.cursor = self.stream_cursor.text()
        self.prepared = True

    def _move_reset_topics(self, cursor: StreamCursor) -> None:
        """A topic the resume announces `reset` for: its position becomes where its history stands now."""
        for control in self._resets:
            for topic in control.fields.get("topics", ()):
                floor = self.floors.get(topic)
                if floor is None:
                    cursor.forget(topic)  # no history at all: a later resume replays it from the base
                else:
                    cursor.place(topic, format_id(topic, *floor))

    async def _prepare_tail(self, topics: list[str], count: int) -> None:
        if count == 0:
            return
        newest: list[tuple[int, str, int]] = []
        per_topic: dict[str, list[Event]] = {}
        for topic in topics:
            events = await self.hub.tail(topic, count)
            if events:
                per_topic[topic] = events
                self.floors[topic] = (events[-1].epoch, events[-1].seq)
                newest = heapq.nlargest(count, [*newest, *((e.ts, e.topic, e.seq) for e in events)])
        chosen: dict[str, int] = {}
        for _, topic, seq in newest:
            chosen[topic] = min(chosen.get(topic, seq), seq)
        for topic, events in per_topic.items():
            if topic in chosen:
                part = _Topic(topic)
                part.buffer = [e for e in events if e.seq >= chosen[topic]]
                self._topics.append(part)

    async def _prepare_resume(self, topics: list[str], cursor: Cursor) -> None:
        lost: dict[str, list[str]] = {}
        for topic in topics:
            reason = await self._open_topic(topic, cursor)
            if reason is not None:
                lost.setdefault(reason, []).append(topic)
        for reason, names in lost.items():
            self._resets.append(Control("reset", {"reason": reason, "topics": names}))

    async def _open_topic(self, topic: str, cursor: Cursor) -> str | None:
        """Read the topic's first page from its resume point; return why events were lost, if they were."""
        part = _Topic(topic)
        position = None if cursor.legacy else cursor.position(topic)
        if position is None and not cursor.legacy and cursor.base_ms is not None and not cursor.truncated:
            part.since_ms = cursor.base_ms  # the client had nothing of this topic since the stream began
        elif position is not None:
            part.epoch, part.after = position
        page = await self.hub.history(topic, after=part.after, since_ms=part.since_ms, limit=self.page_size)
        reason: str | None = None
        if cursor.legacy:
            # Every retained event was published after the upgrade that retired the old ids (new
            # keys, a restarted process): the client saw none of them. Replay them all.
            reason = _LEGACY
        elif position is None and part.since_ms is None:
            reason = _UNTRACKED if page.events else None
            page = HistoryPage([], page.epoch, page.last)  # nothing to replay: live from here
        elif position is not None:
            first = page.events[0].seq if page.events else None
            broken = history_break(position, page.epoch, page.last, first)
            reason = _REASONS.get(broken)
            if page.epoch != position[0]:
                # Another history: the client saw none of it. Replay what it retains.
                page = await self.hub.history(topic, limit=self.page_size)
            elif broken is Break.AHEAD:  # the history went backwards: what follows its newest event is new
                page = HistoryPage([], page.epoch, page.last)
        if page.epoch is not None:
            part.epoch = page.epoch
            part.upper = page.last
            self.floors[topic] = (page.epoch, page.last)
        self._take(part, page.events)
        if part.buffer:
            self._topics.append(part)
        return reason

    def _take(self, part: _Topic, events: list[Event]) -> None:
        if events and events[-1].seq > part.upper:
            events = [e for e in events if e.seq <= part.upper]  # after the bound: the live queue has them
        part.exhausted = not events or events[-1].seq >= part.upper
        part.buffer = events
        part.position = 0

    async def _refill(self, part: _Topic, last: Event) -> Control | None:
        page = await self.hub.history(part.topic, after=last.seq, limit=self.page_size)
        if page.epoch != part.epoch:
            part.buffer, part.exhausted = [], True
            return Control("reset", {"reason": _LOST, "topics": [part.topic], "last_event_id": last.id})
        first = page.events[0].seq if page.events else None
        self._take(part, page.events)
        if last.seq < part.upper and first != last.seq + 1:
            # Trimmed while the replay ran (it was slower than the publishers): say so, in place.
            reason = "history was trimmed during the replay; events after this id were lost"
            return Control("reset", {"reason": reason, "last_event_id": last.id, "topics": [part.topic]})
        return None

    async def pages(self, limit: int | None = None) -> AsyncIterator[list[Item]]:
        """The replay merged by publish time, as lists of at most `page_size` events (`reset`s first).

        `limit` stops it after that many events (a stream's `max_events`).
        """
        if self._resets:
            yield list(self._resets)
        heap = [(part.buffer[0].ts, part.topic, index) for index, part in enumerate(self._topics)]
        heapq.heapify(heap)
        page: list[Item] = []
        while heap and (limit is None or self.replayed < limit):
            _, _, index = heapq.heappop(heap)
            part = self._topics[index]
            event = part.buffer[part.position]
            page.append(event)
            self.replayed += 1
            part.position += 1
            if part.position == len(part.buffer) and not part.exhausted:
                notice = await self._refill(part, event)
                if notice is not None:
                    page.append(notice)
            if part.position < len(part.buffer):
                heapq.heappush(heap, (part.buffer[part.position].ts, part.topic, index))
            if len(page) >= self.page_size:
                yield page
                page = []
        if page:
            yield page

    def live(self) -> Control:
        """The `live` control message: the replay is complete, live events follow."""
        if self.cursor is None:
            return Control("live", {"replayed": self.replayed})
        return Control("live", {"replayed": self.replayed, "cursor": self.cursor})

    def seam(self, items: list[Item]) -> list[Item]:
        """Held live items without the events the replay covered (per topic: epoch and seq up to its floor)."""
        floors = self.floors
        if not floors:
            return items
        kept: list[Item] = []
        for item in items:
            if type(item) is Event:
                floor: Any = floors.get(item.topic)
                if floor is not None:
                    if item.epoch == floor[0] and item.seq <= floor[1]:
                        continue
                    del floors[item.topic]  # past this topic's seam: its later events are all new
            kept.append(item)
        return kept


class Opening:
    """A stream opened while the backend is unreachable: it waits (200, keepalives) for the backend.

    `wait()` retries the replay's preparation (or, for a stream without a resume point,
    waits for the backend to answer again) with a jittered backoff, and gives the stream
    a chance to write a keepalive whenever it wakes. After `wait_s` it ends the stream with
    `shutdown` (`backend_unavailable`) and a jittered reconnect hint, so every client
    reconnects by itself; a stream never answers a non-200 for a transient backend fault.
    """

    def __init__(self, hub: Hub, replay: Replay | None, wait_s: float) -> None:
        self.hub = hub
        self.replay = replay
        self.wait_s = wait_s

    async def _attempt(self) -> bool:
        try:
            if self.replay is not None:
                await self.replay.prepare()
                return True
            return self.hub.backend_available
        except BackendUnavailable:
            return False

    async def wait(self, sub: Subscription, on_idle: Callable[[], Awaitable[None]]) -> bool:
        """True once the stream can go on; False if it ended (outage too long, or the client left)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.wait_s
        delay = 0.05
        while not await self._attempt():
            now = loop.time()
            if now >= deadline:
                logger.info("a stream waited %.0fs for the backend; ending it", self.wait_s)
                sub.finish(self.hub.shutdown_message("backend_unavailable"))
                return False
            pause = min(delay * random.uniform(0.8, 1.2), deadline - now)
            if sub.pending:
                await asyncio.sleep(pause)
            else:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(pause):
                        await sub.wait()  # the monitor wakes it when a keepalive is due
            if sub.ended:
                return False
            await on_idle()
            delay = min(delay * 2, 1.0)
        return True
