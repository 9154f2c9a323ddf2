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
3. Then it follows the live subscription. Ids are `<tag>.<epoch>.<seq>` with seqs
   gapless within an epoch, so each live event is checked against the newest written:
   same epoch and seq up to it, a duplicate (dropped); the next seq, written; a later
   seq (a hole) or another epoch (the history was lost or replaced), the topic catches
   up again before it. An event of an epoch the archive already left (late from the
   old history) is dropped: the `reset` line written when the epoch changed covers it.
4. The subscription drops rather than disconnects when the disk is slower than the
   publishers (`drop-newest`); the `gap` it gets, like a backend's own `gap` or `reset`
   after an outage, sends every topic back to step 2. Events are lost only if the
   history no longer holds them, and then a `reset` line in the topic's segment says so.

A `reset` line is written when the history cannot cover what the archiver missed:
the history was trimmed past the newest archived event, the topic's history was lost
or replaced (another epoch: Redis restarted empty or was replaced), the archiver was
stopped longer than the history's ttl, or the history does not survive a restart (the
memory backend) and the previous run did not stop cleanly. (A memory-backend server
that stopped cleanly starts new epochs with nothing lost: no `reset`.) Within a topic's
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
from .._ids import Position
from .._subscription import Subscription
from .._topics import matches_any
from .._types import OverflowPolicy
from ._layout import archived_topics
from ._options import ArchiveOptions
from ._order import LEGACY, id_parts
from ._writer import ArchiveWriter, Previous, RenderLines, now_ms

logger = logging.getLogger(__name__)

PAGE_SIZE = 1000
TICK_S = 1.0
RETRY_MIN_S = 0.1
RETRY_MAX_S = 5.0
STOP_TIMEOUT_S = 10.0

_TRIMMED = "the history was trimmed past the newest archived event"
_LOST = "the topic's history was lost or replaced (another epoch) after the newest archived event"
_LEGACY = "the newest archived event has an id of an older server version: the history cannot be matched"


def _position(event_id: str) -> Position:
    """The (epoch, seq) of an archived id; an id before 0.2 matches no epoch of a current history."""
    parts = id_parts(event_id)
    return ("", 0) if parts is None or parts[0] == LEGACY else (parts[0], parts[1])


