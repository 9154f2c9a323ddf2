"""Encoders: the framing of events and control messages, SSE and NDJSON. Pure and synchronous.

An encoder owns every byte of its format: event frames, control frames, keepalives,
the stream's preamble. Event frames are built once per event and cached on it (the
`Event.sse_frame`, `envelope_frame` and `ndjson_line` slots), so framing costs one
encoding per event and process, whatever the number of subscribers; the chunk cache
does the same for the HTTP/1.1 chunk of the direct-write path. Ids, topics and types
are validated before they reach an event (no CR/LF can be injected into SSE fields)
and `data` is one line of JSON, so every `data:` field is one line.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import orjson

from ..._event import Control, Event
from ..._ids import StreamCursor
from .._uvicorn import http_chunk

#: Characters that JSON leaves raw but `str.splitlines()` (and httpx's `aiter_lines()`) breaks lines at:
#: NEL, LINE SEPARATOR, PARAGRAPH SEPARATOR. In valid JSON they only occur inside strings.
_UNICODE_LINE_BREAKS = ((b"\xc2\x85", b"\\u0085"), (b"\xe2\x80\xa8", b"\\u2028"), (b"\xe2\x80\xa9", b"\\u2029"))


def _line_safe(data: bytes) -> bytes:
    """`data` with Unicode line breaks escaped, so a frame stays one line for every line-based reader."""
    if data.isascii():  # the common case, checked a word at a time: nothing to escape
        return data
    for raw, escaped in _UNICODE_LINE_BREAKS:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def _render_ndjson(event: Event) -> bytes:
    # topic, type and id only hold [A-Za-z0-9._:-], so they need no JSON escaping.
    head = f'{{"id":"{event.id}","topic":"{event.topic}","type":"{event.type}","ts":{event.ts},"data":'
    return head.encode() + _line_safe(event.data) + b"}\n"


def _ndjson_line(event: Event) -> bytes:
    """The event's NDJSON line, cached on it: subscribers (and the SSE envelope) share it."""
    line = event.ndjson_line
    if line is None:
        line = event.ndjson_line = _render_ndjson(event)
    return line


def _control_json(control: Control) -> bytes:
    # Fields may quote text from a client or a backend: escape Unicode line breaks, as in event frames.
    return _line_safe(orjson.dumps(control.as_dict()))


class Encoder(Protocol):
    media_type: str

    def encode(self, items: Sequence[Event | Control]) -> bytes: ...

    def chunk(self, event: Event) -> bytes: ...

    def control(self, control: Control) -> bytes: ...

    def keepalive(self) -> bytes: ...

    def preamble(self, retry_ms: int) -> bytes: ...


class _Framing:
    """What both formats share: the one-entry chunk cache of the direct-write path.

    The hub offers one event to all its subscribers in a row, so one cached chunk per
    encoder frames each event as an HTTP/1.1 chunk once for all of them. `frame` is bound
    once per encoder (no per-call branch on the variant).
    """

    frame: Callable[[Event], bytes]

    def __init__(self) -> None:
        self._chunk_event: Event | None = None
        self._chunk = b""

    def chunk(self, event: Event) -> bytes:
        if event is not self._chunk_event:
            frame = self.frame(event)
            self._chunk = http_chunk(frame)
            self._chunk_event = event
        return self._chunk


