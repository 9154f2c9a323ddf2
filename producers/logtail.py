"""LogTail: follow a file like `tail -F`, one event per line.

Polling, not inotify: every `poll_s` the file is read from where the last read
stopped, in a worker thread (`asyncio.to_thread`), so no file I/O runs on the
event loop. Between reads it watches for

- rotation by rename: the path names another file (another inode) than the
  one open. The old file is read to its end first (its last lines are not
  lost), then the new one is followed from its start. While the path names
  nothing (renamed away, the new file not created yet) the old file stays open
  and followed;
- truncation (`copytruncate`, `> app.log`): the file is shorter than the
  position read. It is read again from its start.

Limits, shared with `tail -F`: lines written to a rotated file after the new
one appeared are not read, and a truncation that is followed by more writes
than the old size within one poll interval cannot be told from appends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import threading
from pathlib import Path
from typing import BinaryIO

from broadcaster import DEFAULT_MAX_EVENT_BYTES, Line, LineSplitter, Publish

from ._lines import LineCounts, LinePublisher

logger = logging.getLogger(__name__)

DEFAULT_POLL_S = 0.1
_READ_CHUNK = 256 * 1024
_READ_BUDGET = 4 * 1024 * 1024  # per poll: a big backlog is read in steps, each published before the next


class _Follower:
    """The blocking side of LogTail; every method runs in a worker thread, under one lock."""

    def __init__(self, path: Path, *, from_start: bool, max_event_bytes: int) -> None:
        self.path = path
        self.from_start = from_start
        self.buffer = LineSplitter.for_events(max_event_bytes)
        self.rotations = 0
        self.truncations = 0
        self._file: BinaryIO | None = None
        self._ident: tuple[int, int] | None = None
        self._pos = 0
        self._first = True
        self._closed = False
        self._lock = threading.Lock()

    def poll(self) -> tuple[list[Line], bool]:
        """Complete lines written since the last poll, and whether more data is waiting already."""
        with self._lock:
            if self._closed:
                return [], False
            lines: list[Line] = []
            if self._file is None:
                self._open(at_end=self._first and not self.from_start)
                self._first = False
                if self._file is None:
                    return lines, False
            file = self._file
            if os.fstat(file.fileno()).st_size < self._pos:
                self.truncations += 1
                logger.info("%s was truncated; reading it from its start", self.path)
                lines.extend(self.buffer.end())
                file.seek(0)
                self._pos = 0
            more = self._read(lines, _READ_BUDGET)
            if not more and self._replaced():
                self._read(lines, None)  # the rest of the old file first
                lines.extend(self.buffer.end())
                file.close()
                self._file = None
                self.rotations += 1
                logger.info("%s was rotated; following the new file", self.path)
                self._open(at_end=False)
                more = self._file is not None and self._read(lines, _READ_BUDGET)
            return lines, more

    def _open(self, *, at_end: bool) -> None:
        try:
            file = open(self.path, "rb", buffering=0)  # kept open across polls; closed by close()
        except FileNotFoundError:
            return
        stat = os.fstat(file.fileno())
        self._file = file
        self._ident = (stat.st_dev, stat.st_ino)
        self._pos = file.seek(0, os.SEEK_END) if at_end else 0

    def _replaced(self) -> bool:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            return False  # renamed away and not created again yet: keep reading the old file
        return (stat.st_dev, stat.st_ino) != self._ident

    def _read(self, lines: list[Line], budget: int | None) -> bool:
        """Read into `lines` up to `budget` bytes (None: to the end); True if the budget ran out first."""
        assert self._file is not None
        read = 0
        while budget is None or read < budget:
            chunk = self._file.read(_READ_CHUNK)
            if not chunk:
                return False
            read += len(chunk)
            self._pos += len(chunk)
            lines.extend(self.buffer.feed(chunk))
        return True

    @property
    def following(self) -> bool:
        return self._file is not None

    def close(self) -> None:
        with self._lock:
            self._closed = True
            if self._file is not None:
                self._file.close()
                self._file = None


class LogTail(LineCounts):
    """Follow `path` and publish each new line on `topic` (as a JSON string, or as JSON with `ndjson=True`).

    Runs until cancelled. `from_start=True` publishes the lines already in the file too;
    otherwise following starts at its end (a file created later is read from its start).
    The line rules are the server's (README, "Streamed ingest"): a line that is not
    UTF-8, not JSON (with `ndjson`) or over `max_event_bytes` is rejected, logged with
    its number (counted from where following started) and counted in `skipped`.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        topic: str,
        *,
        poll_s: float = DEFAULT_POLL_S,
        from_start: bool = False,
        ndjson: bool = False,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        if not 0 < poll_s < math.inf:
            raise ValueError(f"poll_s must be a finite number greater than 0, got {poll_s}")
        self.path = Path(path)
        self.topic = topic
        self.poll_s = poll_s
        self.ndjson = ndjson
        self._follower = _Follower(self.path, from_start=from_start, max_event_bytes=max_event_bytes)
        self._lines = LinePublisher(topic, text=not ndjson, max_event_bytes=max_event_bytes, source=str(self.path))

    @property
    def following(self) -> bool:
        """Whether a file is open and followed (False while the path names no file yet)."""
        return self._follower.following

    @property
    def pending_bytes(self) -> int:
        """Bytes of an unfinished last line, read and held until its newline."""
        return self._follower.buffer.buffered

    @property
    def rotations(self) -> int:
        """Rotations seen (the path named a new file)."""
        return self._follower.rotations

    @property
    def truncations(self) -> int:
        """Truncations seen (the file got shorter than what was read)."""
        return self._follower.truncations

    async def run(self, publish: Publish) -> None:
        follower = self._follower
        try:
            while True:
                lines, more = await asyncio.to_thread(follower.poll)
                await self._lines.publish(publish, lines)
                if not more:
                    await asyncio.sleep(self.poll_s)
        finally:
            follower.close()  # waits for a poll still running in its thread (a bounded read)
