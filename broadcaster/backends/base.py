"""The backend protocol: what the hub needs from a transport between processes.

A backend stores and carries events; it never sees JSON (data crosses as bytes).
It numbers each topic's events (`seq` 1, 2, ... within the topic's epoch, see
`_ids`), keeps a bounded history per topic, and delivers every event published on
a subscribed topic or pattern to `messages()`, once per matching subscription key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, Self, runtime_checkable

from .._event import Control, Event


class BackendMessage(NamedTuple):
    """An event delivered to the hub, with the subscription key (topic or pattern) it came through.

    `event` is a `Control` (`gap`) when the backend knows it lost events for that key.
    """

    key: str
    event: Event | Control


#: The control kind of `RESYNC`.
RESYNC_KIND = "resync"
#: Yielded by `messages()` after the backend reconnected: live delivery may have missed events,
#: so the hub reads what its keys missed from history (`Hub.history_pages`).
RESYNC = BackendMessage("", Control(RESYNC_KIND))


@dataclass(frozen=True, slots=True)
class HistoryPage:
    """A page of retained events of one topic, oldest first, and where the topic's history stands.

    `epoch` names the topic's current history (None: the backend knows nothing of the
    topic, never published or forgotten); `last` is the seq of the newest event ever
    published in that epoch (0: none), kept after the retained events expire. Seqs have no
    gap within an epoch, so a reader after seq `n` lost events when the first event it
    gets is not `n + 1` (or it gets none and `last > n`): the stream announces `reset`.
    """

    events: list[Event]
    epoch: str | None
    last: int


@dataclass(frozen=True, slots=True)
class TopicInfo:
    """What a backend knows about a topic's retained history."""

    topic: str
    retained: int
    last_id: str | None


class Backend(Protocol):
    """A pub/sub transport with a bounded history per topic. An async context manager."""

    async def __aenter__(self) -> Self: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def aclose(self) -> None:
        """Release connections and end `messages()`. Idempotent."""
        ...

    async def publish(self, topic: str, items: Sequence[tuple[str, bytes]]) -> list[Event]:
        """Append `(type, data)` items to the topic's history and deliver them, in order, atomically each.

        Returns the stored events with their ids. Raises `BackendUnavailable`.
        """
        ...

    async def subscribe(self, keys: Collection[str]) -> None:
        """Start delivering events of these topics or patterns to `messages()`.

        Returns once the subscription is in effect: events published afterwards are delivered.
        """
        ...

    async def unsubscribe(self, keys: Collection[str]) -> None:
        """Stop delivering these topics or patterns."""
        ...

    def messages(self) -> AsyncIterator[BackendMessage]:
        """Every delivered event, in publish order, until `aclose()`. Iterated by one consumer (the hub).

        After a reconnect it yields `RESYNC` before any newer live event.
        """
        ...

    async def history(
        self, topic: str, *, after: int | None = None, since_ms: int | None = None, limit: int
    ) -> HistoryPage:
        """Retained events with a seq greater than `after` (and `ts >= since_ms` if given), oldest first.

        At most `limit` events. `after` counts in the topic's current epoch.
        """
        ...

    async def new_epoch(self, topic: str, replaced: str) -> None:
        """Start a new epoch for `topic` if its history is still in epoch `replaced` (it went backwards)."""
        ...

    async def tail(self, topic: str, count: int) -> list[Event]:
        """The last `count` retained events of the topic, oldest first."""
        ...

    async def topics(self, pattern: str = "*") -> list[TopicInfo]:
        """Topics with retained history whose name matches the glob `pattern`."""
        ...


@runtime_checkable
class SupportsHealth(Protocol):
    """A backend that can tell whether it answers (for `/readyz`)."""

    async def ping(self) -> None:
        """Return if the backend answers; raise `BackendUnavailable` otherwise."""
        ...
