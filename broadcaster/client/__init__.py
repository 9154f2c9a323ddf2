"""A Python subscriber for a broadcaster server: resumes by itself, backs off, notices dead connections.

```python
from broadcaster.client import Event, Gap, Subscriber

async with Subscriber("http://127.0.0.1:8000", "sensors.*") as sub:
    async for item in sub:
        if isinstance(item, Event):
            print(item.topic, item.data)
        elif isinstance(item, Gap):
            print("missed", item.dropped)
```

`iter_events(...)` is the same as a plain iterator (with the `last_event_id` to
persist), and `publish(url, topic, data)` sends one event. Importing this package imports no server dependency (FastAPI,
uvicorn, redis): only httpx and orjson.
"""

from __future__ import annotations

from ._errors import ClientError, Forbidden, ProtocolError, RequestRefused, ServerUnavailable, Unauthorized
from ._http import TokenSource
from ._messages import CONTROL_TYPES, Control, ControlMessage, Event, Fault, Gap, Item, Live, Reset, Shutdown
from ._retry import Retry
from ._subscriber import DEFAULT_HEARTBEAT_TIMEOUT_S, DEFAULT_TIMEOUT_S, Subscriber
from ._sync import Events, Published, iter_events, publish

__all__ = [
    "CONTROL_TYPES",
    "ClientError",
    "Control",
    "ControlMessage",
    "DEFAULT_HEARTBEAT_TIMEOUT_S",
    "DEFAULT_TIMEOUT_S",
    "Event",
    "Events",
    "Fault",
    "Forbidden",
    "Gap",
    "Item",
    "Live",
    "ProtocolError",
    "Published",
    "RequestRefused",
    "Reset",
    "Retry",
    "ServerUnavailable",
    "Shutdown",
    "Subscriber",
    "TokenSource",
    "Unauthorized",
    "iter_events",
    "publish",
]
