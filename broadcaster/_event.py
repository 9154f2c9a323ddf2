"""Events, control messages and event ids.

An `Event` carries its data already serialised (JSON bytes, one line). The
encoders (`broadcaster.http.streams.encoders`) frame events and control messages; an
event's frames are built on first use and cached on the event, so every
subscriber of a process shares the same bytes: fan-out is a queue append, never
an encoding.

Event ids are per topic: `<tag>.<epoch>.<seq>` (`_ids`, docs/resume.md), ordered
within a topic's epoch and opaque to clients.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from ._exceptions import InvalidEventData


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


class Event:
    """One published event. Immutable by convention.

    `data` is the JSON serialisation of the event's payload (one line, no CR/LF). The
    slots `sse_frame`, `envelope_frame` and `ndjson_line` are the encoders' cache
    (`broadcaster.http.streams.encoders`): each wire frame is built on first use and shared by
    every subscriber of the process.
    """

    __slots__ = (
        "topic",
        "id",
        "type",
        "ts",
        "data",
        "size",
        "_seq",
        "_epoch",
        "sse_frame",
        "envelope_frame",
        "ndjson_line",
        "id_bytes",
        "envelope_tail",
    )

    def __init__(
        self,
        topic: str,
        id: str,
        type: str,
        data: bytes,
        ts: int = 0,
        *,
        seq: int | None = None,
        epoch: str | None = None,
    ) -> None:
        self.topic = topic
        #: `<tag>.<epoch>.<seq>` (see `_ids`); opaque to clients.
        self.id = id
        self.type = type
        self.data = data
        #: Publish time, Unix milliseconds (the backend's clock).
        self.ts = ts
        #: Bytes this event costs a queue: its data plus a fixed overhead for framing.
        self.size = len(data) + 64
        self._seq = seq
        self._epoch = epoch
        self.sse_frame: bytes | None = None
        self.envelope_frame: bytes | None = None
        self.ndjson_line: bytes | None = None
        #: The id as ASCII bytes, once an encoder needed it.
        self.id_bytes: bytes | None = None
        #: The multi-topic SSE frame after its `id:` line, closed as an HTTP chunk (`SSEEncoder.chunk_parts`).
        self.envelope_tail: bytes | None = None

    def __repr__(self) -> str:
        return f"Event(topic={self.topic!r}, id={self.id!r}, type={self.type!r}, data={self.data[:40]!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.topic, self.id, self.type, self.data) == (other.topic, other.id, other.type, other.data)

    def __hash__(self) -> int:
        return hash((self.topic, self.id))

    @property
    def seq(self) -> int:
        """The event's number within its topic and epoch: 1, 2, 3, ... (ordered within the topic only)."""
        seq = self._seq
        if seq is None:
            seq = self._seq = int(self.id.rpartition(".")[2])
        return seq

    @property
    def epoch(self) -> str:
        """The epoch of the topic's history the event belongs to."""
        epoch = self._epoch
        if epoch is None:
            epoch = self._epoch = self.id.split(".")[1]
        return epoch

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
