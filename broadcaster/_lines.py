"""The line rules: how a stream of bytes becomes events, one per line, and what one event's data may be.

Written once, for everyone who turns lines into events: the server's streamed
ingest (`http/publish/ingest.py`), the producers that read lines (`producers.Stdin`,
`producers.LogTail`) and the targets that check data before sending it
(`producers.RedisTarget`, which has no server in front of it). Splitting:

- a line ends at `\\n`; the last line of a stream needs none;
- a UTF-8 byte order mark at the start of a stream is dropped;
- a line longer than the cap is never held: its bytes are counted and skipped up
  to its newline, and it comes out as a `TooLong` marker in its place.

Data (`json_data` for NDJSON, `text_data` for text; both return None for a
blank line, which is skipped but still counts in line numbers):

- NDJSON: the line holds one JSON value, whitespace around it (a CR of CRLF too)
  is dropped, and a value spread over lines by a CR inside is put on one line;
- text: the line without its trailing CR must be UTF-8, and becomes a JSON string
  (invalid UTF-8 is rejected, never replaced);
- the data is at most `max_event_bytes`.

A line that breaks a rule raises `InvalidLine`, whose `code` is `invalid_json`,
`invalid_utf8` or `too_long` and whose message says what is wrong; the caller
adds its line number. The functions take lines as bytes and never decode more
than a text line, so the server's ingest stays one C call per rule and line.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import orjson

from ._event import check_one_line
from ._exceptions import InvalidLine

BOM = b"\xef\xbb\xbf"
# orjson says "line 1 column 7 (char 6)" of the text it parsed: only the column means anything to the sender.
_POSITION = re.compile(r": line \d+ column (\d+) \(char \d+\)$")


class TooLong:
    """A line over the limit, in place of its bytes; `size` is its length without the newline."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"TooLong({self.size})"


Line = bytes | TooLong
#: `json_data` or `text_data`: a line (and the size limit) to event data, None for a blank line.
LineRule = Callable[[Line, int], bytes | None]


class LineSplitter:
    """Cut a byte stream into lines (without their `\\n`) as chunks are fed in.

    `feed()` returns the lines that each chunk completed, in order; `end()` returns
    the last line if the stream did not end with a newline, and makes the next
    `feed()` the start of a new stream. At most `max_line_bytes` of a partial line
    are held in between; `for_events` sizes the cap for event data.
    """

    __slots__ = ("max_line_bytes", "_partial", "_skipped", "_start")

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = bytearray()
        self._skipped = 0  # > 0: bytes discarded so far of an over-long line, still waiting for its newline
        self._start = True  # no line came out of this stream yet: the next one may start with a BOM

    @classmethod
    def for_events(cls, max_event_bytes: int) -> LineSplitter:
        """A splitter for lines of event data up to `max_event_bytes` (plus the CR of a CRLF line)."""
        return cls(max_event_bytes + 1)

    @property
    def buffered(self) -> int:
        """Bytes of a partial line held right now (never more than `max_line_bytes`)."""
        return len(self._partial)

    def feed(self, chunk: bytes) -> Sequence[Line]:
        """The lines that `chunk` completes, with over-long ones replaced by `TooLong`."""
        lines = self._feed(chunk)
        if self._start and lines:
            lines = self._drop_bom(lines)
        return lines

    def end(self) -> Sequence[Line]:
        """At the end of the stream: the last line if it had no newline (a file's last line often has none)."""
        lines: Sequence[Line] = []
        if self._skipped:
            lines = [TooLong(self._skipped)]
            self._skipped = 0
        elif self._partial:
            lines = [bytes(self._partial)]
            self._partial.clear()
        if self._start and lines:
            lines = self._drop_bom(lines)
        self._start = True
        return lines

    def _drop_bom(self, lines: Sequence[Line]) -> Sequence[Line]:
        self._start = False
        first = lines[0]
        if isinstance(first, bytes) and first.startswith(BOM):
            return [first[len(BOM) :], *lines[1:]]
        return lines

    def _feed(self, chunk: bytes) -> Sequence[Line]:
        if not chunk:
            return []
        limit = self.max_line_bytes
        if self._skipped:
            newline = chunk.find(b"\n")
            if newline < 0:
                self._skipped += len(chunk)
                return []
            lines: list[Line] = [TooLong(self._skipped + newline)]
            self._skipped = 0
            lines.extend(self._feed(chunk[newline + 1 :]))
            return lines
        partial = self._partial
        if partial and b"\n" not in chunk:
            if len(partial) + len(chunk) > limit:
                self._skipped = len(partial) + len(chunk)
                partial.clear()
            else:
                partial += chunk
            return []
        raw = chunk.split(b"\n")
        if partial:
            raw[0] = bytes(partial) + raw[0]
            partial.clear()
        tail = raw.pop()
        if len(tail) > limit:
            self._skipped = len(tail)
        elif tail:
            partial += tail
        if raw and max(map(len, raw)) > limit:
            return [p if len(p) <= limit else TooLong(len(p)) for p in raw]
        return raw


