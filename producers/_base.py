"""What producers and targets share: the `Producer` protocol and the `Target` base class.

A producer is anything with `async def run(self, publish: Publish) -> None`; it
calls `await publish(topic, data)` with serialised JSON and never knows where the
events go. A target is such a `publish`: `HttpTarget` and `RedisTarget` both
derive from `Target`, which owns

- a bounded buffer between the producer and the network: when it is full,
  `publish()` waits (`overflow="block"`) or drops the event and counts it
  (`overflow="drop"`);
- one sender task that takes runs of buffered events of one topic as batches;
- retries with jittered exponential backoff (`Backoff`), given up after
  `retry_for_s` seconds without progress, with an error naming the target and
  the cause.

A target is an async context manager; leaving the block delivers what is
buffered (within `close_timeout_s`) and raises the target's failure, if any.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
from collections import deque
from dataclasses import dataclass
from typing import Protocol, Self

from broadcaster import (
    DEFAULT_EVENT_TYPE,
    DEFAULT_MAX_EVENT_BYTES,
    InvalidEventData,
    InvalidEventType,
    InvalidTopic,
    Publish,
    check_data,
    redact_url,
    validate_topic,
    validate_type,
)

from ._exceptions import InvalidData, ProducerError, TargetClosed, TargetConfigError, TargetUnavailable

logger = logging.getLogger(__name__)


DEFAULT_BUFFER = 10_000
DEFAULT_BATCH = 1000
DEFAULT_LINGER_S = 0.005
DEFAULT_RETRY_FOR_S = 30.0
DEFAULT_BACKOFF_MIN_S = 0.05
DEFAULT_BACKOFF_MAX_S = 2.0
DEFAULT_CLOSE_TIMEOUT_S = 10.0
#: How long leaving the block of a cancelled producer (Ctrl-C) may take to deliver what is buffered.
CANCEL_CLOSE_TIMEOUT_S = 1.0


class Producer(Protocol):
    """An event source: publishes until done (or forever) and stops promptly when cancelled."""

    async def run(self, publish: Publish) -> None: ...


class Overflow(enum.StrEnum):
    """What `publish()` does when a target's buffer is full."""

    #: Wait for room: the producer slows down to the target's pace (nothing lost).
    BLOCK = "block"
    #: Drop the new event and count it in `stats.dropped` (the producer never waits).
    DROP = "drop"


@dataclass(slots=True)
class TargetStats:
    """What a target did with the events it was given."""

    #: Events the target confirmed (HTTP: accepted by the server; Redis: stored and published).
    sent: int = 0
    #: Events the server refused, line by line (HTTP only: see the server's ingest report).
    rejected: int = 0
    #: Events dropped: buffer full under `overflow="drop"`, or still undelivered when the target closed.
    dropped: int = 0
    #: Attempts that failed and were retried.
    retries: int = 0


#: `url` with its credentials hidden, for messages and logs (the server's own helper).
safe_url = redact_url


