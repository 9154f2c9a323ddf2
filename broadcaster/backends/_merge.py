"""Batches from several shard connections, released in id order (the cluster backend's reader).

Each shard delivers its own topics in order, but two shards' messages can reach this
process in either order, and a multi-topic subscription keeps only ids newer than the
last it got. Cluster ids are times (see docs/cluster.md), so a batch is held until the
local clock is `hold_ms` past the moment it would have arrived with the fastest transit
seen recently (`offset`, the running minimum of arrival minus id time, which also
absorbs a clock skew between this machine and the nodes): by then every earlier event of
the other shards has arrived too, short of a stall longer than `hold_ms`.
"""

from __future__ import annotations

import heapq
import itertools
import time

from .._event import Event, EventId
from .base import BackendMessage

#: How long past its expected arrival a batch waits for earlier ones from other shards.
DEFAULT_HOLD_MS = 2.0
_WINDOW_S = 1.0  # the transit minimum is taken over the last one to two windows


def id_time_ms(seq: EventId) -> float:
    """The publish time an id encodes: its ms plus the microsecond packed in `n`."""
    return seq[0] + (seq[1] >> 10) // 16384 / 1000


def _now_ms() -> float:
    return time.time_ns() / 1_000_000


class OrderedMerge:
    """A hold-back queue of message batches keyed by their first event's id."""

    def __init__(self, hold_ms: float = DEFAULT_HOLD_MS) -> None:
        self.hold_ms = hold_ms
        self._heap: list[tuple[EventId, int, float, list[BackendMessage]]] = []
        self._order = itertools.count()
        self._min_now = self._min_before = float("inf")
        self._window_ends = 0.0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, batch: list[BackendMessage]) -> None:
        now = _now_ms()
        first = next((m.event for m in batch if isinstance(m.event, Event)), None)
        if first is None:  # control messages only: release at once, before later ids
            heapq.heappush(self._heap, ((0, 0), next(self._order), now, batch))
            return
        seq = first.seq
        published = id_time_ms(seq)
        if now > self._window_ends:
            self._min_before, self._min_now = self._min_now, float("inf")
            self._window_ends = now + _WINDOW_S * 1000
        self._min_now = min(self._min_now, now - published)
        heapq.heappush(self._heap, (seq, next(self._order), published, batch))

    def _release_at(self, published: float) -> float:
        offset = min(self._min_now, self._min_before)
        return published + (0.0 if offset == float("inf") else offset) + self.hold_ms

    def wait_ms(self) -> float | None:
        """Milliseconds until the first batch is due (0 if due now); None if nothing is held."""
        if not self._heap:
            return None
        return max(0.0, self._release_at(self._heap[0][2]) - _now_ms())

    def pop_due(self) -> list[BackendMessage]:
        """Every batch due now, oldest id first, as one list."""
        out: list[BackendMessage] = []
        now = _now_ms()
        heap = self._heap
        while heap and (heap[0][0] == (0, 0) or self._release_at(heap[0][2]) <= now):
            out.extend(heapq.heappop(heap)[3])
        return out