class Archiver:
    """Writes the events of topics matching `patterns` to the archive at `root`. An async context manager.

    `render` gives an event's NDJSON line (`http.encoders.NDJSONEncoder().download`).
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
        #: Per topic: the (epoch, seq) of the newest event written (the seam between history and live).
        self.last: dict[str, Position] = {}
        #: Per topic: epochs the archive moved on from in this run (their late live events are dropped).
        self._left: dict[str, set[str]] = {}
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
        #: Live items taken from the subscription and not written yet (a write or read failed).
        self._held: list[Event | Control] = []
        self._written_upto = 0
        #: Topics caught up from the history since the subscription (or its last gap).
        self._caught: set[str] = set()
        #: Caught-up topics whose newest archived event is of the epoch the history was in at the catch-up.
        self._synced: set[str] = set()
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
            self._set_last(topic, newest)
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

    def _epoch_loss(self, topic: str, checking_previous: bool) -> str | None:
        """Why the events after the newest archived one may be lost, now that the topic's epoch changed."""
        previous = self._previous
        if checking_previous and previous is not None and previous.clean and not self.history_survives_restart:
            return None  # the history died with a process whose archiver had written all of it
        if self.last.get(topic, ("", 0))[0] == "":
            return _LEGACY
        return _LOST

    async def _catch_up(self, topic: str, before: Event | None) -> None:
        """Write the retained history after the newest archived event (and before the live event `before`)."""
        self.catch_ups += 1
        checking_previous = topic in self._check_previous
        loss = self._previous_loss(topic) if checking_previous else None
        self._check_previous.discard(topic)
        last = self.last.get(topic)
        pages = self.hub.history_pages(topic, after=None if last is None else last[1], page_size=PAGE_SIZE)
        # Stopping early at `before` leaves the page iterator unfinished: it holds nothing but its position.
        page = await anext(pages)
        moved: str | None = None  # the epoch the topic moved to (set once the `reset` is written)
        if last is not None and page.epoch is not None and page.epoch != last[0]:
            # Another history: what it holds is all new to the archive, from its oldest event.
            loss = loss or self._epoch_loss(topic, checking_previous)
            moved = page.epoch
            pages = self.hub.history_pages(topic, page_size=PAGE_SIZE)
            page = await anext(pages)
        elif last is not None and page.epoch == last[0]:
            first = page.events[0].seq if page.events else page.last + 1
            if last[1] < page.last and first != last[1] + 1:
                loss = loss or _TRIMMED
        elif last is not None and page.epoch is None and before is not None and before.epoch != last[0]:
            # The backend forgot the topic, yet an event of another epoch arrived: that epoch begins here.
            loss = loss or self._epoch_loss(topic, checking_previous)
            moved = before.epoch
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
                self._left.setdefault(topic, set()).add(last[0])
                if self.last.get(topic, ("", 0))[0] != moved:
                    self.last[topic] = (moved, 0)  # nothing of it written yet: it starts at its first event
                moved = None
            if done:
                break
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                break
        self._caught.add(topic)
        newest = self.last.get(topic)
        if page.epoch is not None and (newest is None or newest[0] == page.epoch):
            self._synced.add(topic)
        else:
            self._synced.discard(topic)

    def _reset(self, topic: str, reason: str) -> Control:
        newest = self._last_text.get(topic)
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

    def _is_new(self, event: Event, newest: Position | None) -> bool | None:
        """Whether to write a live event after `newest`: True, False (a duplicate or late), None (catch up first)."""
        if newest is None:
            return True
        epoch, seq = newest
        if event.epoch == epoch:
            return None if event.seq > seq + 1 else event.seq > seq
        return False if event.epoch in self._left.get(event.topic, ()) else None

    async def _write_live(self, items: list[Event | Control]) -> None:
        """Write live items in order: per topic in one batch, a topic's catch-up before its first event."""
        batch: dict[str, list[Event | Control]] = {}
        newest: dict[str, Position] = {}
        self._written_upto = 0

        async def flush(upto: int) -> None:
            for topic, topic_items in batch.items():
                await self._write(topic, topic_items)
            batch.clear()
            newest.clear()
            self._written_upto = upto

        for index, item in enumerate(items):
            if type(item) is Event:
                topic = item.topic
                previous = newest.get(topic) or self.last.get(topic)
                new = self._is_new(item, previous)
                if new is None and item.seq == 1 and topic in self._caught and topic in self._synced:
                    # A new epoch began while the subscription ran without a gap since the history was
                    # read in the previous one: all of that one came live (a topic idle past the meta's
                    # expiry, a flushed Redis that was not restarted). Nothing was lost, no `reset`.
                    assert previous is not None
                    self._left.setdefault(topic, set()).add(previous[0])
                    new = True
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
                elif item.epoch != (newest.get(topic) or self.last.get(topic) or ("", 0))[0]:
                    self._left.setdefault(topic, set()).add(item.epoch)
                    logger.info("archiver: dropped %s, of a history %s has moved on from", item.id, topic)
            elif isinstance(item, Control) and item.kind in ("gap", "reset"):
                # Events were dropped or lost here: write what came before, then every topic catches up
                # again (from the history, up to its next live event).
                await flush(index + 1)
                self._caught.clear()
                self._scan_at = time.monotonic() + TICK_S
                logger.info("archiver: the live subscription announced %s; catching up from history", item.kind)
        await flush(len(items))

    async def _write(self, topic: str, items: list[Event | Control]) -> None:
        try:
            closed = await asyncio.to_thread(self.writer.write, topic, items)
        except OSError:
            # The files were repaired to whole lines: what they hold of this batch counts as written.
            newest = await asyncio.to_thread(self.writer.newest_id, topic)
            if newest is not None:
                epoch, seq = _position(newest)
                self.written += sum(1 for i in items if type(i) is Event and i.epoch == epoch and i.seq <= seq)
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
            self.last[topic] = _position(event_id)
            self._last_text[topic] = event_id

    async def _compress_loop(self) -> None:
        while True:
            path = await self._to_compress.get()
            try:
                await asyncio.to_thread(self.writer.compress, path)
            except OSError as exc:
                logger.error("could not compress %s: %s", path, exc)
