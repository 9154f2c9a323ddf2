"""Open-stream counters: one total per process and one count per client, released by a ticket."""

from __future__ import annotations

from collections.abc import Hashable


class StreamTicket:
    """One admitted stream; `release()` (idempotent) gives its place back."""

    __slots__ = ("_slots", "_key")

    def __init__(self, slots: StreamSlots, key: Hashable) -> None:
        self._slots: StreamSlots | None = slots
        self._key = key

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots._release(self._key)


class StreamSlots:
    """Count open streams, in total (at most `max_total`) and per key (at most `max_per_key`, 0: no cap).

    `full()` and `client_full(key)` only look; `acquire(key)` counts a stream
    and returns its ticket. A key's entry is removed when its count drops to
    zero, so the map holds only clients with open streams.
    """

    def __init__(self, max_total: int, max_per_key: int = 0) -> None:
        self.max_total = max_total
        self.max_per_key = max_per_key
        self.total = 0
        self._per_key: dict[Hashable, int] = {}

    def full(self) -> bool:
        return self.total >= self.max_total

    def client_full(self, key: Hashable) -> bool:
        return self.max_per_key > 0 and self._per_key.get(key, 0) >= self.max_per_key

    def count(self, key: Hashable) -> int:
        return self._per_key.get(key, 0)

    @property
    def clients(self) -> int:
        """Clients with at least one open stream."""
        return len(self._per_key)

    def acquire(self, key: Hashable) -> StreamTicket:
        self.total += 1
        self._per_key[key] = self._per_key.get(key, 0) + 1
        return StreamTicket(self, key)

    def _release(self, key: Hashable) -> None:
        self.total -= 1
        left = self._per_key.get(key, 0) - 1
        if left > 0:
            self._per_key[key] = left
        else:
            self._per_key.pop(key, None)
