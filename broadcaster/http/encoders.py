"""Encoders: events and control messages to wire bytes. Pure and synchronous.

Event frames are built once per event and cached on it (`Event.sse`,
`Event.ndjson`), so an encoder adds no per-subscriber work for events; it only
frames control messages and keepalives. Ids, topics and types are validated
before they reach an event (no CR/LF can be injected into SSE fields) and
`data` is one line of JSON, so every `data:` field is one line.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from .._event import Control, Event
from ._uvicorn import http_chunk


class Encoder(Protocol):
    media_type: str

    def encode(self, items: Sequence[Event | Control]) -> bytes: ...

    def chunk(self, event: Event) -> bytes: ...

    def control(self, control: Control) -> bytes: ...

    def keepalive(self) -> bytes: ...

    def preamble(self, retry_ms: int) -> bytes: ...


class _ChunkCache:
    """The frame of one event as an HTTP/1.1 chunk, for direct writes to a socket.

    The hub offers one event to all its subscribers in a row, so a one-entry
    cache per encoder frames each event once for all of them.
    """

    def __init__(self) -> None:
        self._event: Event | None = None
        self._chunk = b""

    def chunk(self, event: Event) -> bytes:
        if event is not self._event:
            frame = self.encode((event,))  # type: ignore[attr-defined]
            self._chunk = http_chunk(frame)
            self._event = event
        return self._chunk


class SSEEncoder(_ChunkCache):
    """Server-Sent Events. `envelope=True` (multi-topic streams) puts the whole event object in `data:`."""

    media_type = "text/event-stream"

    def __init__(self, *, envelope: bool = False) -> None:
        super().__init__()
        self.envelope = envelope

    def encode(self, items: Sequence[Event | Control]) -> bytes:
        if self.envelope:
            return b"".join([i.sse_envelope if type(i) is Event else self.control(i) for i in items])  # type: ignore[arg-type]
        return b"".join([i.sse if type(i) is Event else self.control(i) for i in items])  # type: ignore[arg-type]

    def control(self, control: Control) -> bytes:
        # No `id:` line: a control message must not move the client's Last-Event-ID.
        # A reconnect hint also goes in `retry:`, the field EventSource itself obeys.
        retry = control.fields.get("retry_ms")
        head = b"retry: %d\n" % retry if isinstance(retry, int) else b""
        return head + b"event: " + control.kind.encode() + b"\ndata: " + control.json() + b"\n\n"

    def keepalive(self) -> bytes:
        return b": keepalive\n\n"

    def preamble(self, retry_ms: int) -> bytes:
        return b"retry: %d\n\n" % retry_ms


class NDJSONEncoder(_ChunkCache):
    """One JSON object per line; control messages have a `control` key and no `data`."""

    media_type = "application/x-ndjson"

    def encode(self, items: Sequence[Event | Control]) -> bytes:
        return b"".join([i.ndjson if type(i) is Event else self.control(i) for i in items])  # type: ignore[arg-type]

    def control(self, control: Control) -> bytes:
        return control.json() + b"\n"

    def keepalive(self) -> bytes:
        return b'{"control":"heartbeat"}\n'

    def preamble(self, retry_ms: int) -> bytes:
        return b""
