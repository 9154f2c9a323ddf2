"""`Subscriber`: a stream that resumes by itself, backs off politely and notices a dead connection.

One connection at a time, read only while the consumer asks for the next item:
a slow consumer makes the client stop reading, so the server's overflow policy
applies (and its `gap` reaches the consumer) while the client holds no more
than one socket read of decoded messages.

Across reconnects the stream resumes with `Last-Event-ID` set to its position
(`_position`: the last event's id on a single-topic stream, the stream's cursor
on a multi-topic one), so every event of every topic is yielded once while the
server's history reaches back; an event that comes again all the same (a seq not
above the last one yielded of its topic and epoch) is dropped. A multi-topic
stream opened without a resume point asks for `?tail=0`, so that its `live`
message tells the stream's base (the `Live` is not yielded: nobody asked for it).

A dead connection (a server that stopped, a half-open socket) sends nothing:
no byte within `heartbeat_timeout` closes it and reconnects. Without a value
given, the timeout is learned from the server's keepalives (twice the silence
seen before one, plus a second), starting from `DEFAULT_HEARTBEAT_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Sequence

import httpx

from .._topics import validate_selector
from ._errors import ProtocolError, ServerUnavailable
from ._http import Token, TokenSource, headers, is_final, read_bounded, refusal
from ._messages import TOKEN_EXPIRED, Event, Fault, Item, Live, Reset, Shutdown, parse_message
from ._position import StreamPosition, is_multi
from ._retry import Retry, hint_s, retry_after_s
from ._wire import KEEPALIVE, Decoder, Frame, decoder_for

logger = logging.getLogger("broadcaster.client")

DEFAULT_TIMEOUT_S = 10.0
#: The dead-connection timeout before a keepalive was seen: four of the server's default 15 s heartbeats.
DEFAULT_HEARTBEAT_TIMEOUT_S = 60.0
#: A read that waited this long got bytes as they arrived (not from a backlog): its timing means something.
_BLOCKED_S = 0.01
#: A keepalive after less silence than this says nothing about the server's interval (it came with other bytes).
_MIN_SILENCE_S = 0.05
_MEDIA_TYPES = {"ndjson": "application/x-ndjson", "sse": "text/event-stream"}


class _State(enum.Enum):
    UNOPENED = 1
    OPENED = 2
    CLOSED = 3


class _DeadConnection(Exception):
    pass


class _Closed(Exception):
    """`aclose()` was called by another task while this one waited to reconnect."""


#: `Reset.reason` of the notice the client itself yields (its `fields` have `"source": "client"`).
NO_POSITION = "reconnected before any event was received, so without a resume point: events may have been missed"


def _no_position(topics: tuple[str, ...]) -> Reset:
    """The client's own `Reset`: a stream reopened with no event id to resume from cannot replay the gap."""
    fields = {"reason": NO_POSITION, "topics": list(topics), "source": "client"}
    return Reset("reset", fields, NO_POSITION, None, topics)