def json_data(line: Line, max_bytes: int, what: str = "line") -> bytes | None:
    """The event data of an NDJSON line (or of one JSON body): its JSON value on one line; None if blank.

    Raises `InvalidLine` (`invalid_json`, `invalid_utf8`, `too_long`); `what` names the input in its message.
    """
    if isinstance(line, TooLong):
        raise too_long(what, line.size, max_bytes)
    data = line.strip()
    if not data:
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise _not_json(what, data, exc) from None
    # A CR or LF inside a value is JSON whitespace: put the value on one line. (Bytes as ints: `13 in data`
    # is a memchr; `b"\r" in data` first tries the argument as an int, failing, and costs ten times more.)
    if 13 in data or 10 in data:
        data = orjson.dumps(value)
    if len(data) > max_bytes:
        raise too_long(what, len(data), max_bytes)
    return data


def text_data(line: Line, max_bytes: int, what: str = "line") -> bytes | None:
    """The event data of a text line: the line (without a trailing CR) as a JSON string; None if blank.

    Raises `InvalidLine` (`invalid_utf8`, `too_long`); `what` names the input in its message.
    """
    if isinstance(line, TooLong):
        raise too_long(what, line.size, max_bytes)
    if line.endswith(b"\r"):
        line = line[:-1]
    if not line.strip():
        return None
    if len(line) > max_bytes:
        raise too_long(what, len(line), max_bytes)
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise _not_utf8(what, line, exc) from None
    data = orjson.dumps(text)
    if len(data) > max_bytes:
        raise too_long(what, len(data), max_bytes, " as a JSON string")
    return data


def line_rule(*, text: bool) -> LineRule:
    """`text_data` for text lines, else `json_data`."""
    return text_data if text else json_data


def check_data(data: bytes, max_bytes: int) -> None:
    """Raise `InvalidEventData` unless `data` is what every wire format carries: not empty, one line, not too big.

    For data that is serialised already (what a `Publish` callable gets); its JSON is
    checked by `json_data`, where no server stands in between to check it.
    """
    if len(data) > max_bytes:
        raise too_long("event data", len(data), max_bytes)
    check_one_line(data)


def too_long(what: str, size: int, max_bytes: int, measured: str = "") -> InvalidLine:
    return InvalidLine(
        "too_long", f"{what} is {size} bytes{measured}, the limit is {max_bytes} bytes (max_event_bytes)"
    )


def _not_json(what: str, data: bytes, exc: orjson.JSONDecodeError) -> InvalidLine:
    """Name what is wrong: not UTF-8 (with the offending byte), else the JSON error at its column."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as bad:
        return _not_utf8(what, data, bad)
    return InvalidLine("invalid_json", f"{what} is not valid JSON: " + _POSITION.sub(r" at column \1", str(exc)))


def _not_utf8(what: str, data: bytes, exc: UnicodeDecodeError) -> InvalidLine:
    where = f"byte 0x{data[exc.start]:02x} at column {exc.start + 1}"
    return InvalidLine("invalid_utf8", f"{what} is not UTF-8: {where} ({exc.reason})")
