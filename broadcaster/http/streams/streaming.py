"""The stream response: one writer loop per client, one monitor per process.

`EventStream` is an ASGI response whose single loop sleeps on the subscription,
drains everything queued, and writes it as one chunk. One loop writes, so no
send lock is needed. A small task per stream waits for the client's
`http.disconnect` and ends the subscription at once.

Per-stream timers would cost one timer handle per write; instead one
`StreamMonitor` task per process wakes every fraction of a second and, for
each stream: asks for a keepalive so that no gap between writes (the stream's
opening included) exceeds `heartbeat_s`, ends
it at its `max_duration`, and aborts it if one write has been stuck for
`send_timeout_s` (a socket that accepts nothing); and it ends a stream at the
gate's deadline (a token's expiry) with the control message the gate chose. The
race between these endings is drawn in docs/architecture.md. What a stream uses
of uvicorn beyond ASGI (direct writes, abort) goes through `_uvicorn.Connection`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from typing import Any, Self

from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from ..._event import Control, Event
from ..._exceptions import BackendError
from ..._replay import Opening, Replay
from ..._subscription import Item, Subscription
from .._uvicorn import Connection, connection_of
from ..gate import Deadline
from .encoders import Encoder, SSEEncoder

logger = logging.getLogger(__name__)


class EventStream(Response):
    """An endless streaming response fed by a `Subscription`; ends on disconnect, eviction or shutdown."""

    def __init__(
        self,
        sub: Subscription,
        encoder: Encoder,
        monitor: StreamMonitor,
        *,
        replay: Replay | None = None,
        opening: Opening | None = None,
        retry_ms: int = 0,
        max_events: int | None = None,
        max_duration: float | None = None,
        deadline: Deadline | None = None,
        headers: tuple[tuple[bytes, bytes], ...] = (),
    ) -> None:
        self.sub = sub
        self.encoder = encoder
        #: A multi-topic SSE stream's direct write in two parts (`SSEEncoder.chunk_parts`), else None.
        self.parts = encoder.chunk_parts if isinstance(encoder, SSEEncoder) and encoder.cursor is not None else None
        self.monitor = monitor
        self.replay = replay
        self.opening = opening
        self.retry_ms = retry_ms
        self.max_events = max_events
        self.max_duration = max_duration
        self.status_code = 200
        self.background = None
        self.media_type = encoder.media_type
        shared = _stream_headers(encoder.media_type)
        self.raw_headers = [*shared, *headers] if headers else shared
        self.heartbeat_due = False
        self.wrote = False  # set by direct writes; the monitor turns it into `last_write`
        self.last_write = 0.0
        self.sending_since = 0.0
        self.deadline = 0.0  # loop time at which the monitor ends the stream, with `deadline_end`
        self.deadline_end: Control | None = None
        self.disconnected = False
        self.aborted = False
        self._gate_deadline = deadline
        self._task: asyncio.Task[Any] | None = None
        self._connection: Connection | None = None
        self._direct = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._connection = connection = connection_of(send)
        self.last_write = loop.time()
        self._set_deadline()
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if scope.get("method") == "HEAD":
            # The headers a GET would get, and no stream: an endless body would never end a HEAD.
            self.sub.close()
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        # The direct path writes HTTP/1.1 chunks itself, so it needs the server to be using
        # chunked transfer encoding for this response.
        self._direct = self.max_events is None and connection is not None and connection.chunked
        watcher = loop.create_task(self._watch(receive))
        self.monitor.add(self)
        try:
            await self._run(send)
        except asyncio.CancelledError:
            # The monitor's fallback abort (no transport to close) cancels this task;
            # like asyncio.timeout, swallow only a cancellation that is ours alone.
            if self.aborted and self._task is not None and self._task.uncancel() == 0:
                return
            raise
        finally:
            watcher.cancel()
            self.monitor.discard(self)
            self.sub.close()

    def _set_deadline(self) -> None:
        """The earlier of `max_duration` (ends quietly) and the gate's deadline (ends with its control)."""
        if self.max_duration is not None:
            self.deadline = self.last_write + self.max_duration
        gate = self._gate_deadline
        if gate is not None:
            at = self.last_write + max(0.0, gate.at - time.time())
            if not self.deadline or at < self.deadline:
                self.deadline, self.deadline_end = at, gate.end
        self._gate_deadline = None

    async def _watch(self, receive: Receive) -> None:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                self.disconnected = True
                self.sub.close()
                return

    async def _write(self, send: Send, chunk: bytes) -> None:
        now = self.last_write = asyncio.get_running_loop().time()
        self.sending_since = now
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        self.sending_since = 0.0

    async def _run(self, send: Send) -> None:
        encoder = self.encoder
        try:
            preamble = encoder.preamble(self.retry_ms)
            if preamble:
                await self._write(send, preamble)
            if self.opening is not None and not await self.opening.wait(self.sub, lambda: self._keepalive(send)):
                self.replay = None  # it ended while waiting for the backend: its end message follows
            seam: Replay | None = None
            if self.replay is not None:
                async for page in self.replay.pages(self.max_events):
                    if self.sub.ended:
                        break
                    await self._write(send, encoder.encode(page))
                if self.max_events is not None and self.replay.replayed >= self.max_events:
                    self.sub.finish()  # the replay used up max_events: no `live`, nothing follows
                elif not self.sub.ended:
                    await self._write(send, encoder.control(self.replay.live()))
                seam = self.replay
            await self._live(send, seam)
        except BackendError as exc:
            logger.warning("stream ended by a backend error: %s", exc)
            await self._write(send, encoder.control(Control("fault", {"reason": "backend unavailable"})))
        except Exception:
            logger.exception("stream failed")
            await self._write(send, encoder.control(Control("fault", {"reason": "server fault"})))
        finally:
            self.sub.sink = None
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _keepalive(self, send: Send) -> None:
        if self.heartbeat_due and not self.disconnected:
            self.heartbeat_due = False
            await self._write(send, self.encoder.keepalive())

    async def _live(self, send: Send, seam: Replay | None) -> None:
        sub = self.sub
        encoder = self.encoder
        remaining = self.max_events
        if remaining is not None and self.replay is not None:
            remaining -= self.replay.replayed
        while True:
            if seam is not None and not seam.floors:
                seam = None  # past every topic's seam
            if self._direct and seam is None and sub.sink is None:
                sub.sink = self
            await sub.wait()
            items = sub.drain()
            if seam is not None and items:
                items = seam.seam(items)
            if remaining is not None and items:
                items = _take_events(items, remaining)
                remaining -= sum(1 for item in items if type(item) is Event)
                if remaining <= 0:
                    sub.finish()
            chunk = encoder.encode(items) if items else b""
            if not chunk and self.heartbeat_due:
                chunk = encoder.keepalive()
            self.heartbeat_due = False
            ended = sub.ended
            if ended and sub.end is not None and not self.disconnected:
                chunk += encoder.control(sub.end)
            if chunk and not self.disconnected:
                await self._write(send, chunk)
            if ended:
                return

    def write(self, items: list[Item]) -> bool:
        """The `Sink` fast path: write `items` as one HTTP chunk now if the socket has nothing pending."""
        connection: Connection = self._connection  # type: ignore[assignment]  # set: a sink has one
        if len(items) == 1 and type(items[0]) is Event:
            if self.parts is not None:  # a multi-topic SSE stream: its own `id:` head, the shared rest
                wrote = connection.try_write_parts(self.parts(items[0]))
            else:
                wrote = connection.try_write_framed(self.encoder.chunk(items[0]))  # framed once for all
        elif connection.busy():  # before encoding: a full queue offered to a stuck socket stays cheap
            return False
        else:
            wrote = connection.try_write(self.encoder.encode(items))
        if wrote:
            self.wrote = True
        return wrote

    def abort(self) -> None:
        """Close a stream whose socket takes nothing: close the transport, else cancel the writer."""
        if self.aborted:
            return
        self.aborted = True
        self.sub.close()
        if self._connection is not None:
            self._connection.abort()
        elif self._task is not None:
            self._task.cancel()


