"""Splitting a streamed body into lines as its bytes arrive, holding at most one line.

The splitter never decodes: it cuts bytes at `\\n`. A line that grows past the
limit is not kept: its bytes are counted and thrown away until its newline,
and it comes out as a `TooLong` marker in its place, so one huge line costs no
memory and does not stop the lines after it.
"""

from __future__ import annotations

from collections.abc import Sequence


class TooLong:
    """A line over the limit, in place of its bytes; `size` is its length without the newline."""

    __slots__ = ("size",)

    def __init__(self, size: int) -> None:
        self.size = size

    def __repr__(self) -> str:
        return f"TooLong({self.size})"


Line = bytes | TooLong


class LineSplitter:
    """Cut a byte stream into lines (without their `\\n`) as chunks are fed in.

    `feed()` returns the lines that each chunk completed, in order; `end()` returns
    the last line if the stream did not end with a newline. At most `max_line_bytes`
    of a partial line are held in between.
    """

    __slots__ = ("max_line_bytes", "_partial", "_skipped")

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._partial = bytearray()
        self._skipped = 0  # > 0: bytes discarded so far of an over-long line, still waiting for its newline

    @property
    def buffered(self) -> int:
        """Bytes of a partial line held right now (never more than `max_line_bytes`)."""
        return len(self._partial)

    def feed(self, chunk: bytes) -> Sequence[Line]:
        """The lines that `chunk` completes, with over-long ones replaced by `TooLong`."""
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
            lines.extend(self.feed(chunk[newline + 1 :]))
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

    def end(self) -> Sequence[Line]:
        """At the end of the stream: the last line if it had no newline (a file's last line often has none)."""
        if self._skipped:
            size, self._skipped = self._skipped, 0
            return [TooLong(size)]
        if self._partial:
            line = bytes(self._partial)
            self._partial.clear()
            return [line]
        return []
