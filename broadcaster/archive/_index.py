"""`index.ndjson`: one line per closed segment of a topic (its seq, first/last id and ts, bytes).

Derived data, kept so that a listing needs no segment read (a gzip segment
cannot be read backwards to find its last event). Appended as segments close,
rewritten (temporary file, then rename) only to drop records of removed files.
The newest record of a seq wins; records of files that are gone are ignored.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import orjson

from . import _lines
from ._layout import INDEX_NAME, TMP_SUFFIX


def read_index(folder: Path, *, repair: bool = False) -> dict[int, dict[str, Any]]:
    """The records by seq. `repair=True` (the writer, at start) first cuts an unfinished last line."""
    path = folder / INDEX_NAME
    if repair and path.exists():
        _lines.repair(path)
    records: dict[int, dict[str, Any]] = {}
    try:
        with open(path, "rb") as f:
            for block in _lines.read_blocks(f):
                for line in block.splitlines():
                    record = _lines.parse_line(line)
                    if record is not None and isinstance(record.get("seq"), int):
                        records[record["seq"]] = record
    except FileNotFoundError:
        pass
    return records


def append_record(folder: Path, record: dict[str, Any], *, sync: bool) -> None:
    fd = os.open(folder / INDEX_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, orjson.dumps(record) + b"\n")
        if sync:
            os.fsync(fd)
    finally:
        os.close(fd)


def rewrite_index(folder: Path, records: dict[int, dict[str, Any]]) -> None:
    tmp = folder / (INDEX_NAME + TMP_SUFFIX)
    tmp.write_bytes(b"".join(orjson.dumps(records[seq]) + b"\n" for seq in sorted(records)))
    os.replace(tmp, folder / INDEX_NAME)
