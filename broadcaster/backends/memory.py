"""MemoryBackend: the in-process backend, the default when no Redis URL is set.

Everything lives in this process: one history ring per topic, with the topic's epoch
and seq counter, and a queue that feeds `messages()`. It is also the backend the core
tests use, and it keeps the same rules as the Redis backend (per-topic seqs without a
gap, retention by count and age, an epoch per history), which the shared contract
tests check. A restarted process starts every topic in a new epoch: resumes from the
old process are answered with `reset`.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import operator
import secrets
import time
from collections import deque
from collections.abc import AsyncIterator, Collection, Sequence
from typing import Self

from .._event import Event, check_one_line
from .._exceptions import BackendClosed
from .._ids import format_id
from .._topics import is_pattern, pattern_regex
from .base import BackendMessage, HistoryPage, TopicInfo

_SWEEP_EVERY = 1024  # publishes between sweeps of idle, expired topics
_SEQ = operator.attrgetter("seq")
_TS = operator.attrgetter("ts")
#: How long a topic's epoch and last seq outlive its last event (resumes say `reset` after that).
META_TTL_MS = 7 * 86_400_000


class _History:
    __slots__ = ("events", "epoch", "last", "last_ms")

    def __init__(self) -> None:
        self.events: deque[Event] = deque()
        self.epoch = secrets.token_hex(4)
        self.last = 0
        self.last_ms = 0


class MemoryBackend:
    """In-process pub/sub with bounded per-topic history. Not shared between processes."""

    def __init__(self, *, history_size: int = 1000, history_ttl_s: float = 3600.0) -> None:
        self.history_size = history_size
        self.history_ttl_ms = int(history_ttl_s * 1000)
        self.meta_ttl_ms = max(META_TTL_MS, 2 * self.history_ttl_ms)
        self._histories: dict[str, _History] = {}
        self._topics: set[str] = set()
        self._patterns: dict[str, object] = {}
        self._queue: asyncio.Queue[BackendMessage | None] = asyncio.Queue()
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
        history = self._histories.get(topic)
        if history is None:
            history = self._histories[topic] = _History()
        ms = max(time.time_ns() // 1_000_000, history.last_ms)
        history.last_ms = ms
        keys = self._keys_for(topic)
        events: list[Event] = []
        epoch = history.epoch
        for event_type, data in items:
            seq = history.last = history.last + 1
            event = Event(topic, format_id(topic, epoch, seq), event_type, data, ms, seq=seq, epoch=epoch)
            events.append(event)
            history.events.append(event)
            for key in keys:
                self._queue.put_nowait(BackendMessage(key, event))
        self._trim(history, ms)
        self._publishes += 1
        if self._publishes % _SWEEP_EVERY == 0:
            self._sweep(ms)
        return events

    async def new_epoch(self, topic: str, replaced: str) -> None:
        history = self._histories.get(topic)
        if history is not None and history.epoch == replaced:
            del self._histories[topic]  # the next publish starts a new epoch, as on Redis

    def _keys_for(self, topic: str) -> list[str]:
        keys = [topic] if topic in self._topics else []
        keys.extend(p for p, rx in self._patterns.items() if rx.match(topic))  # type: ignore[attr-defined]
        return keys

    def _trim(self, history: _History, now_ms: int) -> None:
        events = history.events
        oldest_allowed = now_ms - self.history_ttl_ms
        while events and (len(events) > self.history_size or events[0].ts < oldest_allowed):
            events.popleft()

    def _sweep(self, now_ms: int) -> None:
        horizon = now_ms - self.meta_ttl_ms
        for topic in [t for t, h in self._histories.items() if h.last_ms < horizon]:
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

    def _retained(self, topic: str) -> _History | None:
        history = self._histories.get(topic)
        if history is not None:
            self._trim(history, time.time_ns() // 1_000_000)
        return history

    async def history(
        self, topic: str, *, after: int | None = None, since_ms: int | None = None, limit: int
    ) -> HistoryPage:
        history = self._retained(topic)
        if history is None:
            return HistoryPage([], None, 0)
        events = history.events
        # Seqs and timestamps increase along the ring: the page starts where a binary search puts it.
        start = 0 if after is None else bisect.bisect_right(events, after, key=_SEQ)
        if since_ms is not None:
            start = max(start, bisect.bisect_left(events, since_ms, key=_TS))
        return HistoryPage(list(itertools.islice(events, start, start + limit)), history.epoch, history.last)

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
