"""Subscription: one subscriber's bounded queue, its overflow policy and its wake-up.

The hub calls `offer()` for every event and never waits: `offer()` appends to a
list and, if the consumer sleeps, resolves its waiter. The consumer (a stream
writer, or any `async for`) sleeps in `wait()` and takes everything queued in
one `drain()`, so a burst costs it one wake-up and one write.

The queue is bounded twice: in events (`queue_size`) and in bytes of event data
(`queue_bytes`). When an event does not fit, the overflow policy decides:

- `disconnect`: the queue is emptied and the subscription ends with a `fault`
  control message (`SubscriberEvicted` for `get()`/iteration);
- `drop-oldest`: the oldest events make room; a `gap` marker takes their place;
- `drop-newest`: the new event is discarded; a `gap` marker follows the queue.

A gap marker therefore sits exactly where events went missing, and consecutive
drops merge into one marker that counts them and names the first and last id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Protocol, TypeGuard

from ._event import Control, Event
from ._exceptions import HubClosed, SubscriberEvicted
from ._types import OverflowPolicy

logger = logging.getLogger(__name__)

Item = Event | Control


class Sink(Protocol):
    """A consumer that can take queued items at once, without waiting (a stream's writable socket)."""

    def write(self, items: list[Item]) -> bool:
        """Write `items` now if that costs no wait; return False to leave them to the consumer."""
        ...


_OPEN, _ENDING, _CLOSED = 0, 1, 2


class Subscription:
    """A live subscription to one or more topics or patterns.

    Create it with `Hub.subscribe()`; end it with `aclose()` (or `async with`).
    Iterating yields `Event`s and the `Control` messages `gap`, `reset` and
    `live`; it stops when the hub closes and raises `SubscriberEvicted` when the
    queue overflowed under the `disconnect` policy.
    """

    __slots__ = (
        "selectors",
        "queue_size",
        "queue_bytes",
        "overflow",
        "dropped",
        "evicted",
        "_queue",
        "_bytes",
        "_events",
        "_waiter",
        "_poked",
        "_state",
        "_end",
        "_last",
        "_on_release",
        "_dirty_list",
        "_dirty",
        "sink",
    )

    def __init__(
        self,
        selectors: Sequence[str],
        *,
        queue_size: int,
        queue_bytes: int,
        overflow: OverflowPolicy = OverflowPolicy.DISCONNECT,
        on_release: Callable[[Subscription], None] | None = None,
        dirty_list: list[Subscription] | None = None,
    ) -> None:
        self.selectors: tuple[str, ...] = tuple(selectors)
        self.queue_size = queue_size
        self.queue_bytes = queue_bytes
        self.overflow = OverflowPolicy(overflow)
        #: Events discarded by a drop policy over the subscription's life.
        self.dropped = 0
        #: Whether the subscription ended because its queue overflowed (`disconnect`).
        self.evicted = False
        # A list, not a deque: an empty deque preallocates a 64-slot block (~0.5 KB per idle
        # subscriber), and drain() swaps the whole list out, which a deque cannot do.
        self._queue: list[Item] = []
        self._bytes = 0
        self._events = 0
        self._waiter: asyncio.Future[None] | None = None
        self._poked = False
        self._state = _OPEN
        self._end: Control | None = None
        # Only a subscription with several selectors can be offered an event twice (a topic
        # and a pattern that matches it); seqs increase along a topic's epoch, so it keeps the
        # last event per topic and drops anything not newer. Per topic, not one for all: on a cluster
        # a shard's catch-up after a failover brings older events than other shards' live ones.
        # A single selector costs nothing here.
        self._last: dict[str, Event] | None = {} if len(self.selectors) > 1 else None
        self._on_release = on_release
        #: The hub's list of subscriptions to flush after this burst (or window) of offers.
        self._dirty_list = dirty_list
        self._dirty = False
        #: Set by a consumer whose socket can take events directly (see `offer`).
        self.sink: Sink | None = None

    def __repr__(self) -> str:
        return f"<Subscription {','.join(self.selectors)} queued={self._events} state={self._state}>"

    # -- the hub's side ---------------------------------------------------------------------

    def offer(self, event: Event) -> None:
        """Queue `event` without waiting; apply the overflow policy if it does not fit."""
        if self._state != _OPEN:
            return
        last_events = self._last
        if last_events is not None:
            last = last_events.get(event.topic)
            if last is not None and event.seq <= last.seq and event.epoch == last.epoch:
                return  # the same event through another of its selectors
            last_events[event.topic] = event
        size = event.size
        if (self._events >= self.queue_size or self._bytes + size > self.queue_bytes) and not self._spill():
            self._overflow(event, size)
        else:
            self._queue.append(event)
            self._events += 1
            self._bytes += size
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            dirty = self._dirty_list
            if self.sink is not None and dirty is not None:
                # Fast path: no wake-up; the hub flushes the subscription once the burst
                # (or the coalescing window) is over, so a burst leaves in one write.
                if not self._dirty:
                    self._dirty = True
                    dirty.append(self)
            else:
                waiter.set_result(None)

    def flush(self) -> None:
        """Write what is queued straight to the sink, or wake the consumer to do it.

        A parked consumer means nothing is in flight ahead of the queue, so the sink
        may write it all at once; a sink that cannot take it now (its socket is backed
        up) leaves it to the consumer, whose writes wait for the socket.
        """
        self._dirty = False
        waiter = self._waiter
        if waiter is None or waiter.done() or self._state != _OPEN:
            return
        if not self._spill():
            waiter.set_result(None)

    def _spill(self) -> bool:
        """Write the queue to the sink now if the consumer is parked and the socket takes it.

        Used at the end of a burst (`flush`) and, when the queue is full, in the
        middle of one: a burst longer than the queue (one Redis read can hold
        several published batches) must not overflow a subscriber whose socket is
        keeping up. The queue bounds what waits for the socket, not for the burst's end.
        """
        sink = self.sink
        waiter = self._waiter
        if sink is None or waiter is None or waiter.done() or not self._queue or not sink.write(self._queue):
            return False
        self._queue.clear()  # the sink wrote it synchronously and kept no reference
        self._events = self._bytes = 0
        return True

    def put_control(self, control: Control) -> None:
        """Queue a control message (`reset`, `live`); it costs no queue room."""
        if self._state == _OPEN:
            self._queue.append(control)
            self.wake()

    def finish(self, end: Control | None = None) -> None:
        """End the stream after what is queued, then `end` (e.g. `shutdown`). Idempotent."""
        if self._state != _OPEN:
            return
        self._state = _ENDING
        self._end = end
        self.wake()

    def wake(self) -> None:
        """Wake the consumer even with nothing queued (keepalives, shutdown)."""
        self._poked = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _overflow(self, event: Event, size: int) -> None:
        policy = self.overflow
        if policy is OverflowPolicy.DISCONNECT or size > self.queue_bytes:
            self._evict()
            return
        if policy is OverflowPolicy.DROP_NEWEST:
            self._note_gap(event)
            return
        # drop-oldest: pop events from the head (behind any gap marker) until the new one fits.
        # Control messages met on the way (`reset`, `live`) are kept, ahead of the marker.
        queue = self._queue
        marker: Control | None = None
        kept: list[Item] = []
        cut = 0
        while cut < len(queue) and (self._events >= self.queue_size or self._bytes + size > self.queue_bytes):
            old = queue[cut]
            cut += 1
            if type(old) is Event:
                self._events -= 1
                self._bytes -= old.size
                marker = _merge_gap(marker, old)
                self.dropped += 1
            elif marker is None and _is_marker(old):
                # Our marker of earlier drops sits ahead of every queued event, possibly behind
                # kept controls: merge into it rather than start a second one.
                marker = old
            else:
                kept.append(old)
        if marker is not None:
            kept.append(marker)
        queue[:cut] = kept
        queue.append(event)
        self._events += 1
        self._bytes += size

    def _note_gap(self, event: Event) -> None:
        self.dropped += 1
        queue = self._queue
        last = queue[-1] if queue else None
        if last is not None and _is_marker(last):
            _merge_gap(last, event)
        else:
            queue.append(_merge_gap(None, event))

    def _evict(self) -> None:
        self.evicted = True
        logger.info(
            "subscriber evicted: queue full",
            extra={"selectors": self.selectors, "queued": self._events, "queued_bytes": self._bytes},
        )
        self._queue.clear()
        self._events = self._bytes = 0
        self.finish(
            Control(
                "fault",
                {
                    "reason": "slow consumer",
                    "message": (
                        f"the subscriber's queue ({self.queue_size} events / {self.queue_bytes} bytes) "
                        "overflowed; reconnect with Last-Event-ID to resume from history"
                    ),
                },
            )
        )
        self._release()

    # -- the consumer's side ----------------------------------------------------------------

    @property
    def ended(self) -> bool:
        """True once the subscription ends (hub closed, evicted, or aclose()) and its queue is drained."""
        return self._state != _OPEN and not self._queue

    @property
    def end(self) -> Control | None:
        """The control message that ends the stream (`fault`, `shutdown`), once ended."""
        return self._end

    @property
    def queued(self) -> int:
        return self._events

    @property
    def pending(self) -> bool:
        """Whether anything (an event or a control message) waits in the queue."""
        return bool(self._queue)

    async def wait(self) -> None:
        """Sleep until something is queued, the subscription ends, or `wake()` is called."""
        if self._queue or self._poked or self._state != _OPEN:
            self._poked = False
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            await waiter
        finally:
            self._waiter = None
            self._poked = False

    def drain(self) -> list[Item]:
        """Take everything queued, in order (events and control messages)."""
        items = self._queue
        if not items:
            return []
        self._queue = []
        self._events = self._bytes = 0
        return items

    async def get(self) -> Item:
        """The next event or control message.

        Raises `SubscriberEvicted` after an overflow under `disconnect`, and
        `HubClosed` once the subscription ended for any other reason.
        """
        while True:
            if self._queue:
                item = self._queue.pop(0)
                if type(item) is Event:
                    self._events -= 1
                    self._bytes -= item.size
                return item
            if self._state != _OPEN:
                if self.evicted:
                    raise SubscriberEvicted(self._end.fields["message"] if self._end else "evicted")
                raise HubClosed("the subscription has ended")
            await self.wait()

    def __aiter__(self) -> AsyncIterator[Item]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Item]:
        while True:
            try:
                yield await self.get()
            except HubClosed:
                return

    async def aclose(self) -> None:
        """Leave the hub (and, after the last local subscriber, the backend topic). Idempotent."""
        self.close()

    def close(self) -> None:
        """Synchronous `aclose()`, for callbacks (a client that went away)."""
        if self._state == _CLOSED:
            return
        self._state = _CLOSED
        self._queue.clear()
        self._events = self._bytes = 0
        self.wake()
        self._release()

    def _release(self) -> None:
        on_release, self._on_release = self._on_release, None
        if on_release is not None:
            on_release(self)

    async def __aenter__(self) -> Subscription:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()


def _is_marker(item: Item) -> TypeGuard[Control]:
    """A gap marker of this subscription's drops (a backend's `gap` has no counts and is never merged into)."""
    return type(item) is Control and item.kind == "gap" and "dropped" in item.fields


def _merge_gap(marker: Control | None, event: Event) -> Control:
    if marker is None:
        return Control("gap", {"dropped": 1, "first_id": event.id, "last_id": event.id})
    fields = marker.fields
    fields["dropped"] += 1
    fields["last_id"] = event.id
    return marker
