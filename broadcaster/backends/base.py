"""The backend protocol: what the hub needs from a transport between processes.

A backend stores and carries events; it never sees JSON (data crosses as bytes).
It assigns event ids (`<ms>-<n>`, ordered across all its topics), keeps a
bounded history per topic, and delivers every event published on a subscribed
topic or pattern to `messages()`, once per matching subscription key.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol, Self, runtime_checkable

from .._event import Control, Event, EventId


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
    """A page of retained events, oldest first.

    `trimmed` is the id of the newest event of the topic that is no longer
    retained (cut by count or age), or None if nothing was ever cut: a resume
    point older than it has lost events, which the stream announces with `reset`.
    """

    events: list[Event]
    trimmed: EventId | None


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

    async def history(self, topic: str, *, after: EventId | None, limit: int) -> HistoryPage:
        """Retained events with an id greater than `after` (all if None), oldest first, at most `limit`."""
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
