"""Archiver: follows topic patterns through a hub and writes every event to segment files, once.

How it keeps "exactly once, in order" across restarts, outages and slow disks:

1. `start()` repairs the directory and reads back, per topic, the id of the newest
   archived event; then it subscribes live (from here on, nothing published is missed:
   the in-server archiver does this before the server reports healthy).
2. It catches up every matching topic from the retained history, after that id (from
   the oldest retained event for a topic it has no file of), page by page.
3. Then it follows the live subscription, dropping events of a topic with an id up to
   the newest one written: ids increase per topic, so one comparison per event is the
   whole seam between history and live, whatever the order the topics interleave in.
4. The subscription drops rather than disconnects when the disk is slower than the
   publishers (`drop-newest`); the `gap` it gets, like a backend's own `gap` after an
   outage, sends it back to step 2. Events are lost only if the history no longer
   holds them, and then a `reset` line in the topic's segment says so.

A `reset` line is written when the history cannot cover what the archiver missed:
the history was trimmed past the newest archived event, the archiver was stopped
longer than the history's ttl, or the history does not survive a restart (the
memory backend) and the previous run did not stop cleanly.

File I/O runs in a worker thread (`asyncio.to_thread`), one call at a time, never
on the event loop; compressing a closed segment runs in a second one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Self

from .._event import Control, Event, EventId, parse_id
from .._exceptions import BackendError, HubClosed
from .._hub import Hub
from .._subscription import Subscription
from .._topics import matches_any
from .._types import OverflowPolicy
from ._layout import archived_topics
from ._options import ArchiveOptions
from ._writer import ArchiveWriter, Previous, now_ms

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
TICK_S = 1.0
RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0
STOP_TIMEOUT_S = 10.0


class Archiver:
    """Writes the events of topics matching `patterns` to the archive at `root`. An async context manager.

    `history_survives_restart` is False for the memory backend, whose history dies with the
    process: then a run that did not stop cleanly may have lost its last events, and the
    next one says so with `reset` lines.
    """

    def __init__(
        self,
        hub: Hub,
        root: Path,
        patterns: Sequence[str],
        options: ArchiveOptions,
        *,
        history_survives_restart: bool = True,
    ) -> None:
        if not patterns:
            raise ValueError("an archiver needs at least one topic pattern")
        self.hub = hub
        self.root = root
        self.patterns = list(patterns)
        self.options = options
        self.history_survives_restart = history_survives_restart
        self.writer = ArchiveWriter(root, options)
        #: Per topic: the newest event id written (the seam between history and live).
        self.last: dict[str, EventId] = {}
        self._last_text: dict[str, str] = {}
        #: Events written, resets written, catch-up passes: for logs, metrics and tests.
        self.written = 0
        self.resets = 0
        self.catch_ups = 0
        self._previous: Previous | None = None
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._compressor: asyncio.Task[None] | None = None
        self._to_compress: asyncio.Queue[Path] = asyncio.Queue()
        self._stopping = False
        self._next_tick = 0.0

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Repair the directory, subscribe live, and start following. Raises `ConfigError` (directory in use)."""
        previous = self._previous = await asyncio.to_thread(self.writer.open)
        for topic, newest in previous.last_ids.items():
            self._set_last(topic, newest)
        for path in self.writer.uncompressed():
            self._to_compress.put_nowait(path)
        settings = self.hub.settings
        try:
            self._sub = await self.hub.subscribe(
                self.patterns,
                queue_size=settings.max_queue_size,
                queue_bytes=4 * settings.queue_bytes,
                overflow=OverflowPolicy.DROP_NEWEST,
            )
        except BaseException:
            await asyncio.to_thread(self.writer.close)
            raise
        logger.info("archiving %s to %s", ", ".join(self.patterns), self.root, extra={"topics": len(self.last)})
        self._task = asyncio.create_task(self._run(), name="broadcaster-archiver")
        self._compressor = asyncio.create_task(self._compress_loop(), name="broadcaster-archive-gzip")

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def aclose(self) -> None:
        """Write what was published up to now, close every segment, release the directory. Idempotent."""
        if self._stopping:
            return
        self._stopping = True
        if self._sub is not None:
            self._sub.finish()  # the loop drains what is queued, catches up once more, then stops
        task = self._task
        if task is not None:
            try:
                async with asyncio.timeout(STOP_TIMEOUT_S):
                    await asyncio.shield(task)
            except TimeoutError:
                logger.error("the archiver did not stop within %.0fs; cancelling it", STOP_TIMEOUT_S)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
        if self._compressor is not None:
            self._compressor.cancel()
            await asyncio.gather(self._compressor, return_exceptions=True)
        if self._sub is not None:
            self._sub.close()
        if task is None:
            await asyncio.to_thread(self.writer.close)

    # -- the loop --------------------------------------------------------------------------

    async def _run(self) -> None:
        delay = RETRY_MIN_S
        first = True
        while True:
            try:
                await self._catch_up(check_previous=first)
                first = False
                delay = RETRY_MIN_S
                if await self._follow():
                    break  # the subscription ended
            except (BackendError, OSError) as exc:
                if self._stopping:
                    break
                wait = delay * random.uniform(0.8, 1.2)
                logger.warning("archiver: %s; catching up from history again in %.1fs", exc, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, RETRY_MAX_S)
            except HubClosed:
                break
        try:
            if not self.hub.closed:
                await self._catch_up(check_previous=False)  # published but not delivered yet
        except (BackendError, OSError, HubClosed) as exc:
            logger.warning("archiver: the final catch-up failed: %s", exc)
        finally:
            await asyncio.to_thread(self._close_writer)

    def _close_writer(self) -> None:
        for path in self.writer.close():
            logger.info("%s stays uncompressed until the next start", path)

    async def _topics(self) -> list[str]:
        topics = set(self.last)
        topics.update(t for t in await asyncio.to_thread(archived_topics, self.root) if matches_any(t, self.patterns))
        for pattern in self.patterns:
            topics.update(info.topic for info in await self.hub.retained_topics(pattern))
        return sorted(topics)

    async def _catch_up(self, *, check_previous: bool) -> None:
        self.catch_ups += 1
        for topic in await self._topics():
            await self._catch_up_topic(topic, self._previous_loss(topic) if check_previous else None)

    def _previous_loss(self, topic: str) -> str | None:
        """Why events after the previous run's last one may be missing from the history, if they may."""
        previous = self._previous
        if previous is None or self.last.get(topic) is None:
            return None  # nothing archived yet: the history is all there is
        if not previous.clean and not self.history_survives_restart:
            return "the previous archiver stopped without flushing, and the history did not survive the restart"
        ttl_ms = int(self.hub.settings.history_ttl_s * 1000)
        if previous.live_ms is None or now_ms() - previous.live_ms > ttl_ms:
            return "the archiver was stopped for longer than the history's ttl"
        return None

    async def _catch_up_topic(self, topic: str, loss: str | None) -> None:
        after = self.last.get(topic)
        while True:
            page = await self.hub.history(topic, after=after, limit=PAGE_SIZE)
            items: list[Event | Control] = []
            if after is not None and page.trimmed is not None and page.trimmed > after:
                loss = "the history was trimmed past the newest archived event"
            if loss is not None:
                items.append(self._reset(topic, loss))
                loss = None
            items.extend(page.events)
            if items:
                await self._write(topic, items)
            if not page.events:
                return
            after = page.events[-1].seq

    def _reset(self, topic: str, reason: str) -> Control:
        newest = self._last_text.get(topic)
        logger.warning("archive reset on %s after %s: %s", topic, newest, reason)
        self.resets += 1
        return Control("reset", {"reason": reason, "last_event_id": newest, "topics": [topic]})

    async def _follow(self) -> bool:
        """Write live events until a `gap` (return False: catch up again) or the end (return True)."""
        sub = self._sub
        assert sub is not None
        while True:
            try:
                async with asyncio.timeout(TICK_S):
                    await sub.wait()
            except TimeoutError:
                pass
            items = sub.drain()
            batch: dict[str, list[Event | Control]] = {}
            gap = False
            newest: dict[str, EventId] = {}
            for item in items:
                if type(item) is Event:
                    seq = item.seq
                    last = newest.get(item.topic) or self.last.get(item.topic)
                    if last is None or seq > last:
                        newest[item.topic] = seq
                        batch.setdefault(item.topic, []).append(item)
                elif isinstance(item, Control) and item.kind == "gap":
                    # Events after a gap are newer than the lost ones: the history has them all, in order.
                    gap = True
                    break
            for topic, topic_items in batch.items():
                await self._write(topic, topic_items)
            if time.monotonic() >= self._next_tick:
                self._next_tick = time.monotonic() + TICK_S
                for path in await asyncio.to_thread(self.writer.tick):
                    self._to_compress.put_nowait(path)
            if gap:
                logger.info("archiver: the live subscription dropped events; catching up from history")
                return False
            if sub.ended:
                return True

    async def _write(self, topic: str, items: list[Event | Control]) -> None:
        try:
            closed = await asyncio.to_thread(self.writer.write, topic, items)
        except OSError:
            newest = await asyncio.to_thread(self.writer.newest_id, topic)
            self._set_last(topic, newest)
            raise
        events = [i for i in items if type(i) is Event]
        self.written += len(events)
        if events:
            self._set_last(topic, events[-1].id)
        for path in closed:
            self._to_compress.put_nowait(path)

    def _set_last(self, topic: str, event_id: str | None) -> None:
        if event_id is None:
            self.last.pop(topic, None)
            self._last_text.pop(topic, None)
        else:
            self.last[topic] = parse_id(event_id)
            self._last_text[topic] = event_id

    async def _compress_loop(self) -> None:
        while True:
            path = await self._to_compress.get()
            try:
                await asyncio.to_thread(self.writer.compress, path)
            except OSError as exc:
                logger.error("could not compress %s: %s", path, exc)
