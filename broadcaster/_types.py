"""Small shared types: the overflow policy, the publish callable, control kinds."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable

#: A callable that publishes serialised data on a topic (what producers depend on).
Publish = Callable[[str, bytes], Awaitable[None]]


class OverflowPolicy(enum.StrEnum):
    """What a subscriber's full queue does with the next event."""

    #: End the stream with a `fault` control message (the default; SSE clients resume).
    DISCONNECT = "disconnect"
    #: Discard the oldest queued events; a `gap` message precedes the next event delivered.
    DROP_OLDEST = "drop-oldest"
    #: Discard the incoming event; a `gap` message precedes the next event delivered.
    DROP_NEWEST = "drop-newest"


class StreamFormat(enum.StrEnum):
    """The wire format of a subscription stream."""

    SSE = "sse"
    NDJSON = "ndjson"
