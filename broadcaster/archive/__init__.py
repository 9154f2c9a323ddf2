"""The archive: chosen topics written to NDJSON segment files, read back for listings, exports, resumes.

Core code (no HTTP): `Archiver` writes, `ArchiveCatalog` reads; `broadcaster.http.api.archive`
serves them. The layout of the files is described in `_layout` and docs/archive.md.
"""

from __future__ import annotations

from ._archiver import Archiver
from ._catalog import ArchiveCatalog, SegmentInfo
from ._deep import DeepReplay
from ._export import Bound, Range, RangeError, export_blocks, items_of, plan, stream_plan
from ._options import ArchiveOptions, parse_fsync
from ._service import ServerArchive, check_server_settings, server_archive

__all__ = [
    "ArchiveCatalog",
    "ArchiveOptions",
    "Archiver",
    "Bound",
    "Range",
    "RangeError",
    "SegmentInfo",
    "ServerArchive",
    "DeepReplay",
    "check_server_settings",
    "export_blocks",
    "items_of",
    "parse_fsync",
    "plan",
    "server_archive",
    "stream_plan",
]
