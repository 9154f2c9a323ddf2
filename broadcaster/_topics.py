"""Naming rules for topics, patterns and event types, and pattern matching.

A topic is `^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}$`; `.` separates segments by
convention. A pattern is a topic in which `*` stands for any run of characters,
dots included: `sensors.*` matches `sensors.kitchen` and `sensors.kitchen.temp`.
That is the glob of Redis `PSUBSCRIBE`, so the Redis backend hands patterns to
Redis unchanged and never filters twice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from ._exceptions import InvalidEventType, InvalidTopic

# `\Z`, not `$`: `$` also matches before a trailing newline, which would let "x\n" through
# into SSE fields and NDJSON lines.
TOPIC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,199}\Z")
PATTERN_RE = re.compile(r"^[A-Za-z0-9*][A-Za-z0-9._:*-]{0,199}\Z")
TYPE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}\Z")
DEFAULT_EVENT_TYPE = "message"
#: Names a publisher may not use as an event type: clients could not tell them from control messages
#: (`error` was the name of `fault`, and is EventSource's own connection-failure event).
RESERVED_TYPES = frozenset({"gap", "reset", "live", "fault", "error", "shutdown", "heartbeat"})


def validate_topic(topic: str) -> str:
    """Return `topic` if it is a valid topic name, else raise `InvalidTopic` saying why."""
    if TOPIC_RE.match(topic) is None:
        raise InvalidTopic(_why(topic, "topic"))
    return topic


def validate_selector(selector: str) -> str:
    """Return a topic or pattern (with `*`) if valid, else raise `InvalidTopic`."""
    if "*" not in selector:
        return validate_topic(selector)
    if PATTERN_RE.match(selector) is None:
        raise InvalidTopic(_why(selector, "topic pattern"))
    return selector


def validate_type(event_type: str) -> str:
    """Return `event_type` if valid and not reserved, else raise `InvalidEventType`."""
    if TYPE_RE.match(event_type) is None:
        raise InvalidEventType(
            f"event type {event_type[:80]!r} is invalid: 1-64 characters from A-Z a-z 0-9 . _ : -, "
            "starting with a letter or digit"
        )
    if event_type in RESERVED_TYPES:
        raise InvalidEventType(f"event type {event_type!r} is reserved for control messages")
    return event_type


def is_pattern(selector: str) -> bool:
    return "*" in selector


def pattern_regex(pattern: str) -> re.Pattern[str]:
    """A regex equivalent to the glob `pattern` (only `*` is special in our alphabet)."""
    return re.compile("^" + ".*".join(re.escape(part) for part in pattern.split("*")) + "$")


def matches_any(topic: str, selectors: Iterable[str]) -> bool:
    """Whether `topic` is one of `selectors` or matches one of its patterns."""
    return any(topic == s or (is_pattern(s) and pattern_regex(s).match(topic) is not None) for s in selectors)


def _why(value: str, what: str) -> str:
    if not value:
        return f"{what} is empty"
    if len(value) > 200:
        return f"{what} is {len(value)} characters long, the limit is 200"
    shown = value[:80] + ("..." if len(value) > 80 else "")
    allowed = "A-Z a-z 0-9 . _ : -" + (" *" if what == "topic pattern" else "")
    return f"{what} {shown!r} is invalid: use 1-200 characters from {allowed}, starting with a letter or digit"
