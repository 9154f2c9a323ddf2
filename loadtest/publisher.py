"""Publishers: rate-limited JSON POSTs over keep-alive connections, and one streamed NDJSON POST.

Every event's data is ``{"seq": N, "sent_at_ns": T, "pad": "xxx..."}`` padded to the
requested size, with ``T = time.time_ns()`` taken just before the write; subscribers in
other processes compare it with their own ``time.time_ns()`` (same machine, same clock).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from loadtest import STRIDE
from loadtest.http1 import HTTPError, read_response, request_head


def payload(seq: int, size: int) -> bytes:
    """One event's JSON data, ``size`` bytes long (longer if ``size`` is too small to hold it)."""
    head = b'{"seq":%d,"sent_at_ns":%d,"pad":"' % (seq, time.time_ns())
    return head + b"x" * max(0, size - len(head) - 2) + b'"}'


@dataclass(frozen=True, slots=True)
class PublishResult:
    """What one step of publishing achieved."""

    sent: int
    errors: int
    first_error: str
    started_ns: int
    elapsed_s: float

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Publisher:
    """``connections`` keep-alive connections POSTing events to one topic at a target rate.

    Several connections, because a saturated server answers slowly and one connection
    would then cap the offered rate; events may therefore arrive slightly out of order,
    which subscribers tolerate (a late seq fills its hole instead of counting as a dup).
    """

    def __init__(
        self,
        host: str,
        port: int,
        topic: str,
        *,
        size: int,
        connections: int = 8,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.host, self.port, self.size = host, port, size
        self.n = connections
        wanted = {"Content-Type": "application/json", **(headers or {})}
        self.prefix = request_head("POST", host, port, f"/topics/{topic}/events", wanted)
        self.prefix = self.prefix[:-2]  # Content-Length goes last
        self.sent = 0
        self._next = 0

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.open_connection(self.host, self.port)

    async def run(
        self, step: int, rate: float, duration_s: float, *, tick: Callable[[], None] | None = None
    ) -> PublishResult:
        """Publish ``rate * duration_s`` events numbered for ``step``; stop at the latest after 2x the time."""
        total = max(1, round(rate * duration_s))
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        started = time.time_ns()
        self._next = 0
        self.sent = 0
        errors: list[str] = []

        async def one_conn() -> None:
            reader, writer = await self._open()
            try:
                while (i := self._next) < total:
                    self._next += 1
                    delay = t0 + i / rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                    body = payload(step * STRIDE + i, self.size)
                    writer.write(b"%sContent-Length: %d\r\n\r\n%s" % (self.prefix, len(body), body))
                    try:
                        resp = await read_response(reader)
                    except (OSError, EOFError, HTTPError) as exc:  # EOFError: IncompleteReadError
                        errors.append(repr(exc))
                        writer.close()
                        try:
                            reader, writer = await self._open()
                        except OSError as reopen:
                            errors.append(f"reconnect failed: {reopen!r}")
                            return
                        continue
                    if 200 <= resp.status < 300:
                        self.sent += 1
                    else:
                        errors.append(f"{resp.status} {resp.body[:200]!r}")
                    if tick is not None and i % 50 == 0:
                        tick()
            finally:
                writer.close()

        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(2 * duration_s + 10), asyncio.TaskGroup() as tg:
                for _ in range(min(self.n, total)):
                    tg.create_task(one_conn())
        # Cut off by the time limit (or a lost connection): what was never answered is an
        # error too, so a step cannot pass with fewer confirmed events than it planned.
        unconfirmed = total - self.sent - len(errors)
        if unconfirmed > 0:
            errors.append(f"{unconfirmed} of {total} events not confirmed by the server")
        return PublishResult(self.sent, len(errors), errors[0] if errors else "", started, loop.time() - t0)


@dataclass(frozen=True, slots=True)
class IngestResult:
    """One streamed POST: what was sent, how the server answered, and how long it took."""

    sent: int
    status: int
    answer: dict[str, object]
    elapsed_s: float
    error: str


async def stream_ndjson(
    host: str,
    port: int,
    topic: str,
    *,
    size: int,
    max_events: int,
    duration_s: float,
    batch: int = 500,
    tick: Callable[[int], None] | None = None,
    headers: dict[str, str] | None = None,
) -> IngestResult:
    """POST one chunked ``application/x-ndjson`` body of events as fast as the server takes them.

    Stops after ``max_events`` or ``duration_s``, whichever comes first, or as soon as the
    server answers early (e.g. 415 if it has no streaming ingest).
    """
    head = request_head(
        "POST",
        host,
        port,
        f"/topics/{topic}/events",
        {"Content-Type": "application/x-ndjson", "Transfer-Encoding": "chunked", **(headers or {})},
    )
    loop = asyncio.get_running_loop()
    reader, writer = await asyncio.open_connection(host, port)
    sent, error = 0, ""
    try:
        t0 = loop.time()
        writer.write(head)
        answer = asyncio.ensure_future(read_response(reader))
        try:
            while sent < max_events and loop.time() - t0 < duration_s and not answer.done():
                n = min(batch, max_events - sent)
                lines = b"".join([payload(STRIDE + sent + k, size) + b"\n" for k in range(n)])
                writer.write(b"%x\r\n%s\r\n" % (len(lines), lines))
                await writer.drain()
                sent += n
                if tick is not None:
                    tick(sent)
            if not answer.done():
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        except OSError as exc:
            error = repr(exc)
        try:
            async with asyncio.timeout(120):
                resp = await answer
        except (OSError, HTTPError, TimeoutError) as exc:
            answer.cancel()
            return IngestResult(sent, 0, {}, loop.time() - t0, error or repr(exc))
        elapsed = loop.time() - t0
    finally:
        writer.close()
    try:
        parsed = orjson.loads(resp.body)
    except orjson.JSONDecodeError:
        parsed = {"raw": resp.body[:500].decode("utf-8", "replace")}
    return IngestResult(sent, resp.status, parsed if isinstance(parsed, dict) else {"raw": parsed}, elapsed, error)