class SSEEncoder(_Framing):
    """Server-Sent Events. `envelope=True` (multi-topic streams) puts the whole event object in `data:`."""

    media_type = "text/event-stream"

    def __init__(self, *, envelope: bool = False, cursor: StreamCursor | None = None) -> None:
        super().__init__()
        self.envelope = envelope
        #: A multi-topic stream's own cursor: its `id:` lines (one encoder per such stream).
        self.cursor = cursor
        self.frame = self._envelope_frame if envelope else self._frame

    def encode(self, items: Sequence[Event | Control]) -> bytes:
        """The frames of `items`, concatenated in order (cached event frames are taken as they are)."""
        control = self.control
        frame = self.frame
        if self.envelope:
            return b"".join([frame(i) if isinstance(i, Event) else control(i) for i in items])
        return b"".join([(i.sse_frame or frame(i)) if isinstance(i, Event) else control(i) for i in items])

    def _frame(self, event: Event) -> bytes:
        """`id:`, `event:` unless `message`, `data:` (the event's data), blank line. Cached on the event."""
        frame = event.sse_frame
        if frame is None:
            event_line = b"" if event.type == "message" else b"event: " + event.type.encode() + b"\n"
            frame = b"id: " + event.id.encode() + b"\n" + event_line + b"data: " + _line_safe(event.data) + b"\n\n"
            event.sse_frame = frame
        return frame

    def _envelope_frame(self, event: Event) -> bytes:
        """The frame of a multi-topic stream: `data:` holds the NDJSON object, so the topic is known.

        Its `id:` is the stream's cursor after this event (the ids of every topic's last event,
        `_ids.StreamCursor`), so the one `Last-Event-ID` a browser keeps resumes every topic;
        the rest of the frame is built once per event and cached on it.
        """
        body = event.envelope_frame or _envelope_body(event)
        id_bytes = event.id_bytes
        if id_bytes is None:
            id_bytes = event.id_bytes = event.id.encode()
        cursor = self.cursor
        return b"".join((b"id: ", id_bytes if cursor is None else cursor.advance(event.topic, id_bytes), b"\n", body))

    def chunk_parts(self, event: Event) -> tuple[bytes, bytes]:
        """A multi-topic SSE event as one HTTP chunk in two parts: this stream's head, the shared tail.

        The head is the chunk size and the `id:` line (the stream's cursor); the tail, the rest
        of the frame and the chunk's CRLF, is built once per event and shared by every stream,
        so the socket write copies one hot buffer for all of them and a small one per stream.
        """
        tail = event.envelope_tail
        if tail is None:
            tail = event.envelope_tail = (event.envelope_frame or _envelope_body(event)) + b"\r\n"
        id_bytes = event.id_bytes
        if id_bytes is None:
            id_bytes = event.id_bytes = event.id.encode()
        assert self.cursor is not None
        position = self.cursor.advance(event.topic, id_bytes)
        size = 5 + len(position) + len(tail) - 2
        return b"%x\r\nid: %b\n" % (size, position), tail

    def control(self, control: Control) -> bytes:
        # No `id:` line: a control message must not move the client's Last-Event-ID.
        # A reconnect hint also goes in `retry:`, the field EventSource itself obeys.
        retry = control.fields.get("retry_ms")
        head = b"retry: %d\n" % retry if isinstance(retry, int) else b""
        return head + b"event: " + control.kind.encode() + b"\ndata: " + _control_json(control) + b"\n\n"

    def keepalive(self) -> bytes:
        """A comment line and no blank line: it dispatches nothing, even after the preamble."""
        return b": keepalive\n"

    def preamble(self, retry_ms: int) -> bytes:
        """`retry:` with no blank line after it.

        EventSource applies `retry:` as soon as it parses the line, so the hint is in effect
        at once; without a blank line of its own it joins the block of the stream's first
        event or control message, so no client (httpx-sse, sseclient-py, the npm
        `eventsource`, browsers) sees an empty event. Keepalives are comment lines without a
        blank line for the same reason: a blank line would dispatch the pending `retry:`
        as an event with empty data in clients that yield every block.
        """
        return b"retry: %d\n" % retry_ms


def _envelope_body(event: Event) -> bytes:
    """A multi-topic SSE frame after its `id:` line (`event:` unless `message`, `data:` the envelope). Cached."""
    event_line = b"" if event.type == "message" else b"event: " + event.type.encode() + b"\n"
    body = event.envelope_frame = event_line + b"data: " + _ndjson_line(event)[:-1] + b"\n\n"
    return body


class NDJSONEncoder(_Framing):
    """One JSON object per line; control messages have a `control` key and no `data`."""

    media_type = "application/x-ndjson"

    def __init__(self) -> None:
        super().__init__()
        #: `{"id","topic","type","ts","data"}` and a newline. Cached on the event.
        self.frame = _ndjson_line

    def encode(self, items: Sequence[Event | Control]) -> bytes:
        """The lines of `items`, concatenated in order (cached event lines are taken as they are)."""
        control = self.control
        return b"".join([(i.ndjson_line or _ndjson_line(i)) if isinstance(i, Event) else control(i) for i in items])

    def control(self, control: Control) -> bytes:
        return _control_json(control) + b"\n"

    def keepalive(self) -> bytes:
        return b'{"control":"heartbeat"}\n'

    def preamble(self, retry_ms: int) -> bytes:
        return b""

    def download(self, events: Iterable[Event]) -> bytes:
        """The lines of `events` without caching them: a history download reads each event once,
        and caching would grow a memory backend's history by the size of the download."""
        return b"".join([e.ndjson_line or _render_ndjson(e) for e in events])
