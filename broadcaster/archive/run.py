"""`broadcaster archive`: an archiver as a process of its own, until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
from pathlib import Path

import uvloop

from .._config import Settings
from .._hub import Hub
from ._archiver import Archiver
from ._options import ArchiveOptions

logger = logging.getLogger(__name__)


async def archive_until_stopped(settings: Settings, stop: asyncio.Event | None = None) -> None:
    """Archive `settings.archive_topics` into `settings.archive_dir` until `stop` is set (or a signal)."""
    assert settings.archive_dir is not None
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The runner, like the CLI, may reach into http/: the lines are the NDJSON stream's (its encoder's).
    from ..http.streams.encoders import NDJSONEncoder

    render = NDJSONEncoder().download
    root = Path(settings.archive_dir)
    patterns = list(settings.archive_topics)
    async with Hub(settings=settings) as hub:
        options = ArchiveOptions.from_settings(settings)
        async with Archiver(hub, root, patterns, options, render=render) as archiver:
            waiter = asyncio.create_task(stop.wait())
            try:
                while archiver.running and not stop.is_set():
                    await asyncio.wait([waiter], timeout=1.0)
            finally:
                waiter.cancel()
        logger.info("archiver stopped", extra={"written": archiver.written, "resets": archiver.resets})


def run_archiver(settings: Settings) -> int:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(archive_until_stopped(settings))
    return 0
