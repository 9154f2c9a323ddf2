"""Broadcaster: a real-time stream broadcaster.

Producers publish events on named topics; every subscriber of a topic receives
them live. The core (`Hub`, `Subscription`, `Event`, backends) has no HTTP in
it; `broadcaster.http` serves it over SSE and NDJSON.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ._config import (
    DEFAULT_HISTORY_SIZE,
    DEFAULT_HISTORY_TTL_S,
    DEFAULT_MAX_EVENT_BYTES,
    DEFAULT_REDIS_PREFIX,
    Settings,
)
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
    InvalidLine,
    InvalidTopic,
    SubscriberEvicted,
)
from ._hub import Hub, TopicStats
from ._ids import Cursor, EventRef, StreamCursor, format_id, parse_cursor, parse_event_id, topic_tag
from ._lines import Line, LineRule, LineSplitter, TooLong, check_data, json_data, line_rule, text_data
from ._redact import redact_url
from ._replay import Replay
from ._subscription import Subscription
from ._topics import DEFAULT_EVENT_TYPE, validate_selector, validate_topic, validate_type
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
    "Cursor",
    "DEFAULT_EVENT_TYPE",
    "DEFAULT_HISTORY_SIZE",
    "DEFAULT_HISTORY_TTL_S",
    "DEFAULT_MAX_EVENT_BYTES",
    "DEFAULT_REDIS_PREFIX",
    "Event",
    "EventRef",
    "EventTooLarge",
    "HistoryPage",
    "Hub",
    "HubClosed",
    "InvalidEventData",
    "InvalidEventId",
    "InvalidEventType",
    "InvalidLine",
    "InvalidTopic",
    "Line",
    "LineRule",
    "LineSplitter",
    "OverflowPolicy",
    "Publish",
    "Replay",
    "Settings",
    "StreamCursor",
    "StreamFormat",
    "SubscriberEvicted",
    "Subscription",
    "SupportsHealth",
    "TooLong",
    "TopicStats",
    "__version__",
    "backend_from_url",
    "check_data",
    "format_id",
    "json_data",
    "line_rule",
    "parse_cursor",
    "parse_event_id",
    "redact_url",
    "text_data",
    "topic_tag",
    "validate_selector",
    "validate_topic",
    "validate_type",
]
