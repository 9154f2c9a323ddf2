"""An archive directory with closed, gzip and open segments, and a read-only server app on it."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from broadcaster.archive import ArchiveCatalog, ArchiveOptions, SegmentInfo
from broadcaster.archive._writer import ArchiveWriter

from .support import NDJSON_LINES, make_events

TOPIC = "sensors.kitchen"


@dataclass
class Built:
    root: Path
    writer: ArchiveWriter
    segments: dict[str, SegmentInfo]  # "closed", "gzip", "open" -> one of each
    events: int

    def refresh(self) -> dict[str, SegmentInfo]:
        infos = ArchiveCatalog(self.root).segments(TOPIC)
        return {
            "closed": next(s for s in infos if not s.open and not s.gzip),
            "gzip": next(s for s in infos if s.gzip),
            "open": next(s for s in infos if s.open),
        }


@pytest.fixture
def built(tmp_path: Path) -> Iterator[Built]:
    """40 events of ~100 bytes in segments of 1000 bytes: the first one gzip, the last one open."""
    writer = ArchiveWriter(tmp_path, ArchiveOptions(segment_bytes=1000, gzip=True), NDJSON_LINES)
    writer.open()
    closed = writer.write(TOPIC, make_events(TOPIC, 40, step_ms=1000))
    writer.compress(closed[0])
    archive = Built(tmp_path, writer, {}, 40)
    archive.segments = archive.refresh()
    yield archive
    writer.close()


@pytest.fixture
def archive_client(make_settings, client_factory, built):
    """An in-process client of a server that serves `built` read-only."""

    @contextlib.asynccontextmanager
    async def make(**changes) -> AsyncIterator[httpx.AsyncClient]:
        async with client_factory(make_settings(archive_dir=str(built.root), **changes)) as client:
            yield client

    return make
