"""Broadcaster: a real-time stream broadcaster.

Producers publish events on named topics; every subscriber of a topic receives
them live. The core (`Hub`, `Subscription`, `Event`, backends) has no HTTP in
it; `broadcaster.http` serves it over SSE and NDJSON.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._config import Settings
from ._event import Control, Event
from ._exceptions import (
    BackendClosed,
    BackendError,
    BackendUnavailable,
    BroadcasterError,
    ConfigError,
    EventTooLarge,
    HubClosed,
    InvalidEventData,
    InvalidEventId,
    InvalidEventType,
    InvalidTopic,
    SubscriberEvicted,
)
from ._hub import Hub, TopicStats
from ._redact import redact_url
from ._replay import Replay
from ._subscription import Subscription
from ._types import OverflowPolicy, Publish, StreamFormat
from .backends import Backend, BackendMessage, HistoryPage, SupportsHealth, backend_from_url

__all__ = [
    "Backend",
    "BackendClosed",
    "BackendError",
    "BackendMessage",
    "BackendUnavailable",
    "BroadcasterError",
    "ConfigError",
    "Control",
    "Event",
    "EventTooLarge",
    "HistoryPage",
    "Hub",
    "HubClosed",
    "InvalidEventData",
    "InvalidEventId",
    "InvalidEventType",
    "InvalidTopic",
    "OverflowPolicy",
    "Publish",
    "Replay",
    "Settings",
    "StreamFormat",
    "SubscriberEvicted",
    "Subscription",
    "SupportsHealth",
    "TopicStats",
    "__version__",
    "backend_from_url",
    "redact_url",
]
