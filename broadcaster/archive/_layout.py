"""Where the archive keeps what: one folder per topic, segment names, the index, the state file.

```
DIR/
  .lock                                   flock'ed by the one archiver that writes DIR
  .archiver.json                          {"live_ms", "clean"}: when the archiver was last alive
  sensors.kitchen/                        one folder per topic (topic names are safe file names)
    00000001-20250114T100000Z.ndjson      a segment: NDJSON lines, oldest first
    00000002-20250114T110000Z.ndjson.gz   a closed segment, gzip-compressed
    index.ndjson                          one line per closed segment: seq, first/last id and ts, bytes
```

A segment's name is its sequence number in the topic (8 digits, so names sort
in order) and the UTC time of its first line. Nothing else in a topic folder has a
name that `SegmentName.parse` accepts, which is what keeps every other file (and
any name with `/`, `..` or NUL) from being served.
"""

from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from .._topics import TOPIC_RE

INDEX_NAME = "index.ndjson"
STATE_NAME = ".archiver.json"
LOCK_NAME = ".lock"
PLAIN_SUFFIX = ".ndjson"
GZIP_SUFFIX = ".ndjson.gz"
TMP_SUFFIX = ".tmp"

_SEGMENT_RE = re.compile(r"^([0-9]{8})-([0-9]{8}T[0-9]{6}Z)\.ndjson(\.gz)?\Z")


@dataclass(frozen=True, slots=True)
class SegmentName:
    """A parsed segment file name: `<seq>-<first line's UTC time>.ndjson[.gz]`."""

    seq: int
    stamp: str
    gzip: bool = False

    @classmethod
    def parse(cls, name: str) -> SegmentName | None:
        """The parsed name, or None if `name` is not a segment's (the only names ever served)."""
        match = _SEGMENT_RE.match(name)
        if match is None:
            return None
        return cls(int(match[1]), match[2], match[3] is not None)

    @classmethod
    def new(cls, seq: int, ts_ms: int) -> SegmentName:
        if not 0 < seq < 10**8:
            raise ValueError(f"segment sequence number out of range: {seq}")
        return cls(seq, time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(ts_ms // 1000)))

    @property
    def name(self) -> str:
        return f"{self.seq:08d}-{self.stamp}{GZIP_SUFFIX if self.gzip else PLAIN_SUFFIX}"

    def compressed(self) -> SegmentName:
        return SegmentName(self.seq, self.stamp, True)


def topic_dir(root: Path, topic: str) -> Path:
    """The folder of `topic` (a valid topic name contains no `/` and does not start with `.`)."""
    if TOPIC_RE.match(topic) is None:
        raise ValueError(f"not a topic name: {topic[:80]!r}")
    return root / topic


def archived_topics(root: Path) -> list[str]:
    """The topics with a folder in the archive (real folders only, never symlinks), sorted."""
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return []
    return sorted(e.name for e in entries if TOPIC_RE.match(e.name) and e.is_dir(follow_symlinks=False))


def segment_files(folder: Path) -> dict[int, Path]:
    """The segment files of a topic folder by sequence number (regular files only, never symlinks).

    If a crash left both the plain and the gzip file of a segment, the gzip one wins: it
    is renamed into place only once complete, so the plain one is a leftover.
    """
    found: dict[int, Path] = {}
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return found
    for entry in entries:
        name = SegmentName.parse(entry.name)
        if name is None or not entry.is_file(follow_symlinks=False):
            continue
        if name.seq not in found or name.gzip:
            found[name.seq] = folder / entry.name
    return dict(sorted(found.items()))


def is_inside(root: Path, path: Path, *, directory: bool = False) -> bool:
    """Whether `path` is a regular file (or a directory) inside `root`, and no symlink leads there.

    `lstat` makes a symlink neither a file nor a directory; `realpath` catches a symlinked parent.
    """
    try:
        info = os.lstat(path)
    except OSError:
        return False
    if not (stat.S_ISDIR if directory else stat.S_ISREG)(info.st_mode):
        return False
    real_root = os.path.realpath(root).rstrip(os.sep) + os.sep
    return os.path.realpath(path).startswith(real_root)
