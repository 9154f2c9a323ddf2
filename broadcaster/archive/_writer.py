"""ArchiveWriter: appends lines to segment files, rotates, syncs, compresses and expires them.

Blocking code: the archiver calls it from a worker thread, one call at a time
(`compress` may run in a second thread; the few things it shares are locked).
Crash safety comes from the file format, not from care at exit:

- a batch is appended with plain `write()`s to a file opened `O_APPEND`, and lines
  never straddle files, so after any crash a file is whole lines plus at most one
  unfinished line, which `open()` cuts (`_lines.repair`) before anything else runs;
- a segment is compressed into `NAME.gz.tmp`, fsynced, renamed into place, and only
  then is the plain file removed: at every instant one complete copy exists;
- `index.ndjson` (one line per closed segment) is derived data: a record lost in a
  crash is rebuilt from the files by the next `open()`.

One writer per directory: `open()` takes an exclusive `flock` on `DIR/.lock`.
"""

from __future__ import annotations

import calendar
import contextlib
import fcntl
import gzip
import logging
import os
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from .._event import Control, Event
from .._exceptions import ConfigError
from . import _lines
from ._index import append_record, read_index, rewrite_index
from ._layout import LOCK_NAME, STATE_NAME, TMP_SUFFIX, SegmentName, archived_topics, segment_files, topic_dir
from ._options import ArchiveOptions

logger = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


#: Events to their NDJSON lines, newline-terminated, without caching them on the events.
RenderLines = Callable[[Iterable[Event]], bytes]


@dataclass(slots=True)
class _Open:
    """The segment a topic is appending to."""

    name: SegmentName
    path: Path
    fd: int
    size: int
    window: int
    meta: dict[str, Any]
    pending: list[bytes] = field(default_factory=list)
    pending_bytes: int = 0
    unsynced: bool = False


@dataclass(slots=True)
class _Closed:
    """A closed segment, as retention sees it."""

    topic: str
    seq: int
    path: Path
    size: int
    last_ts: int


@dataclass(frozen=True, slots=True)
class Previous:
    """What the archive says about the run before this one, read by `open()`."""

    #: Per topic folder: the id of the newest archived event (None: the folder holds no event yet).
    last_ids: dict[str, str | None]
    #: When the previous archiver was last known alive (Unix ms; None: no state file).
    live_ms: int | None
    #: Whether it stopped cleanly (flushed and closed everything).
    clean: bool


