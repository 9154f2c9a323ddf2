"""The archive: chosen topics written to NDJSON segment files, read back for listings, exports, resumes.

Core code (no HTTP): `Archiver` writes, `ArchiveCatalog` reads; `broadcaster.http.archive`
serves them. The layout of the files is described in `_layout` and docs/archive.md.
"""

from __future__ import annotations

from ._archiver import Archiver
from ._catalog import ArchiveCatalog, SegmentInfo
from ._deep import DeepReplay
from ._export import Bound, Range, export_blocks, items_of
from ._options import ArchiveOptions, parse_fsync
from ._service import ServerArchive, check_server_settings, server_archive

__all__ = [
    "ArchiveCatalog",
    "ArchiveOptions",
    "Archiver",
    "Bound",
    "Range",
    "SegmentInfo",
    "ServerArchive",
    "DeepReplay",
    "check_server_settings",
    "export_blocks",
    "items_of",
    "parse_fsync",
    "server_archive",
]