class Backoff:
    """Jittered exponential backoff with a budget: `wait()` sleeps, or raises once `budget_s` has passed."""

    def __init__(
        self,
        budget_s: float,
        min_s: float = DEFAULT_BACKOFF_MIN_S,
        max_s: float = DEFAULT_BACKOFF_MAX_S,
        stats: TargetStats | None = None,
    ) -> None:
        self.budget_s = budget_s
        self.min_s = min_s
        self.max_s = max_s
        self.stats = stats
        self.attempts = 0
        self._first_failure: float | None = None
        self._delay = min_s

    def reset(self) -> None:
        """Progress was made: the next failure starts a new budget."""
        self.attempts = 0
        self._first_failure = None
        self._delay = self.min_s

    async def wait(self, cause: str) -> None:
        """After a failed attempt: sleep before the next, or raise `TargetUnavailable(cause)` when out of budget."""
        now = time.monotonic()
        if self._first_failure is None:
            self._first_failure = now
            logger.warning("%s; retrying for up to %.0fs", cause, self.budget_s)
        self.attempts += 1
        elapsed = now - self._first_failure
        if elapsed >= self.budget_s:
            raise TargetUnavailable(f"{cause} (gave up after {self.attempts} attempts in {elapsed:.1f}s)")
        if self.stats is not None:
            self.stats.retries += 1
        # Jitter: producers that lost the same server must not all come back at the same instant.
        delay = min(self._delay * random.uniform(0.5, 1.5), self.budget_s - elapsed)
        self._delay = min(self._delay * 2, self.max_s)
        await asyncio.sleep(max(delay, 0.0))


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class Target:
    """Base of the targets: bounded buffer, one sender task, retries. Use as an async context manager.

    Subclasses implement `_send()` (the sender loop, built on `_next_topic`, `_wait_for`,
    `_take`, `_done`) and may override `_open()`/`_close()` for their connections.
    """

    name = "target"

    def __init__(
        self,
        *,
        type: str = DEFAULT_EVENT_TYPE,
        buffer: int = DEFAULT_BUFFER,
        overflow: Overflow | str = Overflow.BLOCK,
        batch: int = DEFAULT_BATCH,
        linger_s: float = DEFAULT_LINGER_S,
        retry_for_s: float = DEFAULT_RETRY_FOR_S,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
        close_timeout_s: float = DEFAULT_CLOSE_TIMEOUT_S,
    ) -> None:
        try:
            self.overflow = Overflow(overflow)
        except ValueError:
            raise TargetConfigError(f"overflow must be block or drop, got {overflow!r}") from None
        for name, count in (("buffer", buffer), ("batch", batch), ("max_event_bytes", max_event_bytes)):
            if count < 1:
                raise TargetConfigError(f"{name} must be at least 1, got {count}")
        for name, seconds in (
            ("linger_s", linger_s),
            ("retry_for_s", retry_for_s),
            ("close_timeout_s", close_timeout_s),
        ):
            if not 0 <= seconds < math.inf:
                raise TargetConfigError(f"{name} must be a finite number, at least 0, got {seconds}")
        if type != DEFAULT_EVENT_TYPE:
            try:
                validate_type(type)
            except InvalidEventType as exc:
                raise TargetConfigError(str(exc)) from None
        self.type = type
        self.buffer = buffer
        self.batch = batch
        self.linger_s = linger_s
        self.retry_for_s = retry_for_s
        self.max_event_bytes = max_event_bytes
        self.close_timeout_s = close_timeout_s
        self.stats = TargetStats()
        self._queue: deque[tuple[str, bytes]] = deque()
        self._inflight = 0
        self._ready = asyncio.Event()  # queue not empty, or closing / flushing: the sender should look
        self._space = asyncio.Event()  # the queue has room
        self._space.set()
        self._idle = asyncio.Event()  # nothing queued, nothing in flight
        self._idle.set()
        self._flushing = 0
        self._closing = False
        self._state = _State.UNOPENED
        self._sender: asyncio.Task[None] | None = None
        self._failure: ProducerError | None = None
        self._topics: set[str] = set()
        self._warned_drop = False

    # -- lifecycle -------------------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._state is not _State.UNOPENED:
            raise TargetClosed(f"{self.name} cannot be reopened; create a new one")
        await self._open()
        self._state = _State.OPENED
        self._sender = asyncio.create_task(self._run_sender(), name=f"producers-{self.name}-sender")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc_info: object) -> None:
        if exc_type is None:
            await self.aclose()
            return
        # Leaving on an error or a cancellation (Ctrl-C): deliver briefly, never mask the original exception.
        try:
            await self.aclose(timeout_s=min(self.close_timeout_s, CANCEL_CLOSE_TIMEOUT_S))
        except ProducerError as exc:
            logger.warning("%s closed with an error: %s", self.name, exc)

    async def aclose(self, *, timeout_s: float | None = None) -> None:
        """Deliver what is buffered (within `close_timeout_s`), stop the sender, close connections. Idempotent.

        Raises the target's failure (`TargetUnavailable`, `TargetRejected`) if delivery failed;
        events still undelivered at the deadline are counted in `stats.dropped`.
        """
        if self._state is _State.CLOSED:
            return
        opened = self._state is _State.OPENED
        self._state = _State.CLOSED
        self._closing = True
        self._wake()
        self._space.set()  # publishers waiting for room see the target closed
        sender = self._sender
        try:
            if sender is not None:
                done, _ = await asyncio.wait({sender}, timeout=self.close_timeout_s if timeout_s is None else timeout_s)
                if not done:
                    sender.cancel()
                    await asyncio.wait({sender})
                    lost = len(self._queue) + self._inflight
                    if lost and self._failure is None:
                        self._failure = TargetUnavailable(
                            f"{self.name}: {lost} events were still undelivered when the target closed"
                        )
        finally:
            self.stats.dropped += len(self._queue) + self._inflight
            self._queue.clear()
            self._inflight = 0
            if opened:
                await self._close()
        if self._failure is not None:
            raise self._failure

    async def _open(self) -> None:
        """Open connections (subclasses)."""

    async def _close(self) -> None:
        """Close connections (subclasses); called once, after the sender stopped."""

    async def _send(self) -> None:
        raise NotImplementedError

    async def _run_sender(self) -> None:
        try:
            await self._send()
        except ProducerError as exc:
            self._fail(exc)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception("%s: the sender stopped", self.name)
            self._fail(ProducerError(f"{self.name}: the sender stopped: {exc!r}"))

    def _fail(self, exc: ProducerError) -> None:
        self._failure = exc
        self._space.set()
        self._idle.set()

    # -- the producer's side ---------------------------------------------------------------

    async def publish(self, topic: str, data: bytes) -> None:
        """Buffer one event (serialised JSON on one line) for `topic`; this is a `Publish` callable.

        Raises `InvalidData` for data or a topic no server would take, the target's failure
        once it failed, `TargetClosed` after `aclose()`. Waits for room or drops, by `overflow`.
        """
        if self._failure is not None:
            raise self._failure
        if self._state is not _State.OPENED:
            raise TargetClosed(f"{self.name} is {'closed' if self._state is _State.CLOSED else 'not started'}")
        if topic not in self._topics:
            try:
                validate_topic(topic)
            except InvalidTopic as exc:
                raise InvalidData(str(exc)) from None
            if len(self._topics) < 1024:
                self._topics.add(topic)
        try:
            check_data(data, self.max_event_bytes)
        except InvalidEventData as exc:
            raise InvalidData(str(exc)) from None
        queue = self._queue
        while len(queue) >= self.buffer:
            if self.overflow is Overflow.DROP:
                self.stats.dropped += 1
                if not self._warned_drop:
                    self._warned_drop = True
                    logger.warning("%s cannot keep up: dropping events (counted in stats.dropped)", self.name)
                return
            self._space.clear()
            await self._space.wait()
            if self._failure is not None:
                raise self._failure
            if self._state is not _State.OPENED:
                raise TargetClosed(f"{self.name} was closed while publish() waited for room")
        queue.append((topic, data))
        self._idle.clear()
        self._ready.set()

    async def flush(self) -> None:
        """Wait until everything published so far is delivered; raise the target's failure if it failed."""
        self._flushing += 1
        self._wake()
        try:
            await self._idle.wait()
        finally:
            self._flushing -= 1
        if self._failure is not None:
            raise self._failure

    # -- the sender's side -----------------------------------------------------------------

    def _wake(self) -> None:
        self._ready.set()

    @property
    def _ending(self) -> bool:
        """The sender should not wait for more events: closing or someone waits in `flush()`."""
        return self._closing or self._flushing > 0

    async def _next_topic(self) -> str | None:
        """The topic of the next buffered event, waiting for one; None when closing with nothing left."""
        while not self._queue:
            if self._closing:
                return None
            self._ready.clear()
            await self._ready.wait()
        return self._queue[0][0]

    async def _wait_for(self, topic: str, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for an event of `topic` at the head of the buffer.

        False if the time passed, another topic is next, or the target is ending with nothing buffered.
        """
        if not self._queue:
            if self._ending:
                return False
            self._ready.clear()
            try:
                async with asyncio.timeout(timeout_s):
                    while not self._queue and not self._ending:
                        await self._ready.wait()
                        self._ready.clear()
            except TimeoutError:
                return False
            if not self._queue:
                return False
        await self._linger()
        return self._queue[0][0] == topic

    async def _linger(self) -> None:
        """Give a few more events `linger_s` to join a batch that is not full yet."""
        if self.linger_s > 0 and len(self._queue) < self.batch and not self._ending:
            await asyncio.sleep(self.linger_s)

    def _take(self, topic: str, limit: int) -> list[bytes]:
        """Up to `limit` buffered events of `topic`, from the head; they are in flight until `_done()`."""
        queue = self._queue
        taken: list[bytes] = []
        while queue and len(taken) < limit and queue[0][0] == topic:
            taken.append(queue.popleft()[1])
        self._inflight += len(taken)
        if len(queue) < self.buffer:
            self._space.set()
        return taken

    def _done(self, count: int) -> None:
        """`count` in-flight events were answered for (delivered or rejected)."""
        self._inflight -= count
        if not self._queue and self._inflight == 0:
            self._idle.set()
