"""MemoryBackend: the in-process backend, the default when no Redis URL is set.

Everything lives in this process: one history ring per topic, a counter for
ids, and a queue that feeds `messages()`. It is also the backend the core tests
use, and it keeps the same rules as the Redis backend (ids, retention by count
and age, `trimmed` marks), which the shared contract tests check.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import operator
import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Self

from .._event import Event, EventId, check_one_line, format_id
from .._exceptions import BackendClosed
from .._topics import is_pattern, pattern_regex
from .base import BackendMessage, HistoryPage, TopicInfo

_SWEEP_EVERY = 1024  # publishes between sweeps of idle, expired topics
_SEQ = operator.attrgetter("seq")


class _History:
    __slots__ = ("events", "trimmed")

    def __init__(self) -> None:
        self.events: deque[Event] = deque()
        self.trimmed: EventId | None = None


class MemoryBackend:
    """In-process pub/sub with bounded per-topic history. Not shared between processes."""

    def __init__(self, *, history_size: int = 1000, history_ttl_s: float = 3600.0) -> None:
        self.history_size = history_size
        self.history_ttl_ms = int(history_ttl_s * 1000)
        self._histories: dict[str, _History] = {}
        self._topics: set[str] = set()
        self._patterns: dict[str, object] = {}
        self._queue: asyncio.Queue[BackendMessage | None] = asyncio.Queue()
        self._last_ms = 0
        self._counter = 0
        self._publishes = 0
        self._closed = False

    async def __aenter__(self) -> Self:
        if self._closed:
            raise BackendClosed("a closed MemoryBackend cannot be reopened")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._queue.put_nowait(None)

    async def ping(self) -> None:
        if self._closed:
            raise BackendClosed("the backend is closed")

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Event]:
        if self._closed:
            raise BackendClosed("the backend is closed")
        for _, data in items:
            check_one_line(data)
        now = time.time_ns() // 1_000_000
        ms = max(now, self._last_ms)
        self._last_ms = ms
        history = self._retained(topic, ms)
        if history is None:
            history = self._histories[topic] = _History()
        keys = self._keys_for(topic)
        events: list[Event] = []
        for event_type, data in items:
            self._counter += 1
            event = Event(topic, format_id((ms, self._counter)), event_type, data, ms)
            events.append(event)
            history.events.append(event)
            for key in keys:
                self._queue.put_nowait(BackendMessage(key, event))
        self._trim(history, ms)
        self._publishes += 1
        if self._publishes % _SWEEP_EVERY == 0:
            self._sweep(ms)
        return events

    def _keys_for(self, topic: str) -> list[str]:
        keys = [topic] if topic in self._topics else []
        keys.extend(p for p, rx in self._patterns.items() if rx.match(topic))  # type: ignore[attr-defined]
        return keys

    def _trim(self, history: _History, now_ms: int) -> None:
        events = history.events
        oldest_allowed = now_ms - self.history_ttl_ms
        cut = None
        while events and (len(events) > self.history_size or events[0].ts < oldest_allowed):
            cut = events.popleft()
        if cut is not None:  # only the newest cut id matters: parsing every cut id cost ~20% of ingest CPU
            history.trimmed = cut.seq

    def _sweep(self, now_ms: int) -> None:
        horizon = now_ms - self.history_ttl_ms
        for topic in [t for t, h in self._histories.items() if h.events and h.events[-1].ts < horizon]:
            del self._histories[topic]

    async def subscribe(self, keys: Collection[str]) -> None:
        for key in keys:
            if is_pattern(key):
                self._patterns[key] = pattern_regex(key)
            else:
                self._topics.add(key)

    async def unsubscribe(self, keys: Collection[str]) -> None:
        for key in keys:
            self._patterns.pop(key, None)
            self._topics.discard(key)

    async def messages(self) -> AsyncIterator[BackendMessage]:
        queue = self._queue
        while True:
            message = await queue.get()
            if message is None:
                return
            yield message

    def _retained(self, topic: str, now_ms: int | None = None) -> _History | None:
        history = self._histories.get(topic)
        if history is not None:
            self._trim(history, time.time_ns() // 1_000_000 if now_ms is None else now_ms)
            if not history.events:
                # Every event expired: the topic is forgotten with its trim mark, as a Redis
                # stream key expires. A resume point that old is older than the ttl horizon,
                # which the replay announces with `reset` by itself.
                del self._histories[topic]
                return None
        return history

    async def history(self, topic: str, *, after: EventId | None, limit: int) -> HistoryPage:
        history = self._retained(topic)
        if history is None:
            return HistoryPage([], None)
        events = history.events
        # Ids increase along the ring, so the page starts where a binary search puts `after`.
        start = 0 if after is None else bisect.bisect_right(events, after, key=_SEQ)
        return HistoryPage(list(itertools.islice(events, start, start + limit)), history.trimmed)

    async def tail(self, topic: str, count: int) -> list[Event]:
        history = self._retained(topic)
        if history is None or count <= 0:
            return []
        return list(history.events)[-count:]

    async def topics(self, pattern: str = "*") -> list[TopicInfo]:
        rx = pattern_regex(pattern)
        infos = []
        for topic in sorted(self._histories):
            history = self._retained(topic)
            if history is not None and history.events and rx.match(topic):
                infos.append(TopicInfo(topic, len(history.events), history.events[-1].id))
        return infos