class Subscriber:
    """Subscribe to `topics` (a topic, a pattern with `*`, or a list of them) on the server at `url`.

    An async context manager and async iterator: entering opens the stream (so
    that events published afterwards are delivered) and iterating yields
    `Event`s and control messages (`Gap`, `Reset`, `Live`, `Shutdown`, `Fault`,
    or `Control` for a name this client does not know). Keepalives are not
    yielded. It reconnects by itself; `reconnects` counts the times it did, and
    `last_event_id` is the position to persist and to pass back as
    `last_event_id` to resume: the id of the last event yielded on a
    single-topic stream, the stream's cursor (`<base_ms>~<id>,<id>,...`, one id
    per topic) on a multi-topic one. `Event.id` is always the event's own id.

    - `format`: `ndjson` or `sse`, the wire format (both yield the same objects).
    - `last_event_id`: resume from this position (an event id, or a cursor of a
      multi-topic stream); `tail`: start with the last N retained events (when
      there is no resume point).
    - `queue`, `overflow`: the stream's `?queue=` and `?overflow=` on the server.
    - `token`: a string, or a callable (sync or async) returning one; it is
      called again once on a 401 and when a stream ends with `token_expired`.
    - `heartbeat_timeout`: seconds without a byte after which the connection is
      presumed dead (default: learned from the server's keepalives).
    - `retry`: the backoff (`Retry`); `timeout`: seconds to connect and get the answer's head.

    Raises `RequestRefused` (`Unauthorized`, `Forbidden`) for a 4xx that
    retrying will not change, from `async with` or from the iteration;
    `ServerUnavailable` once `retry.give_up_after_s` passed without a stream;
    `ProtocolError` if the answer is not a stream. Leaving the block (or
    `aclose()`, from any task) closes the connection and ends an iteration in
    progress. Iterate from one task at a time.
    """

    def __init__(
        self,
        url: str,
        topics: str | Sequence[str],
        *,
        format: str = "ndjson",
        last_event_id: str | None = None,
        tail: int | None = None,
        queue: int | None = None,
        overflow: str | None = None,
        token: TokenSource | None = None,
        heartbeat_timeout: float | None = None,
        retry: Retry | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
    ) -> None:
        selectors = [topics] if isinstance(topics, str) else list(topics)
        if not selectors:
            raise ValueError("name at least one topic or pattern")
        for selector in selectors:
            validate_selector(selector)
        if format not in _MEDIA_TYPES:
            raise ValueError(f"format must be 'ndjson' or 'sse', got {format!r}")
        if last_event_id is not None and (not last_event_id or any(c in last_event_id for c in "\r\n\0")):
            raise ValueError(f"last_event_id must be a non-empty id without CR, LF or NUL, got {last_event_id!r}")
        if heartbeat_timeout is not None and not heartbeat_timeout > 0:
            raise ValueError(f"heartbeat_timeout must be a positive number of seconds, got {heartbeat_timeout!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.url = url.rstrip("/")
        self.topics = tuple(dict.fromkeys(selectors))
        self.format = format
        self._position = StreamPosition(is_multi(self.topics), last_event_id)
        self._ask_base = False  # this connection asked `?tail=0` to learn the base: its `live` is not yielded
        self.tail = tail
        self.queue = queue
        self.overflow = overflow
        self.retry = retry or Retry()
        self.timeout = timeout
        #: How many times the stream was opened again after the first time.
        self.reconnects = 0
        #: Whether a stream is open right now.
        self.connected = False
        self._token = Token(token)
        self._heartbeat_timeout = heartbeat_timeout
        self._learned_heartbeat_s: float | None = None
        self._retry_hint_ms: int | None = None  # the SSE `retry:` field of the last stream
        self._failures = 0  # attempts in a row that delivered nothing
        self._failing_since: float | None = None
        self._state = _State.UNOPENED
        self._client: httpx.AsyncClient | None = None
        self._response: httpx.Response | None = None
        self._items: AsyncGenerator[Item, None] | None = None
        self._streams = 0  # streams opened so far
        self._iterating = False  # a task is inside __anext__
        self._closing = asyncio.Event()

    @property
    def last_event_id(self) -> str | None:
        """The position to persist and resume from (see the class); None before there is one."""
        return self._position.value

    @property
    def heartbeat_timeout(self) -> float:
        """Seconds without a byte after which the connection is presumed dead (given, or learned)."""
        if self._heartbeat_timeout is not None:
            return self._heartbeat_timeout
        if self._learned_heartbeat_s is None:
            return DEFAULT_HEARTBEAT_TIMEOUT_S
        return 2 * self._learned_heartbeat_s + 1.0

    async def __aenter__(self) -> Subscriber:
        if self._state is not _State.UNOPENED:
            raise RuntimeError("a Subscriber can be entered once; make a new one")
        self._state = _State.OPENED
        # No read timeout here: the heartbeat timeout bounds every read instead.
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout, read=None))
        try:
            self._response = await self._connect(0.0, None)
        except BaseException:
            await self.aclose()
            raise
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the stream and the connection. Idempotent."""
        if self._state is _State.CLOSED:
            return
        self._state = _State.CLOSED
        self._closing.set()
        items, self._items = self._items, None
        try:
            # Iterated by another task right now: closing the connection below ends that iteration.
            if items is not None and not self._iterating:
                await items.aclose()
        finally:
            response, self._response = self._response, None
            if response is not None:
                await response.aclose()
            self.connected = False
            if self._client is not None:
                await self._client.aclose()

    def _closed(self) -> bool:
        return self._state is _State.CLOSED

    def __aiter__(self) -> Subscriber:
        return self

    async def __anext__(self) -> Item:
        if self._state is _State.UNOPENED:
            raise RuntimeError("use `async with Subscriber(...) as sub:` before iterating")
        if self._state is _State.CLOSED:
            raise StopAsyncIteration
        if self._items is None:
            self._items = self._run()
        self._iterating = True
        try:
            return await anext(self._items)
        finally:
            self._iterating = False

    # -- the connection loop -----------------------------------------------------------------------

    async def _run(self) -> AsyncGenerator[Item, None]:
        while True:
            response = self._response
            assert response is not None
            decoder = decoder_for(self.format)
            end: Shutdown | Fault | None = None
            try:
                async for item, frame_id in self._read(response, decoder):
                    if isinstance(item, Event):
                        if not self._position.first_time(item, frame_id):
                            continue
                    elif isinstance(item, Live):
                        self._position.live(item)
                        if self._ask_base:
                            self._ask_base = False
                            continue
                    elif isinstance(item, Reset):
                        item = self._position.reset(item)  # a new history: its seqs start again
                    elif isinstance(item, Shutdown | Fault):
                        end = item
                    yield item
                cause = "the server ended the stream" + (f" ({end.reason or end.name})" if end else "")
            except httpx.TransportError as exc:
                cause = f"connection lost ({type(exc).__name__})"
            except _DeadConnection as exc:
                cause = str(exc)
            except Exception:
                if self._closed():
                    return  # closed by another task in the middle of a read
                raise
            finally:
                self._response = None
                self.connected = False
                await response.aclose()
            if self._closed():
                return
            if decoder.retry_ms is not None:
                self._retry_hint_ms = decoder.retry_ms
            try:
                self._response = await self._connect(await self._delay_after(end), cause)
            except _Closed:
                return
            if self.last_event_id is None:
                yield _no_position(self.topics)

    async def _delay_after(self, end: Shutdown | Fault | None) -> float:
        """The wait before reconnecting after a stream ended with `end` (None: it broke or just ended)."""
        if isinstance(end, Shutdown):
            hint = hint_s(end.retry_ms)
            if hint is not None:
                return hint
        elif isinstance(end, Fault) and end.reason == TOKEN_EXPIRED and await self._token.refresh():
            return 0.0
        return self._backoff()

    def _backoff(self) -> float:
        floor = hint_s(self._retry_hint_ms) or 0.0
        delay = self.retry.backoff_s(self._failures, floor)
        self._failures += 1
        return delay

    async def _connect(self, delay: float, cause: str | None) -> httpx.Response:
        """Open the stream, retrying transient failures; raise `RequestRefused` for a final 4xx."""
        refreshed = False
        while True:
            if delay > 0:
                logger.warning(
                    "%s; reconnecting in %.1fs",
                    cause or "reconnecting",
                    delay,
                    extra={"url": self.url, "delay_s": delay},
                )
                with contextlib.suppress(TimeoutError):  # a wait that `aclose()` cuts short
                    async with asyncio.timeout(delay):
                        await self._closing.wait()
            if self._closed():
                raise _Closed
            try:
                response = await self._open()
            except Exception as exc:
                if self._closed():
                    raise _Closed from None
                if not isinstance(exc, httpx.TransportError | TimeoutError):
                    raise
                cause = f"cannot connect to {self.url} ({type(exc).__name__})"
                delay = self._failed(cause, None)
                continue
            status = response.status_code
            if status == 200:
                await self._check_media_type(response)
                self._failing_since = None
                self._streams += 1
                self.reconnects = self._streams - 1
                self.connected = True
                logger.info(
                    "stream open on %s (reconnects: %d)",
                    self.url,
                    self.reconnects,
                    extra={"url": self.url, "reconnects": self.reconnects},
                )
                return response
            body = await read_bounded(response)
            await response.aclose()
            if status == 401 and not refreshed and await self._token.refresh():
                refreshed, delay = True, 0.0
                continue
            error = refusal(self.url, response, body)
            if is_final(status):
                raise error
            cause = f"{status} {error.code}: {error.message}"
            delay = self._failed(cause, retry_after_s(response.headers.get("retry-after")))

    def _failed(self, cause: str, hint: float | None) -> float:
        """Count a failed attempt; the wait before the next one, or `ServerUnavailable` past the budget."""
        now = time.monotonic()
        if self._failing_since is None:
            self._failing_since = now
        budget = self.retry.give_up_after_s
        if budget is not None and now - self._failing_since >= budget:
            raise ServerUnavailable(f"{cause}; gave up after {now - self._failing_since:.1f}s")
        if hint is not None:
            self._failures += 1
            return hint
        return self._backoff()

    async def _open(self) -> httpx.Response:
        assert self._client is not None
        request_headers = headers(await self._token.get(), _MEDIA_TYPES[self.format])
        request_headers["Cache-Control"] = "no-cache"
        params: list[tuple[str, str | int | float | bool | None]] = [("topic", t) for t in self.topics]
        params.append(("format", self.format))
        self._ask_base = False
        if self.last_event_id is not None:
            request_headers["Last-Event-ID"] = self.last_event_id
        elif self.tail is not None:
            params.append(("tail", str(self.tail)))
        elif self._position.multi:
            params.append(("tail", "0"))  # for the `live` message and its cursor's base
            self._ask_base = True
        if self.queue is not None:
            params.append(("queue", str(self.queue)))
        if self.overflow is not None:
            params.append(("overflow", str(self.overflow)))
        request = self._client.build_request("GET", self.url + "/events", params=params, headers=request_headers)
        async with asyncio.timeout(self.timeout):
            return await self._client.send(request, stream=True)

    async def _check_media_type(self, response: httpx.Response) -> None:
        media_type = response.headers.get("content-type", "").partition(";")[0].strip()
        if media_type != _MEDIA_TYPES[self.format]:
            await response.aclose()
            raise ProtocolError(f"{self.url} answered 200 with {media_type or 'no content type'}, not a stream")

    async def _read(self, response: httpx.Response, decoder: Decoder) -> AsyncIterator[tuple[Item, str | None]]:
        """The items of one stream with their SSE `id:`; `_DeadConnection` when no byte came in heartbeat_timeout."""
        loop = asyncio.get_running_loop()
        chunks = response.aiter_raw()
        previous_at = loop.time()
        fresh = True  # the last chunk arrived while we waited for it (not from a backlog)
        delivered = False
        while True:
            timeout = self.heartbeat_timeout
            started = loop.time()
            try:
                async with asyncio.timeout(timeout):
                    chunk = await anext(chunks)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise _DeadConnection(
                    f"no byte for {timeout:.1f}s (heartbeat_timeout): the connection is presumed dead"
                ) from None
            now = loop.time()
            try:
                messages = decoder.feed(chunk)
            except ProtocolError as exc:
                raise ProtocolError(f"{self.url}: {exc}") from None
            if messages and not delivered:
                delivered = True
                self._failures = 0
            if messages and all(m is KEEPALIVE for m in messages):
                self._learn(now - previous_at, now - started, fresh)
            fresh = fresh or now - started >= _BLOCKED_S
            previous_at = now
            for message in messages:
                if message is KEEPALIVE:
                    continue
                assert isinstance(message, Frame)
                try:
                    item = parse_message(message.message)
                except ValueError as exc:
                    raise ProtocolError(f"{self.url}: {exc}") from None
                if item is not None:
                    held = loop.time()
                    yield item, message.id
                    if loop.time() - held >= _BLOCKED_S:
                        fresh = False  # the consumer held us up: what comes next may have queued meanwhile

    def _learn(self, silence: float, waited: float, fresh: bool) -> None:
        """Learn the server's keepalive interval from a keepalive that came after `silence` seconds."""
        if fresh and silence >= _MIN_SILENCE_S and waited >= 0.9 * silence:
            self._learned_heartbeat_s = max(self._learned_heartbeat_s or 0.0, silence)
