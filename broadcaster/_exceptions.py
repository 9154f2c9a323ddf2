"""The whole error tree of broadcaster.

```
BroadcasterError
 ├─ ConfigError(BroadcasterError, ValueError)      bad settings, unknown backend scheme
 ├─ InvalidTopic(BroadcasterError, ValueError)     a topic or pattern that breaks the naming rule
 ├─ InvalidEventType(BroadcasterError, ValueError) an event type that breaks the naming rule
 ├─ InvalidEventId(BroadcasterError, ValueError)   a resume point that is not an id of ours
 ├─ EventTooLarge(BroadcasterError, ValueError)    serialised data over max_event_bytes
 ├─ InvalidEventData(BroadcasterError, ValueError) data that is empty or not on one line
 │   └─ InvalidLine                                a line (or a JSON body) the line rules reject, with a code
 ├─ HubClosed                                      publish/subscribe after Hub.aclose()
 ├─ SubscriberEvicted                              raised by Subscription.get() after eviction
 └─ BackendError
     ├─ BackendUnavailable                         connect / IO failure (mapped from redis-py)
     └─ BackendClosed                              use after the backend's aclose()
```

Third-party errors are mapped to these at the boundary where they happen
(`backends/redis.py`); nothing above `backends/` knows about redis-py.
"""

from __future__ import annotations


class BroadcasterError(Exception):
    """Base class of every error raised by broadcaster."""


class ConfigError(BroadcasterError, ValueError):
    """A setting is invalid, or a backend URL names an unknown scheme."""


class InvalidTopic(BroadcasterError, ValueError):
    """A topic name or topic pattern does not follow the naming rule."""


class InvalidEventType(BroadcasterError, ValueError):
    """An event type does not follow the naming rule."""


class InvalidEventId(BroadcasterError, ValueError):
    """A resume point (`Last-Event-ID`, `after=`) is not an event id this server issued."""


class EventTooLarge(BroadcasterError, ValueError):
    """An event's serialised data is larger than `max_event_bytes`."""

    def __init__(self, size: int, limit: int) -> None:
        super().__init__(f"event data is {size} bytes, the limit is {limit} bytes")
        self.size = size
        self.limit = limit


class InvalidEventData(BroadcasterError, ValueError):
    """Event data that is empty or spans lines (it must be serialised JSON on one line)."""


class InvalidLine(InvalidEventData):
    """A line, or one event's data, that breaks the line rules (`broadcaster._lines`).

    `code` says which rule: `invalid_json`, `invalid_utf8` or `too_long`; the message says
    what is wrong. The line number is the caller's to add (`report(number)`).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code

    def report(self, line: int) -> dict[str, object]:
        """The rejection as the ingest report and the producers list it: `{"line", "code", "reason"}`."""
        return {"line": line, "code": self.code, "reason": str(self)}


class HubClosed(BroadcasterError):
    """The hub was closed: it takes no more publishes or subscriptions."""


class SubscriberEvicted(BroadcasterError):
    """The subscription was ended because its queue overflowed under the `disconnect` policy."""


class BackendError(BroadcasterError):
    """Base class of backend failures."""


class BackendUnavailable(BackendError):
    """The backend cannot be reached right now (connection refused, lost, timed out)."""


class BackendClosed(BackendError):
    """The backend was used after `aclose()`."""
