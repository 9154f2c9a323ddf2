"""Events, control messages and event ids.

An `Event` carries its data already serialised (JSON bytes, one line). The
encoders (`broadcaster.http.encoders`) frame events and control messages; an
event's frames are built on first use and cached on the event, so every
subscriber of a process shares the same bytes: fan-out is a queue append, never
an encoding.

Event ids are `<ms>-<n>`: the publish time in Unix milliseconds and a counter
that the backend increases on every publish, on every topic. Ids are therefore
ordered across all topics of one backend (one Redis server, or one process on
the memory backend), which is what lets a multi-topic stream resume from the
single id that a browser sends back in `Last-Event-ID`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ._exceptions import InvalidEventData, InvalidEventId

EventId = tuple[int, int]
"""A parsed event id: (milliseconds, counter). Ordered like the events."""

# ASCII digits and `\Z`: `\d` also matches other scripts' digits and `$` a trailing newline.
_ID_RE = re.compile(r"^([0-9]{1,15})-([0-9]{1,19})\Z")


def parse_id(text: str) -> EventId:
    """Parse an event id; raise `InvalidEventId` if `text` is not one."""
    match = _ID_RE.match(text)
    if match is None:
        raise InvalidEventId(f"{text[:64]!r} is not an event id (expected <milliseconds>-<counter>)")
    return int(match[1]), int(match[2])


def check_one_line(data: bytes) -> None:
    """Raise `InvalidEventData` unless `data` is non-empty and on one line.

    Every wire format depends on it: SSE `data:` fields, NDJSON lines, and the
    Redis backend's newline-framed batches. Both backends check it, since
    producers may call a backend without a hub in between.
    """
    if not data or b"\n" in data or b"\r" in data:
        raise InvalidEventData("event data must be serialised JSON on one line (not empty, no CR or LF)")


def join_lines(datas: Sequence[bytes]) -> bytes:
    """`datas` joined by newlines, after `check_one_line` of each (a batch's wire form).

    The joined bytes are checked with three scans in C; only a batch that fails them is
    checked item by item, for the error message.
    """
    blob = b"\n".join(datas)
    if (
        blob.count(b"\n") != len(datas) - 1
        or b"\r" in blob
        or b"\n\n" in blob
        or blob[:1] in (b"", b"\n")
        or blob[-1:] == b"\n"
    ):
        for data in datas:
            check_one_line(data)
    return blob


def format_id(event_id: EventId) -> str:
    return f"{event_id[0]}-{event_id[1]}"


class Event:
    """One published event. Immutable by convention.

    `data` is the JSON serialisation of the event's payload (one line, no CR/LF). The
    slots `sse_frame`, `envelope_frame` and `ndjson_line` are the encoders' cache
    (`broadcaster.http.encoders`): each wire frame is built on first use and shared by
    every subscriber of the process.
    """

    __slots__ = ("topic", "id", "type", "ts", "data", "size", "_seq", "sse_frame", "envelope_frame", "ndjson_line")

    def __init__(self, topic: str, id: str, type: str, data: bytes, ts: int | None = None) -> None:
        self.topic = topic
        self.id = id
        self.type = type
        self.data = data
        self.ts = int(id.partition("-")[0]) if ts is None else ts
        #: Bytes this event costs a queue: its data plus a fixed overhead for framing.
        self.size = len(data) + 64
        self._seq: EventId | None = None
        self.sse_frame: bytes | None = None
        self.envelope_frame: bytes | None = None
        self.ndjson_line: bytes | None = None

    def __repr__(self) -> str:
        return f"Event(topic={self.topic!r}, id={self.id!r}, type={self.type!r}, data={self.data[:40]!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.topic, self.id, self.type, self.data) == (other.topic, other.id, other.type, other.data)

    def __hash__(self) -> int:
        return hash((self.topic, self.id))

    @property
    def seq(self) -> EventId:
        """The parsed id, for ordering."""
        if self._seq is None:
            self._seq = parse_id(self.id)
        return self._seq

    def json(self) -> Any:
        """The payload, deserialised."""
        return orjson.loads(self.data)

    def as_dict(self) -> dict[str, Any]:
        """The NDJSON envelope as a dict (payload deserialised)."""
        return {"id": self.id, "topic": self.topic, "type": self.type, "ts": self.ts, "data": self.json()}


class Control:
    """A control message of a stream: `gap`, `reset`, `live`, `fault`, `shutdown` or `heartbeat`.

    It never carries `data`, so `jq 'select(.data)'` keeps only events.
    """

    __slots__ = ("kind", "fields")

    def __init__(self, kind: str, fields: Mapping[str, Any] | None = None) -> None:
        self.kind = kind
        self.fields = dict(fields or {})

    def __repr__(self) -> str:
        return f"Control({self.kind!r}, {self.fields!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Control):
            return NotImplemented
        return (self.kind, self.fields) == (other.kind, other.fields)

    __hash__ = None  # type: ignore[assignment]

    def as_dict(self) -> dict[str, Any]:
        """The control message as the encoders frame it: `{"control": kind, **fields}`."""
        return {"control": self.kind, **self.fields}