class ArchiveWriter:
    """Writes one archive directory. Use `open()` first and `close()` at the end."""

    def __init__(self, root: Path, options: ArchiveOptions, render: RenderLines) -> None:
        self.root = root
        self.options = options
        #: The NDJSON stream's lines of events (`http.streams.encoders.NDJSONEncoder.download`): the
        #: archive's lines are the stream's, and the core does not frame (it does not import http/).
        self.render = render
        self._open: dict[str, _Open] = {}
        self._next_seq: dict[str, int] = {}
        self._closed: list[_Closed] = []
        self._lock = threading.Lock()  # `_closed` and the files in it, shared with `compress`
        self._lock_fd: int | None = None
        self._last_sync = time.monotonic()
        self._state_written = 0.0
        self.cut_bytes = 0  # bytes `open()` cut from unfinished lines, for the log and the tests

    # -- opening and closing ---------------------------------------------------------------

    def open(self) -> Previous:
        """Lock the directory, repair what a crash left, and return where the previous run stopped.

        Raises `ConfigError` if another archiver holds the directory or it cannot be created.
        """
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(f"cannot use archive directory {self.root}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(f"another archiver is writing {self.root} (it holds {self.root / LOCK_NAME})") from None
        self._lock_fd = fd
        live_ms, clean = self._read_state()
        last_ids = {topic: self._recover(topic) for topic in archived_topics(self.root)}
        self._write_state(clean=False)
        return Previous(last_ids, live_ms, clean)

    def close(self) -> list[Path]:
        """Close every open segment and mark the run clean; return the segments to compress."""
        to_compress: list[Path] = []
        for topic in list(self._open):
            to_compress += self._close_segment(topic)
        if self._lock_fd is not None:
            self._write_state(clean=True)
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None
        return to_compress

    def uncompressed(self) -> list[Path]:
        """Closed segments still plain although compression is on (a stop came before their turn)."""
        if not self.options.gzip:
            return []
        with self._lock:
            return [c.path for c in self._closed if not c.path.name.endswith(".gz")]

    def _read_state(self) -> tuple[int | None, bool]:
        try:
            state = orjson.loads((self.root / STATE_NAME).read_bytes())
            return int(state["live_ms"]), bool(state["clean"])
        except (OSError, orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            return None, False

    def _write_state(self, *, clean: bool) -> None:
        tmp = self.root / (STATE_NAME + TMP_SUFFIX)
        tmp.write_bytes(orjson.dumps({"live_ms": now_ms(), "clean": clean, "pid": os.getpid()}))
        os.replace(tmp, self.root / STATE_NAME)
        self._state_written = time.monotonic()

    def _recover(self, topic: str) -> str | None:
        """Repair a topic folder after any stop, reopen its unfinished segment; return its newest event id."""
        folder = topic_dir(self.root, topic)
        for leftover in folder.glob("*" + TMP_SUFFIX):
            leftover.unlink()
        for path in folder.glob("*.ndjson"):
            if (gz := path.with_name(path.name + ".gz")).exists():
                path.unlink()  # compressed completely before the crash; the plain copy is a leftover
                logger.info("removed %s: %s is complete", path, gz.name)
        records = read_index(folder, repair=True)
        files = segment_files(folder)
        self._next_seq[topic] = max([*files, *records, 0]) + 1
        if set(records) - set(files):
            rewrite_index(folder, {seq: r for seq, r in records.items() if seq in files})
        newest = max(files, default=None)
        for seq, path in files.items():
            if seq in records:
                self._remember_closed(topic, seq, path, records[seq])
                continue
            cut = _lines.repair(path) if not path.name.endswith(".gz") else 0
            if cut:
                self.cut_bytes += cut
                logger.warning("cut %d bytes of an unfinished line from %s", cut, path)
            if path.stat().st_size == 0:
                path.unlink()
                continue
            meta = _lines.scan(path)
            if seq == newest and not path.name.endswith(".gz"):
                self._reopen(topic, path, meta)
            else:  # closed by the crash before its index record was written
                record = {"seq": seq, **meta.as_record(), "bytes": path.stat().st_size}
                append_record(folder, record, sync=self.options.fsync_s is not None)
                self._remember_closed(topic, seq, path, record)
        return self._newest_id(topic, folder)

    def _newest_id(self, topic: str, folder: Path) -> str | None:
        segment = self._open.get(topic)
        if segment is not None and segment.meta["last_id"] is not None:
            return str(segment.meta["last_id"])
        records = read_index(folder)
        for seq in sorted(records, reverse=True):
            if records[seq].get("last_id") is not None:
                return str(records[seq]["last_id"])
        return None

    def _reopen(self, topic: str, path: Path, meta: _lines.SegmentMeta) -> None:
        name = SegmentName.parse(path.name)
        assert name is not None
        fd = os.open(path, os.O_WRONLY | os.O_APPEND)
        stamp_ms = calendar.timegm(time.strptime(name.stamp, "%Y%m%dT%H%M%SZ")) * 1000
        first_ts = meta.first_ts if meta.first_ts is not None else stamp_ms
        record = {"seq": name.seq, **meta.as_record()}
        self._open[topic] = _Open(name, path, fd, os.fstat(fd).st_size, self._window(first_ts), record)

    def _remember_closed(self, topic: str, seq: int, path: Path, record: dict[str, Any]) -> None:
        last_ts = record.get("last_ts") or 0
        with self._lock:
            self._closed.append(_Closed(topic, seq, path, path.stat().st_size, int(last_ts)))

    # -- writing ---------------------------------------------------------------------------

    def _window(self, ts: int) -> int:
        return ts // self.options.segment_ms

    def write(self, topic: str, items: Sequence[Event | Control]) -> list[Path]:
        """Append events (and `reset` markers) of one topic; return segments closed on the way (to compress).

        On an error (a full disk) the topic's files are repaired to whole lines before it is
        raised; `newest_id(topic)` then says what was written.
        """
        try:
            return self._write(topic, items)
        except BaseException:
            segment = self._open.pop(topic, None)
            if segment is not None:
                os.close(segment.fd)
                _lines.repair(segment.path)
                if segment.path.stat().st_size:
                    self._reopen(topic, segment.path, _lines.scan(segment.path))
                else:
                    segment.path.unlink()
            raise

    def newest_id(self, topic: str) -> str | None:
        """The id of the newest event archived for `topic` (None: none yet)."""
        return self._newest_id(topic, topic_dir(self.root, topic))

    def _write(self, topic: str, items: Sequence[Event | Control]) -> list[Path]:
        closed: list[Path] = []
        limit = self.options.segment_bytes
        segment = self._open.get(topic)
        for index, item in enumerate(items):
            if type(item) is Event:
                line, ts = self.render((item,)), item.ts
            else:
                assert isinstance(item, Control)
                # A marker takes the time of the event it precedes (catch-up events are older than
                # now), so that it lands in that event's segment; alone, the time of writing.
                ts = next((i.ts for i in items[index + 1 :] if type(i) is Event), None) or now_ms()
                line = orjson.dumps({**item.as_dict(), "ts": ts}) + b"\n"
            if segment is not None:
                size = segment.size + segment.pending_bytes
                if self._window(ts) != segment.window or (size and size + len(line) > limit):
                    closed += self._close_segment(topic)
                    segment = None
            if segment is None:
                segment = self._start_segment(topic, ts)
            segment.pending.append(line)
            segment.pending_bytes += len(line)
            if type(item) is Event:
                meta = segment.meta
                if meta["first_id"] is None:
                    meta["first_id"], meta["first_ts"] = item.id, item.ts
                meta["last_id"], meta["last_ts"] = item.id, item.ts
        if segment is not None:
            self._flush(segment)
        if self.options.fsync_s == 0:
            self._sync_all()
        return closed

    def _start_segment(self, topic: str, ts: int) -> _Open:
        folder = topic_dir(self.root, topic)
        if not folder.is_dir():
            folder.mkdir()
            self._sync_dir(self.root)
        seq = self._next_seq.get(topic, 1)
        self._next_seq[topic] = seq + 1
        name = SegmentName.new(seq, ts)
        path = folder / name.name
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_EXCL, 0o644)
        self._sync_dir(folder)
        meta: dict[str, Any] = {"seq": seq, "first_id": None, "last_id": None, "first_ts": None, "last_ts": None}
        segment = self._open[topic] = _Open(name, path, fd, 0, self._window(ts), meta)
        return segment

    def _flush(self, segment: _Open) -> None:
        if not segment.pending:
            return
        data = memoryview(b"".join(segment.pending))
        segment.pending.clear()
        segment.pending_bytes = 0
        while data:
            written = os.write(segment.fd, data)
            data = data[written:]
            segment.size += written
        segment.unsynced = True

    def _close_segment(self, topic: str) -> list[Path]:
        segment = self._open.pop(topic)
        self._flush(segment)
        if self.options.fsync_s is not None and segment.unsynced:
            os.fsync(segment.fd)
        os.close(segment.fd)
        record = {**segment.meta, "bytes": segment.size}
        folder = segment.path.parent
        append_record(folder, record, sync=self.options.fsync_s is not None)
        self._remember_closed(topic, segment.name.seq, segment.path, record)
        return [segment.path] if self.options.gzip else []

    # -- durability, rotation by time, retention -------------------------------------------

    def _sync_all(self) -> None:
        for segment in self._open.values():
            if segment.unsynced:
                os.fsync(segment.fd)
                segment.unsynced = False
        self._last_sync = time.monotonic()

    def _sync_dir(self, folder: Path) -> None:
        if self.options.fsync_s is None:
            return
        fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def tick(self, now: int | None = None) -> list[Path]:
        """Periodic work: close segments whose time is over, fsync on the interval, retention, liveness.

        Returns the segments closed (to compress).
        """
        now = now_ms() if now is None else now
        closed: list[Path] = []
        for topic, segment in list(self._open.items()):
            if self._window(now) > segment.window:
                closed += self._close_segment(topic)
        interval = self.options.fsync_s
        if interval and time.monotonic() - self._last_sync >= interval:
            self._sync_all()
        self._expire(now)
        if time.monotonic() - self._state_written >= 1.0:
            self._write_state(clean=False)
        return closed

    def _expire(self, now: int) -> None:
        options = self.options
        if not options.retention_s and not options.retention_bytes:
            return
        with self._lock:
            self._closed.sort(key=lambda c: (c.last_ts, c.seq))
            doomed: list[_Closed] = []
            if options.retention_s:
                horizon = now - int(options.retention_s * 1000)
                doomed = [c for c in self._closed if c.last_ts < horizon]
            if options.retention_bytes:
                total = sum(c.size for c in self._closed) + sum(s.size for s in self._open.values())
                total -= sum(c.size for c in doomed)
                for candidate in self._closed:
                    if total <= options.retention_bytes:
                        break
                    if candidate not in doomed:
                        doomed.append(candidate)
                        total -= candidate.size
            for victim in doomed:
                self._closed.remove(victim)
                with contextlib.suppress(FileNotFoundError):
                    victim.path.unlink()
                logger.info("retention removed %s/%s", victim.topic, victim.path.name)

    def compress(self, path: Path) -> Path | None:
        """Gzip a closed segment next to it, then remove the plain file; None if retention removed it first."""
        target = path.with_name(path.name + ".gz")
        tmp = target.with_name(target.name + TMP_SUFFIX)
        try:
            with open(path, "rb") as source, gzip.open(tmp, "wb", compresslevel=6) as sink:
                shutil.copyfileobj(source, sink, _lines.BLOCK_BYTES)
        except FileNotFoundError:
            tmp.unlink(missing_ok=True)
            return None
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        with self._lock:
            entry = next((c for c in self._closed if c.path == path), None)
            if entry is None:  # expired while it was being compressed
                tmp.unlink()
                return None
            os.replace(tmp, target)
            self._sync_dir(target.parent)
            path.unlink()
            entry.path = target
            entry.size = target.stat().st_size
        return target
