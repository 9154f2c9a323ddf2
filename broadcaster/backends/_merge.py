"""Batches from several shard connections, released in id order (the cluster backend's reader).

Each shard delivers its own messages in the order its node executed them, but two shards'
messages can reach this process in either order, and a multi-topic stream's
`Last-Event-ID` is a complete resume point only if its ids increase. Cluster ids are
times (see docs/cluster.md), so a batch with id `h` is released once no other shard can
still send an older one: each other shard with subscriptions has either delivered an id
of at least `h` already (its watermark), or answered a `PING <tick>` sent after the batch
arrived (a node answers in order, so everything it published before is in). The merge
asks for those PINGs itself; a shard that does not answer within `max_hold_ms` (it is
failing, and will be caught up from history) holds nothing back longer than that.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Collection

from .._event import Event, EventId
from .base import BackendMessage

Home = tuple[str, int]
#: The longest a batch waits for a shard that does not answer its PING.
DEFAULT_MAX_HOLD_MS = 50.0
_NONE: EventId = (-1, -1)


def _now_ms() -> float:
    return time.monotonic() * 1000


class OrderedMerge:
    """A hold-back queue of message batches keyed by their first event's id."""

    def __init__(
        self,
        homes: Callable[[], Collection[Home]],
        ping: Callable[[Home, int], None],
        max_hold_ms: float = DEFAULT_MAX_HOLD_MS,
    ) -> None:
        self._homes = homes  # the shards that are connected now
        self._ping = ping
        self.max_hold_ms = max_hold_ms
        self._heap: list[tuple[EventId, int, float, Home | None, list[BackendMessage]]] = []
        self._tick = itertools.count(1)
        self._watermark: dict[Home, EventId] = {}
        self._answered: dict[Home, int] = {}  # the newest tick a shard's PONG carried
        self._asked: dict[Home, int] = {}  # the newest tick sent to a shard in a PING

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, home: Home | None, batch: list[BackendMessage]) -> None:
        first = next((m.event for m in batch if isinstance(m.event, Event)), None)
        tick = next(self._tick)
        if first is None or home is None:  # control messages only: release at once, before later ids
            heapq.heappush(self._heap, (_NONE, tick, 0.0, None, batch))
            return
        last = next(m.event for m in reversed(batch) if isinstance(m.event, Event))
        if last.seq > self._watermark.get(home, _NONE):
            self._watermark[home] = last.seq
        heapq.heappush(self._heap, (first.seq, tick, _now_ms(), home, batch))

    def pong(self, home: Home, tick: int) -> None:
        if tick > self._answered.get(home, 0):
            self._answered[home] = tick

    def _blockers(self, seq: EventId, tick: int, home: Home) -> list[Home]:
        return [
            other
            for other in self._homes()
            if other != home and self._watermark.get(other, _NONE) < seq and self._answered.get(other, 0) < tick
        ]

    def pop_due(self) -> list[BackendMessage]:
        """Every batch that no other shard can precede any more, oldest id first, as one list."""
        out: list[BackendMessage] = []
        heap = self._heap
        while heap:
            seq, tick, arrived, home, batch = heap[0]
            if home is not None and _now_ms() - arrived < self.max_hold_ms:
                blockers = self._blockers(seq, tick, home)
                if blockers:
                    for other in blockers:
                        if self._asked.get(other, 0) < tick:
                            self._asked[other] = tick
                            self._ping(other, tick)
                    break
            heapq.heappop(heap)
            out.extend(batch)
        return out

    def wait_ms(self) -> float | None:
        """Milliseconds until the first batch is released anyway (None if nothing is held)."""
        if not self._heap:
            return None
        return max(0.0, self._heap[0][2] + self.max_hold_ms - _now_ms())