@functools.cache
def _stream_headers(media_type: str) -> list[tuple[bytes, bytes]]:
    """The stream headers, built once per media type and shared by every stream (never compressed)."""
    charset = "; charset=utf-8" if media_type.startswith("text/") else ""
    return [
        (b"content-type", (media_type + charset).encode("latin-1")),
        (b"cache-control", b"no-store"),
        (b"x-accel-buffering", b"no"),
    ]


def _take_events(items: list[Item], count: int) -> list[Item]:
    taken: list[Item] = []
    for item in items:
        if type(item) is Event:
            if count <= 0:
                break
            count -= 1
        taken.append(item)
    return taken


class StreamMonitor:
    """One task per process: keepalives, `max_duration`, and `send_timeout_s` for every stream."""

    def __init__(self, *, heartbeat_s: float, send_timeout_s: float) -> None:
        self.heartbeat_s = heartbeat_s
        self.send_timeout_s = send_timeout_s
        self.interval = min(1.0, heartbeat_s / 10, send_timeout_s / 2)
        # A keepalive is due a little early: a sweep sees a write up to one interval late (a
        # direct write is recorded at the next sweep) and acts up to one interval late, so
        # asking at `heartbeat_s - 2 * interval` keeps every gap within `heartbeat_s`.
        self.keepalive_after = heartbeat_s - 2 * self.interval
        self.streams: set[EventStream] = set()
        self.aborted = 0
        self._task: asyncio.Task[None] | None = None

    def add(self, stream: EventStream) -> None:
        self.streams.add(stream)

    def discard(self, stream: EventStream) -> None:
        self.streams.discard(stream)

    async def __aenter__(self) -> Self:
        self._task = asyncio.create_task(self._run(), name="broadcaster-stream-monitor")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self.interval)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        for stream in list(self.streams):
            if stream.wrote:
                stream.wrote = False
                stream.last_write = now
            if stream.sending_since and now - stream.sending_since >= self.send_timeout_s:
                logger.info("closing a stream whose socket accepted nothing for %.1fs", self.send_timeout_s)
                self.aborted += 1
                stream.abort()
            elif stream.deadline and now >= stream.deadline:
                stream.deadline = 0.0
                stream.sub.finish(stream.deadline_end)
            elif now - stream.last_write >= self.keepalive_after:
                stream.heartbeat_due = True
                stream.sub.wake()
