"""Incremental decoders of the two stream formats: bytes in, decoded wire messages out.

Both are fed the body's chunks as they arrive and return the messages that the
chunk completed, as `Frame`s (the decoded dict, an event envelope or a control
message, and the SSE `id:` of its frame), or `KEEPALIVE` for a keepalive. A
line is bounded by `max_line_bytes`: a longer one is a `ProtocolError`, never a
buffer that grows without end. An incomplete last line (the connection broke in
the middle of it) is never decoded.

SSE is parsed after the WHATWG rules this server's frames need: `data`,
`event`, `id` and `retry` fields, comment lines, a frame dispatched at a blank
line, a frame without data (the `retry:` preamble) not dispatched. A frame's id
is the `id:` line of that frame only (the server sends one with every event and
none with a control message, so nothing carries over). Lines end
at LF or CRLF; a lone CR is not a line end here (the server never sends one).
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple, Protocol

import orjson

from ._errors import ProtocolError

#: The longest line a decoder holds: far above the server's `max_event_bytes` (64 KiB by default).
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024


class _Keepalive:
    def __repr__(self) -> str:
        return "KEEPALIVE"


#: What a decoder returns for a keepalive (an NDJSON heartbeat line or an SSE comment).
KEEPALIVE: Final = _Keepalive()


class Frame(NamedTuple):
    """One wire message: the decoded JSON object and its SSE `id:` (None in NDJSON and for control messages).

    On a multi-topic SSE stream the `id:` is the stream's cursor after the event, not the event's id.
    """

    message: dict[str, Any]
    id: str | None = None


Decoded = Frame | _Keepalive


class Decoder(Protocol):
    """Turns body chunks into decoded messages. `retry_ms` is the last SSE `retry:` hint, if any."""

    retry_ms: int | None

    def feed(self, chunk: bytes) -> list[Decoded]: ...


class _Lines:
    """Splits chunks into complete lines (without their LF), holding at most `limit` bytes of a partial one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> list[bytes]:
        if b"\n" not in chunk:
            self._partial += chunk
            self._check(len(self._partial))
            return []
        lines = chunk.split(b"\n")
        if self._partial:
            self._partial += lines[0]
            lines[0] = bytes(self._partial)
        self._partial = bytearray(lines.pop())
        for line in lines:
            self._check(len(line))
        self._check(len(self._partial))
        return lines

    def _check(self, size: int) -> None:
        if size > self.limit:
            raise ProtocolError(f"the server sent a line over {self.limit} bytes; refusing to buffer it")


def _json_object(raw: bytes | str, what: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ProtocolError(f"the server sent {what} that is not JSON ({exc}): {raw[:120]!r}") from None
    if not isinstance(value, dict):
        raise ProtocolError(f"the server sent {what} that is not a JSON object: {raw[:120]!r}")
    return value


class NDJSONDecoder:
    """One JSON object per line; `{"control":"heartbeat"}` is a keepalive."""

    retry_ms: int | None = None

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._lines = _Lines(max_line_bytes)

    def feed(self, chunk: bytes) -> list[Decoded]:
        out: list[Decoded] = []
        for line in self._lines.feed(chunk):
            line = line.removesuffix(b"\r")
            if not line:
                continue
            message = _json_object(line, "an NDJSON line")
            out.append(KEEPALIVE if message.get("control") == "heartbeat" else Frame(message))
        return out


class SSEDecoder:
    """Server-Sent Events frames whose `data` is a JSON object (the envelope of a multi-topic stream)."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self._lines = _Lines(max_line_bytes)
        self._data: list[bytes] = []
        self._size = 0
        self._id: str | None = None
        self.retry_ms: int | None = None

    def feed(self, chunk: bytes) -> list[Decoded]:
        out: list[Decoded] = []
        for line in self._lines.feed(chunk):
            line = line.removesuffix(b"\r")
            if not line:
                if self._data:
                    data, self._data, self._size = b"\n".join(self._data), [], 0
                    out.append(Frame(_json_object(data, "an SSE data field"), self._id))
                self._id = None
                continue
            if line.startswith(b":"):
                out.append(KEEPALIVE)
                continue
            name, _, value = line.partition(b":")
            value = value.removeprefix(b" ")
            if name == b"data":
                self._size += len(value) + 1
                if self._size > self._lines.limit:
                    raise ProtocolError(f"the server sent an SSE frame over {self._lines.limit} bytes")
                self._data.append(value)
            elif name == b"id" and b"\0" not in value:
                self._id = value.decode("utf-8", "replace")
            elif name == b"retry" and value.isdigit():
                self.retry_ms = int(value)
            # `event` repeats what the envelope holds; other fields are ignored, as the spec says.
        return out


def decoder_for(fmt: str, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> Decoder:
    """The decoder of a stream format (`ndjson` or `sse`)."""
    return SSEDecoder(max_line_bytes) if fmt == "sse" else NDJSONDecoder(max_line_bytes)
