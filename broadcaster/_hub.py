"""Hub: the topic registry of one process and its fan-out.

Subscriptions register under their keys (topics and patterns). The first local
subscriber of a key subscribes the backend, the last one to leave unsubscribes
it, so a process holds one backend subscription per key whatever its number of
clients. One pump task reads `backend.messages()` and offers each event to the
subscriptions of its key; `offer()` never waits, so one slow subscriber cannot
delay the others.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
import time
from collections.abc import AsyncIterator, Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any, Self

import orjson

from ._config import Settings
from ._event import Control, Event
from ._exceptions import BackendError, EventTooLarge, HubClosed
from ._subscription import Subscription
from ._topics import DEFAULT_EVENT_TYPE, is_pattern, matches_any, validate_selector, validate_topic, validate_type
from ._types import OverflowPolicy
from .backends import RESYNC, Backend, HistoryPage, SupportsHealth, TopicInfo, backend_from_url
from .backends._history import HISTORY_PAGE, history_pages, read_missed

logger = logging.getLogger(__name__)

_RATE_WINDOW_S = 60.0
#: A topic that delivered nothing before an outage catches up from this long before the newest publish seen.
CATCH_UP_MARGIN_MS = 5_000


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


@dataclass(slots=True)
class TopicStats:
    """What this process saw of a topic: local subscribers and event rate."""

    topic: str
    subscribers: int = 0
    events: int = 0
    rate: float = 0.0
    last_id: str | None = None
    retained: int | None = None


@dataclass(slots=True)
class HubMetrics:
    """Counters of one hub, for `/metrics`."""

    published: int = 0
    received: int = 0
    evicted: int = 0
    dropped_closed: int = 0


class _Route:
    """The subscriptions of one key; `fanout` is an immutable snapshot the pump iterates."""

    __slots__ = ("subs", "fanout")

    def __init__(self) -> None:
        self.subs: dict[Subscription, None] = {}
        self.fanout: tuple[Subscription, ...] = ()

    def changed(self) -> None:
        self.fanout = tuple(self.subs)


class Hub:
    """The fan-out hub of one process. Use as an async context manager; it owns its backend.

    ```python
    async with Hub(MemoryBackend()) as hub:
        async with await hub.subscribe(["orders"]) as sub:
            await hub.publish("orders", b'{"n": 1}')
            event = await sub.get()
    ```
    """

    def __init__(self, backend: Backend | None = None, *, settings: Settings | None = None) -> None:
        self.settings = settings or Settings()
        if backend is None:
            backend = backend_from_url(self.settings.backend_url, self.settings)
        self.backend: Backend = backend
        self._state = _State.UNOPENED
        self._routes: dict[str, _Route] = {}
        self._backend_keys: set[str] = set()
        self._subscriptions: set[Subscription] = set()
        self._sync_lock = asyncio.Lock()
        self._sync_task: asyncio.Task[None] | None = None
        self._pump_task: asyncio.Task[None] | None = None
        self._counts: dict[str, int] = {}
        #: Per topic, the newest event delivered: a catch-up after an outage starts after it.
        self._last_events: dict[str, Event] = {}
        #: The newest publish time seen (the backend's clock): topics without a last event catch up from it.
        self._last_ts = time.time_ns() // 1_000_000
        #: Per topic, the newest event a catch-up delivered: live events up to it are not delivered again.
        self._caught_up: dict[str, Event] = {}
        self._rate_marks: dict[str, tuple[float, int]] = {}
        self._rates: dict[str, float] = {}
        self._dirty: list[Subscription] = []
        self._flush_handle: asyncio.Handle | None = None
        self.metrics = HubMetrics()
        self.healthy = True
        self.failure: str | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise HubClosed("a Hub cannot be reopened; create a new one")
        await self.backend.__aenter__()
        self._state = _State.OPENED
        self._pump_task = asyncio.create_task(self._pump(), name="broadcaster-hub-pump")
        self._pump_task.add_done_callback(self._pump_done)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    @property
    def closed(self) -> bool:
        return self._state is _State.CLOSED

    async def aclose(self) -> None:
        """End every subscription with a `shutdown` message, stop the pump, close the backend. Idempotent."""
        if self._state is _State.CLOSED:
            return
        opened = self._state is _State.OPENED
        self._state = _State.CLOSED
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
            self._flush_dirty()  # what the window held goes out before the shutdown message
        self.end_streams(self.shutdown_message)
        for task in (self._pump_task, self._sync_task):
            if task is not None and not task.done():
                task.cancel()
                try:
                    async with asyncio.timeout(5):
                        await task
                except (asyncio.CancelledError, TimeoutError):
                    if (current := asyncio.current_task()) is not None and current.cancelling():
                        raise
        if opened:
            await self.backend.__aexit__(None, None, None)
        logger.info("hub closed", extra={"subscriptions": len(self._subscriptions)})

    def shutdown_message(self, reason: str = "server stopping") -> Control:
        """A `shutdown` control message with a randomised reconnect hint (clients must not return at once)."""
        retry_ms = int(self.settings.retry_ms * random.uniform(1.0, 2.0))
        return Control("shutdown", {"reason": reason, "retry_ms": retry_ms})

    @property
    def backend_available(self) -> bool:
        """Whether the backend answered last time it was used (a backend without the notion: always)."""
        return bool(getattr(self.backend, "available", True))

    def end_streams(self, make_end: Callable[[], Control]) -> None:
        """Finish every subscription: each drains its queue, then gets its own `make_end()`."""
        for sub in list(self._subscriptions):
            sub.finish(make_end())

    def _check_open(self) -> None:
        if self._state is not _State.OPENED:
            raise HubClosed("the hub is closed" if self._state is _State.CLOSED else "the hub is not started")
        if not self.healthy:
            # A stream opened now would never receive anything: refuse it (503) instead.
            raise HubClosed(f"the hub failed: {self.failure}")

    def _pump_done(self, task: asyncio.Task[None]) -> None:
        if task.cancelled() or self._state is _State.CLOSED:
            return
        exc = task.exception()
        self.healthy = False
        self.failure = f"event pump stopped: {exc!r}" if exc else "event pump stopped"
        logger.error("hub pump stopped; ending all streams", exc_info=exc)
        failure = self.failure
        self.end_streams(lambda: Control("fault", {"reason": "server fault", "message": failure}))

    # -- publishing ------------------------------------------------------------------------

    def _check_data(self, data: bytes) -> None:
        # That data is on one line is the backend's check (`check_one_line`): producers may call
        # a backend directly, and one scan per event is enough.
        if len(data) > self.settings.max_event_bytes:
            raise EventTooLarge(len(data), self.settings.max_event_bytes)

    async def publish(self, topic: str, data: bytes, type: str = DEFAULT_EVENT_TYPE) -> Event:
        """Publish serialised JSON `data` on `topic`; return the stored event (with id and ts).

        Raises `InvalidTopic`, `InvalidEventType`, `EventTooLarge`, `HubClosed`, `BackendUnavailable`.
        """
        return (await self.publish_many(topic, [(type, data)]))[0]

    async def publish_json(self, topic: str, value: Any, type: str = DEFAULT_EVENT_TYPE) -> Event:
        """Serialise `value` with orjson and publish it."""
        return await self.publish(topic, orjson.dumps(value), type)

    async def publish_many(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Event]:
        """Publish several `(type, data)` items on one topic in one backend round trip, in order."""
        self._check_open()
        validate_topic(topic)
        for event_type, data in items:
            if event_type != DEFAULT_EVENT_TYPE:
                validate_type(event_type)
            self._check_data(data)
        if not items:
            return []
        events = await self.backend.publish(topic, items)
        self.metrics.published += len(events)
        return events

    # -- subscribing -----------------------------------------------------------------------

    async def subscribe(
        self,
        selectors: Collection[str],
        *,
        queue_size: int | None = None,
        queue_bytes: int | None = None,
        overflow: OverflowPolicy | str | None = None,
    ) -> Subscription:
        """Subscribe to topics and `*` patterns; return once events published from now on are delivered.

        The caller owns the subscription and ends it with `aclose()`. Raises
        `InvalidTopic`, `ValueError` (empty selectors, queue out of bounds), `HubClosed`.
        """
        self._check_open()
        keys = list(dict.fromkeys(validate_selector(s) for s in selectors))
        if not keys:
            raise ValueError("subscribe needs at least one topic")
        settings = self.settings
        size = settings.queue_size if queue_size is None else queue_size
        if not 1 <= size <= settings.max_queue_size:
            raise ValueError(f"queue must be between 1 and {settings.max_queue_size}, got {size}")
        sub = Subscription(
            keys,
            queue_size=size,
            queue_bytes=queue_bytes or settings.queue_bytes,
            overflow=OverflowPolicy(overflow or settings.overflow),
            on_release=self._release,
            dirty_list=self._dirty,
        )
        self._subscriptions.add(sub)
        for key in keys:
            route = self._routes.get(key)
            if route is None:
                route = self._routes[key] = _Route()
            route.subs[sub] = None
            route.changed()
        logger.debug("subscribe", extra={"selectors": keys, "queue": size, "overflow": str(sub.overflow)})
        try:
            await self._sync_backend()
        except BaseException:
            sub.close()
            raise
        return sub

    def _release(self, sub: Subscription) -> None:
        self._subscriptions.discard(sub)
        self.metrics.evicted += sub.evicted
        self.metrics.dropped_closed += sub.dropped
        emptied = False
        for key in sub.selectors:
            route = self._routes.get(key)
            if route is not None and sub in route.subs:
                del route.subs[sub]
                route.changed()
                if not route.subs:
                    del self._routes[key]
                    emptied = True
        if emptied and self._state is _State.OPENED and (self._sync_task is None or self._sync_task.done()):
            self._sync_task = asyncio.create_task(self._sync_backend(), name="broadcaster-hub-sync")

    async def _sync_backend(self) -> None:
        """Bring the backend's subscriptions in line with the local keys.

        The diff is computed again after every await, and the final "nothing to
        do" check has no await before returning, so a change made while this
        runs is never missed.
        """
        async with self._sync_lock:
            while self._state is _State.OPENED:
                add = [k for k in self._routes if k not in self._backend_keys]
                remove = [k for k in self._backend_keys if k not in self._routes]
                if add:
                    await self.backend.subscribe(add)
                    self._backend_keys.update(add)
                elif remove:
                    await self.backend.unsubscribe(remove)
                    self._backend_keys.difference_update(remove)
                else:
                    return

    def subscriber_count(self, selector: str) -> int:
        """Local subscriptions registered under `selector` (a topic or a pattern)."""
        route = self._routes.get(selector)
        return len(route.subs) if route is not None else 0

    @property
    def subscriptions(self) -> int:
        """Live subscriptions."""
        return len(self._subscriptions)

    @property
    def keys(self) -> int:
        """Topics and patterns with local subscribers (= backend subscriptions of this process)."""
        return len(self._routes)

    @property
    def dropped(self) -> int:
        """Events discarded by drop policies, over the hub's life."""
        return self.metrics.dropped_closed + sum(sub.dropped for sub in self._subscriptions)

    # -- the pump --------------------------------------------------------------------------

    def _schedule_flush(self) -> None:
        """Flush the subscriptions the last offers registered: at once after the burst, or after the window.

        call_soon runs after the pump yields, so every event it could take without
        waiting is queued by then and each subscriber gets one write per burst.
        """
        loop = asyncio.get_running_loop()
        delay = self.settings.coalesce_ms / 1000
        self._flush_handle = loop.call_later(delay, self._flush_dirty) if delay else loop.call_soon(self._flush_dirty)

    def _flush_dirty(self) -> None:
        self._flush_handle = None
        dirty = self._dirty[:]
        self._dirty.clear()  # the list object is shared with every subscription
        for sub in dirty:
            try:
                sub.flush()
            except Exception:  # one broken socket must not leave the others unflushed
                logger.exception("flushing a subscription failed; waking its writer instead")
                sub.wake()

    async def _pump(self) -> None:
        routes = self._routes
        counts = self._counts
        last_events = self._last_events
        metrics = self.metrics
        dirty = self._dirty
        caught_up = self._caught_up
        async for key, event in self.backend.messages():
            route = routes.get(key)
            if type(event) is Event:
                if caught_up and event.topic in caught_up:
                    done = caught_up[event.topic]
                    if event.epoch == done.epoch and event.seq <= done.seq:
                        continue  # the catch-up delivered it
                    del caught_up[event.topic]
                if route is not None:
                    for sub in route.fanout:
                        sub.offer(event)
                    if dirty and self._flush_handle is None:
                        self._schedule_flush()
                metrics.received += 1
                topic = event.topic
                counts[topic] = counts.get(topic, 0) + 1
                last_events[topic] = event
                self._last_ts = event.ts
            elif key == RESYNC.key and event is RESYNC.event:
                await self._catch_up()
            elif route is not None and isinstance(event, Control):
                for sub in route.fanout:
                    sub.put_control(Control(event.kind, event.fields))

    async def _catch_up(self) -> None:
        """After the backend reconnected: deliver what was published on our keys while it was away.

        Per topic, every retained page after the last event delivered (an outage may span more
        than a page); a topic that delivered nothing yet, from shortly before the newest
        publish time seen. A history that was lost or replaced meanwhile (Redis restarted
        empty, a replica promoted) is announced with `reset`; one that went backwards gets a
        new epoch, so that resumes from ids issued before it say `reset` too. Retried until
        it succeeds or the hub closes: giving up would lose the outage's events silently.
        """
        delay = 0.05
        while self._state is _State.OPENED:
            try:
                messages = await self._read_missed()
            except BackendError as exc:
                logger.warning("catch-up after reconnecting failed, retrying in %.2fs: %s", delay, exc)
                await asyncio.sleep(delay * random.uniform(0.8, 1.2))
                delay = min(delay * 2, 2.0)
                continue
            break
        else:
            return
        for key, item in messages:
            route = self._routes.get(key)
            if route is None:
                continue
            if isinstance(item, Event):
                for sub in route.fanout:
                    sub.offer(item)
                self._last_events[item.topic] = item
                self._caught_up[item.topic] = item
            else:
                for sub in route.fanout:
                    sub.put_control(Control(item.kind, item.fields))
        if self._dirty and self._flush_handle is None:
            self._schedule_flush()

    async def _read_missed(self) -> list[tuple[str, Event | Control]]:
        patterns = [k for k in self._routes if is_pattern(k)]
        topics = {k for k in self._routes if not is_pattern(k)}
        if patterns:
            topics.update(i.topic for i in await self.backend.topics("*") if matches_any(i.topic, patterns))
        messages: list[tuple[str, Event | Control]] = []
        since_ms = self._last_ts - CATCH_UP_MARGIN_MS
        for topic in sorted(topics):
            keys = [k for k in self._routes if matches_any(topic, [k])]
            missed = await read_missed(self.backend, topic, self._last_events.get(topic), since_ms)
            messages.extend((key, control) for control in missed.controls for key in keys)
            messages.extend((key, event) for event in missed.events for key in keys)
        messages.sort(key=lambda m: (m[1].ts, m[1].topic, m[1].seq) if isinstance(m[1], Event) else (0, "", 0))
        return messages

    # -- history and introspection ---------------------------------------------------------

    async def history(
        self, topic: str, *, after: int | None = None, since_ms: int | None = None, limit: int = HISTORY_PAGE
    ) -> HistoryPage:
        """Retained events of `topic` after seq `after` (from `since_ms`), oldest first. Raises `BackendUnavailable`."""
        self._check_open()
        return await self.backend.history(validate_topic(topic), after=after, since_ms=since_ms, limit=limit)

    async def history_pages(
        self,
        topic: str,
        *,
        after: int | None = None,
        since_ms: int | None = None,
        limit: int | None = None,
        page_size: int = HISTORY_PAGE,
    ) -> AsyncIterator[HistoryPage]:
        """Every retained page of `topic` after seq `after` (from `since_ms`), oldest first (see `history_pages`)."""
        self._check_open()
        pages = history_pages(
            self.backend, validate_topic(topic), after=after, since_ms=since_ms, limit=limit, page_size=page_size
        )
        async for page in pages:
            yield page

    async def tail(self, topic: str, count: int) -> list[Event]:
        self._check_open()
        return await self.backend.tail(validate_topic(topic), count)

    async def retained_topics(self, pattern: str = "*") -> list[TopicInfo]:
        self._check_open()
        return await self.backend.topics(pattern)

    async def ping(self) -> None:
        """Raise `HubClosed` or `BackendUnavailable` unless the hub and its backend answer."""
        self._check_open()
        if isinstance(self.backend, SupportsHealth):
            await self.backend.ping()

    async def topic_stats(self) -> list[TopicStats]:
        """Topics this process serves or saw events of, with local subscribers and events/s.

        Rates are averaged over the time since the previous call (at most a minute).
        Retained counts come from the backend when it answers.
        """
        now = time.monotonic()
        stats: dict[str, TopicStats] = {}
        for key, route in self._routes.items():
            stats.setdefault(key, TopicStats(key)).subscribers = len(route.subs)
        for topic, count in self._counts.items():
            entry = stats.setdefault(topic, TopicStats(topic))
            entry.events = count
            last = self._last_events.get(topic)
            entry.last_id = None if last is None else last.id
            mark_t, mark_count = self._rate_marks.get(topic, (now - _RATE_WINDOW_S, 0))
            if now - mark_t >= 1.0:
                self._rates[topic] = (count - mark_count) / min(now - mark_t, _RATE_WINDOW_S)
                self._rate_marks[topic] = (now, count)
            entry.rate = round(self._rates.get(topic, 0.0), 3)
        try:
            for info in await self.backend.topics("*"):
                entry = stats.setdefault(info.topic, TopicStats(info.topic))
                entry.retained = info.retained
                entry.last_id = entry.last_id or info.last_id
        except Exception as exc:  # the listing still shows what this process knows
            logger.warning("could not list retained topics: %s", exc)
        return [stats[t] for t in sorted(stats)]
