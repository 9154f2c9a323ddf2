"""What a `Subscriber` yields: events and typed control messages.

A stream carries events and control messages (DESIGN.md, "Wire formats"). Each
wire message becomes one object: an `Event`, or for a control message the typed
class its name maps to in `CONTROL_TYPES`, so that a consumer can tell "events
were dropped" (`Gap`) from "the history is gone" (`Reset`) from "nothing
happened". A control name this client does not know becomes a plain `Control`,
so that a newer server never breaks an older client.

Every control object keeps the whole message it came from in `fields`, for the
fields a newer server may add.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: The reason of the fault message that ends a stream at its token's expiry: reconnect with a fresh token.
TOKEN_EXPIRED = "token_expired"
#: The NDJSON keepalive's control name; it is never yielded (SSE keepalives are comment lines).
HEARTBEAT = "heartbeat"


@dataclass(frozen=True, slots=True)
class Event:
    """One published event, as the server delivered it. `data` is the decoded JSON value.

    `id` is opaque: compare ids for equality only, and hand the last one back to
    resume (`Subscriber(last_event_id=...)`).
    """

    id: str
    topic: str
    type: str
    ts: int
    data: Any

    def as_dict(self) -> dict[str, Any]:
        """The NDJSON envelope: `{"id", "topic", "type", "ts", "data"}`."""
        return {"id": self.id, "topic": self.topic, "type": self.type, "ts": self.ts, "data": self.data}


@dataclass(frozen=True, slots=True)
class Control:
    """A control message whose name this client has no class for (a newer server's)."""

    name: str
    fields: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The message as the server sent it: `{"control": name, ...fields}`."""
        return {"control": self.name, **self.fields}


@dataclass(frozen=True, slots=True)
class _Typed:
    """Base of the typed control messages: the wire name and the whole message."""

    #: The wire name this object was parsed from (the fault message has two, see `CONTROL_TYPES`).
    name: str = field(repr=False)
    fields: Mapping[str, Any] = field(repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The message as the server sent it: `{"control": name, ...fields}`."""
        return {"control": self.name, **self.fields}


@dataclass(frozen=True, slots=True)
class Gap(_Typed):
    """Events were dropped for this subscriber (its queue overflowed under `drop-oldest`/`drop-newest`).

    `dropped` counts them; `first_id` and `last_id` bound them where the server knows.
    """

    dropped: int | None = None
    first_id: str | None = None
    last_id: str | None = None
    reason: str | None = None

    kind: ClassVar[str] = "gap"


@dataclass(frozen=True, slots=True)
class Reset(_Typed):
    """The history no longer reaches back to the resume point: events of `topics` after `last_event_id` were lost.

    `last_event_id` is the server's, or else the last event of the one topic named that
    the subscriber had yielded (None when it names several, or none was yielded).
    """

    reason: str = ""
    last_event_id: str | None = None
    topics: tuple[str, ...] = ()

    kind: ClassVar[str] = "reset"


@dataclass(frozen=True, slots=True)
class Live(_Typed):
    """The replay after a resume point (or `tail`) is complete; live events follow.

    `cursor`: on a multi-topic stream, the resume point the stream started from
    (`<base_ms>~<id>,...`, see docs/resume.md); the subscriber builds its
    `last_event_id` on it.
    """

    replayed: int = 0
    cursor: str | None = None

    kind: ClassVar[str] = "live"


@dataclass(frozen=True, slots=True)
class Shutdown(_Typed):
    """The server is stopping. The subscriber reconnects by itself after `retry_ms`."""

    reason: str = ""
    retry_ms: int | None = None

    kind: ClassVar[str] = "shutdown"


@dataclass(frozen=True, slots=True)
class Fault(_Typed):
    """The stream ended because of a fault (`reason`: a slow consumer, `token_expired`, a server fault).

    The subscriber reconnects by itself and resumes after the last event it yielded.
    """

    reason: str = ""
    message: str | None = None

    kind: ClassVar[str] = "fault"


ControlMessage = Gap | Reset | Live | Shutdown | Fault | Control
#: Everything a `Subscriber` yields.
Item = Event | ControlMessage


def _text(fields: Mapping[str, Any], key: str) -> str | None:
    value = fields.get(key)
    return value if isinstance(value, str) else None


def _count(fields: Mapping[str, Any], key: str) -> int | None:
    value = fields.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _gap(name: str, f: Mapping[str, Any]) -> Gap:
    return Gap(name, f, _count(f, "dropped"), _text(f, "first_id"), _text(f, "last_id"), _text(f, "reason"))


def _reset(name: str, f: Mapping[str, Any]) -> Reset:
    topics = f.get("topics")
    listed = tuple(t for t in topics if isinstance(t, str)) if isinstance(topics, list) else ()
    return Reset(name, f, _text(f, "reason") or "", _text(f, "last_event_id"), listed)


def _live(name: str, f: Mapping[str, Any]) -> Live:
    return Live(name, f, _count(f, "replayed") or 0, _text(f, "cursor"))


def _shutdown(name: str, f: Mapping[str, Any]) -> Shutdown:
    return Shutdown(name, f, _text(f, "reason") or "", _count(f, "retry_ms"))


def _fault(name: str, f: Mapping[str, Any]) -> Fault:
    return Fault(name, f, _text(f, "reason") or "", _text(f, "message"))


#: Wire name -> constructor. The one place that knows the names. The stream's fault message is
#: `fault` (EventSource reserves `error`); servers before issue 16 named it `error`: both map to `Fault`.
CONTROL_TYPES: dict[str, Callable[[str, Mapping[str, Any]], ControlMessage]] = {
    "gap": _gap,
    "reset": _reset,
    "live": _live,
    "shutdown": _shutdown,
    "error": _fault,
    "fault": _fault,
}


def parse_message(message: Mapping[str, Any]) -> Item | None:
    """The object for one decoded wire message (an NDJSON line, an SSE frame's data); None for a keepalive.

    Raises `ValueError` for a message that is neither an event envelope nor a control message.
    """
    name = message.get("control")
    if name is not None:
        if not isinstance(name, str):
            raise ValueError(f"a control message's name must be a string, got {name!r}")
        if name == HEARTBEAT:
            return None
        fields = {k: v for k, v in message.items() if k != "control"}
        make = CONTROL_TYPES.get(name)
        return Control(name, fields) if make is None else make(name, fields)
    try:
        event_id, topic, event_type, ts = message["id"], message["topic"], message["type"], message["ts"]
        data = message["data"]
    except KeyError as exc:
        raise ValueError(f"an event without {exc.args[0]!r}: {str(dict(message))[:200]}") from None
    if not (isinstance(event_id, str) and isinstance(topic, str) and isinstance(event_type, str)):
        raise ValueError(f"an event whose id, topic or type is not a string: {str(dict(message))[:200]}")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise ValueError(f"an event whose ts is not an integer: {ts!r}")
    return Event(event_id, topic, event_type, ts, data)
