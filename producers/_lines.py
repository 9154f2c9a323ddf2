"""Input lines to event data, for the producers that read text (logtail, stdin)."""

from __future__ import annotations

import orjson

from ._exceptions import InvalidData

DEFAULT_MAX_LINE_BYTES = 1024 * 1024


class LineBuffer:
    """Cut chunks of bytes into lines (without `\\n`); a line over `max_line_bytes` is dropped and counted."""

    def __init__(self, max_line_bytes: int = DEFAULT_MAX_LINE_BYTES) -> None:
        self.max_line_bytes = max_line_bytes
        self.too_long = 0
        self._partial = bytearray()
        self._skipping = False

    @property
    def pending(self) -> int:
        """Bytes of the unfinished line held."""
        return len(self._partial)

    def feed(self, chunk: bytes) -> list[bytes]:
        """The lines `chunk` completes."""
        parts = chunk.split(b"\n")
        tail = parts.pop()
        limit = self.max_line_bytes
        lines: list[bytes] = []
        for part in parts:
            if self._skipping:  # the newline that ends an over-long line
                self._skipping = False
                self.too_long += 1
                continue
            if self._partial:
                self._partial += part
                part = bytes(self._partial)
                self._partial.clear()
            if len(part) > limit:
                self.too_long += 1
            else:
                lines.append(part)
        if not self._skipping:
            self._partial += tail
            if len(self._partial) > limit:
                self._partial.clear()
                self._skipping = True
        return lines

    def end(self) -> list[bytes]:
        """The last line, if the input did not end with a newline."""
        if self._skipping:
            self._skipping = False
            self.too_long += 1
            return []
        line = bytes(self._partial)
        self._partial.clear()
        return [line] if line else []


def encode_line(line: bytes, *, text: bool) -> bytes | None:
    """The event data of one input line; None for a blank line. Raises `InvalidData` for a line that is not JSON.

    `text`: the line becomes a JSON string (a trailing CR removed, invalid UTF-8 replaced
    by U+FFFD). Otherwise the line must hold one JSON value, which is sent on one line.
    """
    if text:
        if line.endswith(b"\r"):
            line = line[:-1]
        if not line.strip():
            return None
        return orjson.dumps(line.decode("utf-8", errors="replace"))
    data = line.strip()
    if not data:
        return None
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise InvalidData(f"line is not JSON: {exc}") from None
    return orjson.dumps(value) if b"\r" in data else data
