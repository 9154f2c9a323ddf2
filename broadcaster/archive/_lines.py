"""Reading segment files line by line, without loading them: blocking code, run in a thread.

A segment is append-only NDJSON, so everything up to its last newline is whole
lines, whatever the writer is doing right now; a crash can only leave an
unfinished line after it (`repair` cuts it). Every function here reads in
bounded blocks, so memory stays flat whatever the file's size.
"""

from __future__ import annotations

import gzip
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import orjson

BLOCK_BYTES = 256 * 1024
#: A line longer than this is not one of ours (events are at most max_event_bytes plus the envelope).
MAX_LINE_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class SegmentMeta:
    """The first and last event of a segment (ids opaque, ts in Unix ms); None if it holds no event."""

    first_id: str | None = None
    last_id: str | None = None
    first_ts: int | None = None
    last_ts: int | None = None

    def as_record(self) -> dict[str, Any]:
        return {"first_id": self.first_id, "last_id": self.last_id, "first_ts": self.first_ts, "last_ts": self.last_ts}


#: The head of an event line as the NDJSON encoder writes it; the data follows, then `}`.
_EVENT_HEAD = re.compile(
    rb'\{"id":"([^"]{1,64})","topic":"[^"]{1,200}","type":"([^"]{1,64})","ts":(-?[0-9]{1,16}),"data":'
)


def event_head(line: bytes) -> tuple[str, str, int, int] | None:
    """`(id, type, ts, where the data starts)` of an event line, without parsing its data; None otherwise."""
    match = _EVENT_HEAD.match(line)
    if match is None:
        return None
    return match[1].decode(), match[2].decode(), int(match[3]), match.end()


def parse_line(line: bytes) -> dict[str, Any] | None:
    """A segment line as a dict, or None if it is not a JSON object (a damaged line)."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


def is_event(record: dict[str, Any]) -> bool:
    return "id" in record and "control" not in record


def open_segment(path: Path) -> IO[bytes]:
    """The segment's lines as a binary file: decompressed on the fly for `.gz`."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


def complete_length(path: Path, size: int | None = None) -> int:
    """The length of the file up to and including its last newline (its whole lines)."""
    with open(path, "rb") as f:
        pos = os.fstat(f.fileno()).st_size if size is None else size
        while pos > 0:
            n = min(BLOCK_BYTES, pos)
            f.seek(pos - n)
            block = f.read(n)
            cut = block.rfind(b"\n")
            if cut >= 0:
                return pos - n + cut + 1
            pos -= n
    return 0


def lines_backward(f: IO[bytes], end: int) -> Iterator[bytes]:
    """The lines of `f` before offset `end` (a line boundary), newest first, without their newline."""
    pos = end
    tail = b""
    newest = True
    while pos > 0:
        n = min(BLOCK_BYTES, pos)
        pos -= n
        f.seek(pos)
        data = f.read(n) + tail
        if newest:
            newest = False
            data = data.removesuffix(b"\n")  # `end` is a line boundary: no empty line after it
        parts = data.split(b"\n")
        tail = parts[0]  # may continue in the block before
        if len(tail) > MAX_LINE_BYTES:
            raise ValueError(f"a line of more than {MAX_LINE_BYTES} bytes: not a segment")
        yield from reversed(parts[1:])
    yield tail


def scan(path: Path, end: int | None = None) -> SegmentMeta:
    """The first and last event of a segment (up to `end` for a plain file being written)."""
    first: dict[str, Any] | None = None
    last: dict[str, Any] | None = None
    if path.name.endswith(".gz"):
        # A gzip file cannot be read backwards: stream it (closed segments are indexed, so rare).
        with open_segment(path) as f:
            for line in f:
                record = parse_line(line)
                if record is not None and is_event(record):
                    first = first or record
                    last = record
    else:
        limit = complete_length(path) if end is None else end
        with open(path, "rb") as f:
            read = 0
            for line in f:
                read += len(line)
                if read > limit:
                    break
                record = parse_line(line)
                if record is not None and is_event(record):
                    first = record
                    break
            if first is not None:
                for line in lines_backward(f, limit):
                    record = parse_line(line) if line else None
                    if record is not None and is_event(record):
                        last = record
                        break
    if first is None or last is None:
        return SegmentMeta()
    return SegmentMeta(str(first["id"]), str(last["id"]), int(first["ts"]), int(last["ts"]))


def event_ids(path: Path, end: int | None = None) -> Iterator[str]:
    """The ids of a segment's events, oldest first (up to `end` for a plain file being written)."""
    with open_segment(path) as f:
        for block in read_blocks(f, None if path.name.endswith(".gz") else end):
            for line in block.splitlines():
                head = event_head(line)
                if head is not None:
                    yield head[0]
                    continue
                record = parse_line(line)
                if record is not None and is_event(record):
                    yield str(record["id"])


def repair(path: Path) -> int:
    """Cut what a crash left after the last whole line (and damaged lines before it); return the bytes cut.

    A kill mid-write leaves at most an unfinished last line; a power loss without
    fsync may also leave zeros or garbage, which does not parse: those lines go too.
    """
    size = os.stat(path).st_size
    end = complete_length(path, size)
    with open(path, "rb") as f:
        for line in lines_backward(f, end):
            if line and parse_line(line) is not None:
                break
            end = max(0, end - len(line) - 1)
    if end != size:
        with open(path, "r+b") as f:
            f.truncate(end)
            os.fsync(f.fileno())
    return size - end


def read_blocks(f: IO[bytes], limit: int | None = None) -> Iterator[bytes]:
    """Blocks of whole lines from `f` (up to `limit` bytes of it), each ending with a newline."""
    carry = b""
    remaining = limit
    while remaining is None or remaining > 0:
        n = BLOCK_BYTES if remaining is None else min(BLOCK_BYTES, remaining)
        block = f.read(n)
        if not block:
            break
        if remaining is not None:
            remaining -= len(block)
        block = carry + block
        cut = block.rfind(b"\n") + 1
        carry = block[cut:]
        if len(carry) > MAX_LINE_BYTES:
            raise ValueError(f"a line of more than {MAX_LINE_BYTES} bytes: not a segment")
        if cut:
            yield block[:cut]
    # An unfinished last line (a crash the archiver has not repaired yet) is never read.
