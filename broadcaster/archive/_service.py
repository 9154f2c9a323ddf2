"""The archive of a server process: what `broadcaster serve --archive-dir` opens in its lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from .._config import Settings
from .._exceptions import ConfigError
from .._hub import Hub
from ._archiver import Archiver
from ._catalog import ArchiveCatalog
from ._options import ArchiveOptions
from ._writer import RenderLines

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ServerArchive:
    """The archive a server serves, and the archiver it runs (None: read-only, another process writes)."""

    catalog: ArchiveCatalog
    archiver: Archiver | None


def check_server_settings(settings: Settings) -> None:
    """Refuse an in-server archiver on Redis: every server process would write the same files.

    Raises `ConfigError` saying what to run instead.
    """
    if settings.archive_topics and settings.redis_url:
        raise ConfigError(
            "--archive-topics runs the archiver inside the server, which needs the memory backend; with Redis, "
            "run one `broadcaster archive --dir DIR --topics ... --redis-url ...` for the whole deployment "
            "and give the servers --archive-dir DIR alone (read-only)"
        )


@contextlib.asynccontextmanager
async def server_archive(settings: Settings, hub: Hub, render: RenderLines) -> AsyncIterator[ServerArchive | None]:
    """None without `archive_dir`; else the catalog, and the archiver if `archive_topics` is set.

    The archiver is subscribed when this yields, so it misses nothing published after the
    server starts answering.
    """
    if not settings.archive_dir:
        yield None
        return
    check_server_settings(settings)
    root = Path(settings.archive_dir)
    catalog = ArchiveCatalog(root)
    if not settings.archive_topics:
        if not await asyncio.to_thread(root.is_dir):
            logger.warning("archive directory %s does not exist (yet): nothing to serve until it does", root)
        yield ServerArchive(catalog, None)
        return
    patterns = list(settings.archive_topics)
    options = ArchiveOptions.from_settings(settings)
    async with Archiver(hub, root, patterns, options, render=render, history_survives_restart=False) as archiver:
        yield ServerArchive(catalog, archiver)
