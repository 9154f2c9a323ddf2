"""Archiver: follows topic patterns through a hub and writes every event to segment files, once.

How it keeps "exactly once, in order" across restarts, outages and slow disks:

1. `start()` repairs the directory and reads back, per topic, the id of the newest
   archived event; then it subscribes live (from here on, nothing published is missed:
   the in-server archiver does this before the server reports healthy).
2. Each topic catches up from the retained history once, after that id (from the oldest
   retained event for a topic it has no file of; from the start of the current history
   if the topic's epoch changed), up to the topic's first live event: every event older
   than that one was published before the subscription (the live stream delivers
   everything after it, in order), so history and live meet exactly there, even while
   events are still on their way from the backend to the subscription. A topic that
   stays quiet for a second catches up from the whole history.
3. Then it follows the live subscription, each event judged against the newest one
   written of its topic (`_standing`): a duplicate is dropped, the next seq written, a
   hole or another epoch sends the topic back to the history first.
4. The subscription drops rather than disconnects when the disk is slower than the
   publishers (`drop-newest`); the `gap` it gets, like a backend's own `gap` or `reset`
   after an outage, sends every topic back to step 2. Events are lost only if the
   history no longer holds them, and then a `reset` line in the topic's segment says so.

A `reset` line is written when the history cannot cover what the archiver missed
(`_standing.previous_loss`, `epoch_loss`, and a trimmed history). Within a topic's
files, each epoch is one run of lines, in the order they happened (`_order`).

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

from .._event import Control, Event
from .._exceptions import BackendError, HubClosed
from .._hub import Hub
from .._subscription import Subscription
from .._topics import matches_any
from .._types import OverflowPolicy
from ._layout import archived_topics
from ._options import ArchiveOptions
from ._standing import NO_EPOCH, TRIMMED, Standing, epoch_loss, position, previous_loss
from ._writer import ArchiveWriter, Previous, RenderLines

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
TICK_S = 1.0
RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0
STOP_TIMEOUT_S = 10.0


class Archiver:
    """Writes the events of topics matching `patterns` to the archive at `root`. An async context manager.

    `render` gives an event's NDJSON line (`http.streams.encoders.NDJSONEncoder().download`).
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
        render: RenderLines,
        history_survives_restart: bool = True,
    ) -> None:
        if not patterns:
            raise ValueError("an archiver needs at least one topic pattern")
        self.hub = hub
        self.root = root
        self.patterns = list(patterns)
        self.options = options
        self.history_survives_restart = history_survives_restart
        self.writer = ArchiveWriter(root, options, render)
        #: Per topic: the newest event written (the seam between history and live), epochs left.
        self.standing = Standing()
        self.last = self.standing.last
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
        #: Live items taken from the subscription and not written yet (a write or read failed).
        self._held: list[Event | Control] = []
        self._written_upto = 0
        #: Topics caught up from the history since the subscription (or its last gap).
        self._caught: set[str] = set()
        #: When to catch up the topics that had no live event (None: all are caught up).
        self._scan_at: float | None = None
        #: Topics whose first catch-up must check what the previous run may have lost.
        self._check_previous: set[str] = set()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Repair the directory, subscribe live, and start following. Raises `ConfigError` (directory in use)."""
        previous = self._previous = await asyncio.to_thread(self.writer.open)
        for topic, newest in previous.last_ids.items():
            self.standing.written(topic, newest)
        self._check_previous = set(previous.last_ids)
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
        while True:
            try:
                if await self._follow():
                    break  # the subscription ended
                delay = RETRY_MIN_S
            except (BackendError, OSError) as exc:
                if self._stopping:
                    break
                self._caught.clear()  # catch every topic up again: the failure may have cost events
                wait = delay * random.uniform(0.8, 1.2)
                logger.warning("archiver: %s; catching up from history again in %.1fs", exc, wait)
                await asyncio.sleep(wait)
                delay = min(delay * 2, RETRY_MAX_S)
            except HubClosed:
                break
        try:
            if not self.hub.closed:
                # Nothing arrives live any more: the history alone holds what was published but
                # not delivered yet.
                for topic in await self._topics():
                    await self._catch_up(topic, None)
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

    async def _catch_up(self, topic: str, before: Event | None) -> None:
        """Write the retained history after the newest archived event (and before the live event `before`)."""
        self.catch_ups += 1
        checking_previous = topic in self._check_previous
        last = self.last.get(topic)
        previous = self._previous if checking_previous else None
        survives = self.history_survives_restart
        ttl_ms = int(self.hub.settings.history_ttl_s * 1000)
        loss = None if previous is None or last is None else previous_loss(previous, survives, ttl_ms)
        pages = self.hub.history_pages(topic, after=None if last is None else last[1], page_size=PAGE_SIZE)
        # Stopping early at `before` leaves the page iterator unfinished: it holds nothing but its position.
        page = await anext(pages)
        moved: str | None = None  # the epoch the topic moved to (set once the `reset` is written)
        # A loss already announced (a `reset` line after the newest archived event) is not announced again.
        announced = topic in self.standing.announced
        if last is not None and page.epoch is not None and page.epoch != last[0]:
            # Another history: what it holds is all new to the archive, from its oldest event.
            loss = loss or (None if announced else epoch_loss(previous, survives, last))
            moved = page.epoch
            pages = self.hub.history_pages(topic, page_size=PAGE_SIZE)
            page = await anext(pages)
        elif last is not None and page.epoch == last[0]:
            first = page.events[0].seq if page.events else page.last + 1
            if last[1] < page.last and first != last[1] + 1:
                loss = loss or TRIMMED
        elif last is not None and page.epoch is None and before is not None and before.epoch != last[0]:
            # The backend forgot the topic, yet an event of another epoch arrived: that epoch begins here.
            loss = loss or (None if announced else epoch_loss(previous, survives, last))
            moved = before.epoch
        if page.epoch is not None or loss is not None:
            # What the previous run may have lost is judged once the history can say (it may not
            # know the topic yet: a restarted memory server before the topic's first publish).
            self._check_previous.discard(topic)
        cut = before.seq if before is not None and before.epoch == page.epoch else None
        while True:
            items: list[Event | Control] = []
            if loss is not None:
                items.append(self._reset(topic, loss))
                loss = None
            events = page.events
            done = False
            if cut is not None and events and events[-1].seq >= cut:
                events = [e for e in events if e.seq < cut]
                done = True
            items.extend(events)
            if items:
                await self._write(topic, items)
            if moved is not None and last is not None:
                self.standing.move(topic, moved, last[0])  # once its `reset` is written
                moved = None
            if done:
                break
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                break
        self._caught.add(topic)
        self.standing.caught_up(topic, page.epoch)

    def _reset(self, topic: str, reason: str) -> Control:
        newest = self.standing.last_id.get(topic)
        logger.warning("archive reset on %s after %s: %s", topic, newest, reason)
        self.resets += 1
        return Control("reset", {"reason": reason, "last_event_id": newest, "topics": [topic]})

    async def _follow(self) -> bool:
        """Write live events, catching topics up on the way; True when the subscription ended.

        Raises what a write or a history read raises; the items not written yet are kept
        for the next call.
        """
        sub = self._sub
        assert sub is not None
        self._scan_at = time.monotonic() + TICK_S
        while True:
            try:
                async with asyncio.timeout(TICK_S):
                    await sub.wait()
            except TimeoutError:
                pass
            items, self._held = self._held + sub.drain(), []
            try:
                await self._write_live(items)
            except BaseException:
                self._held = items[self._written_upto :] + self._held
                raise
            if self._scan_at is not None and time.monotonic() >= self._scan_at:
                # Topics with no live event for a tick: nothing of theirs is on its way, the history is all.
                # Once every topic is caught up, new ones arrive live: no more listings until a gap.
                for topic in await self._topics():
                    if topic not in self._caught:
                        await self._catch_up(topic, None)
                self._scan_at = None
            if time.monotonic() >= self._next_tick:
                self._next_tick = time.monotonic() + TICK_S
                for path in await asyncio.to_thread(self.writer.tick):
                    self._to_compress.put_nowait(path)
            if sub.ended:
                return True

    async def _write_live(self, items: list[Event | Control]) -> None:
        """Write live items in order: per topic in one batch, a topic's catch-up before its first event."""
        batch: dict[str, list[Event | Control]] = {}
        newest: dict[str, tuple[str, int]] = {}
        standing = self.standing
        self._written_upto = 0

        async def flush(upto: int) -> None:
            for topic, topic_items in batch.items():
                await self._write(topic, topic_items, live=True)
            batch.clear()
            newest.clear()
            self._written_upto = upto

        for index, item in enumerate(items):
            if type(item) is Event:
                topic = item.topic
                previous = newest.get(topic) or self.last.get(topic)
                new = standing.verdict(item, previous)
                if new is None and standing.begins_epoch(item, previous, topic in self._caught):
                    new = True  # a new epoch, and nothing of the old one was lost: no `reset`
                if topic not in self._caught or new is None:
                    # Not caught up yet, or a hole or another epoch ahead of it: the history first.
                    await flush(index)
                    await self._catch_up(topic, item)
                    # After it, a hole left is one the history could not fill (its `reset` is written).
                    last = self.last.get(topic)
                    new = last is None or (item.epoch == last[0] and item.seq > last[1])
                if new:
                    newest[topic] = (item.epoch, item.seq)
                    batch.setdefault(topic, []).append(item)
                elif item.epoch != (newest.get(topic) or self.last.get(topic) or NO_EPOCH)[0]:
                    standing.left.setdefault(topic, set()).add(item.epoch)
                    logger.info("archiver: dropped %s, of a history %s has moved on from", item.id, topic)
            elif isinstance(item, Control) and item.kind in ("gap", "reset"):
                # Events were dropped or lost here: write what came before, then every topic catches up
                # again (from the history, up to its next live event).
                await flush(index + 1)
                self._caught.clear()
                self._scan_at = time.monotonic() + TICK_S
                logger.info("archiver: the live subscription announced %s; catching up from history", item.kind)
        await flush(len(items))

    async def _write(self, topic: str, items: list[Event | Control], *, live: bool = False) -> None:
        try:
            closed = await asyncio.to_thread(self.writer.write, topic, items)
        except OSError:
            # The files were repaired to whole lines: what they hold of this batch counts as written.
            newest = await asyncio.to_thread(self.writer.newest_id, topic)
            if newest is not None:
                epoch, seq = position(newest)
                self.written += sum(1 for i in items if type(i) is Event and i.epoch == epoch and i.seq <= seq)
            self.standing.written(topic, newest)
            self.standing.announced.discard(topic)
            raise
        events = [i for i in items if type(i) is Event]
        self.written += len(events)
        if events:
            self.standing.written(topic, events[-1].id, live=live)
        if type(items[-1]) is Control:
            self.standing.announced.add(topic)
        for path in closed:
            self._to_compress.put_nowait(path)

    async def _compress_loop(self) -> None:
        while True:
            path = await self._to_compress.get()
            try:
                await asyncio.to_thread(self.writer.compress, path)
            except OSError as exc:
                logger.error("could not compress %s: %s", path, exc)
