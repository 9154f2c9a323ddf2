"""ArchiveCatalog: the read side of an archive directory (listings, segment lookup). Blocking: use a thread.

It never writes, so a server can serve a directory that an archiver in another
process (or on another machine, over a shared disk) is writing. A segment is
*closed* once its index record exists; the newest segment without one is the
*open* segment, served up to its last whole line.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import _lines
from ._index import read_index
from ._layout import INDEX_NAME, SegmentName, archived_topics, is_inside, segment_files, topic_dir
from ._order import EpochOrder, id_epoch

#: Segments whose epochs were read (those that hold an epoch change), kept per catalog.
_EPOCH_CACHE_SIZE = 1024


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """One segment file as the catalog sees it at one moment."""

    topic: str
    name: str
    seq: int
    path: Path
    #: Bytes served: the file's size, or for the open segment its whole lines at the time of the look-up.
    size: int
    mtime: float
    inode: int
    open: bool
    gzip: bool
    first_id: str | None = None
    last_id: str | None = None
    first_ts: int | None = None
    last_ts: int | None = None
    #: Whether first/last are known (from the index, or read from the file by `describe`).
    described: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bytes": self.size,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "open": self.open,
            "gzip": self.gzip,
        }


class ArchiveCatalog:
    """Read access to the archive at `root`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._indexes: dict[str, tuple[tuple[int, int], dict[int, dict[str, Any]]]] = {}
        self._epochs: dict[tuple[Path, int, int], list[str]] = {}

    def topics(self) -> list[str]:
        return archived_topics(self.root)

    def _index(self, topic: str, folder: Path) -> dict[int, dict[str, Any]]:
        try:
            info = os.stat(folder / INDEX_NAME)
            key = (info.st_mtime_ns, info.st_size)
        except FileNotFoundError:
            key = (0, 0)
        cached = self._indexes.get(topic)
        if cached is not None and cached[0] == key:
            return cached[1]
        records = read_index(folder) if key != (0, 0) else {}
        self._indexes[topic] = (key, records)
        return records

    def segments(self, topic: str) -> list[SegmentInfo]:
        """The topic's segments, oldest first (open ones not yet described: see `describe`)."""
        folder = topic_dir(self.root, topic)
        if not is_inside(self.root, folder, directory=True):
            return []
        files = segment_files(folder)
        records = self._index(topic, folder)
        newest = max(files, default=None)
        infos = []
        for seq, path in files.items():
            try:
                st = os.stat(path)
            except FileNotFoundError:  # removed by retention since the listing
                continue
            gz = path.name.endswith(".gz")
            record = records.get(seq)
            is_open = record is None and seq == newest and not gz
            size = _lines.complete_length(path, st.st_size) if is_open else st.st_size
            info = SegmentInfo(topic, path.name, seq, path, size, st.st_mtime, st.st_ino, is_open, gz)
            if record is not None:
                info = dataclasses.replace(
                    info,
                    first_id=record.get("first_id"),
                    last_id=record.get("last_id"),
                    first_ts=record.get("first_ts"),
                    last_ts=record.get("last_ts"),
                    described=True,
                )
            infos.append(info)
        return infos

    def describe(self, info: SegmentInfo) -> SegmentInfo:
        """`info` with its first and last event read from the file if the index did not have them."""
        if info.described:
            return info
        try:
            meta = _lines.scan(info.path, None if info.gzip else info.size)
        except FileNotFoundError:
            return info
        return dataclasses.replace(info, **meta.as_record(), described=True)

    def order(self, described: list[SegmentInfo]) -> EpochOrder:
        """The epochs of a topic's described segments (oldest first), in the order the files hold them.

        A segment whose first and last event share an epoch holds that one alone (the runs
        are contiguous); only one that holds an epoch change is read, once (then cached).
        """
        order = EpochOrder()
        for info in described:
            first, last = id_epoch(info.first_id or ""), id_epoch(info.last_id or "")
            if first is None or last is None:
                continue
            if first == last:
                order.add(first)
                continue
            for epoch in self._segment_epochs(info):
                order.add(epoch)
        return order

    def _segment_epochs(self, info: SegmentInfo) -> list[str]:
        key = (info.path, info.inode, info.size)
        epochs = self._epochs.get(key)
        if epochs is None:
            epochs = []
            try:
                for event_id in _lines.event_ids(info.path, info.size):
                    epoch = id_epoch(event_id)
                    if epoch is not None and (not epochs or epochs[-1] != epoch):
                        epochs.append(epoch)
            except FileNotFoundError:  # removed by retention meanwhile: its events are gone too
                return []
            if len(self._epochs) >= _EPOCH_CACHE_SIZE:
                self._epochs.clear()
            self._epochs[key] = epochs
        return epochs

    def segment(self, topic: str, name: str) -> SegmentInfo | None:
        """The segment named `name` if it is in the topic's listing and a regular file inside the archive."""
        if SegmentName.parse(name) is None:
            return None
        folder = topic_dir(self.root, topic)
        if not is_inside(self.root, folder / name):
            return None
        return next((s for s in self.segments(topic) if s.name == name), None)
