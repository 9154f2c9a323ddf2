"""Streamed ingest: NDJSON or text lines and backlog uploads on POST /topics/{topic}/events.

```
request.stream() -> size limit -> [multipart: the `file` field's bytes] -> LineSplitter -> one line rule per line
                                                                            -> hub.publish_many per chunk
```

Nothing holds the body: each chunk is split into lines as it arrives, and the
lines it completes are published together (one `publish_many`, so one Redis
round trip per chunk rather than per line) as soon as they are parsed, never
waiting for more data. A producer that keeps one POST open for hours therefore
sees every line delivered as soon as it is sent. One batch is in flight while
the next chunk is read and parsed; the next batch starts only after it, so the
order of the lines is kept. What a line is, and which are rejected, is the
line rules' (`broadcaster._lines`, shared with the producers): a bad line is
rejected alone; the answer counts accepted and rejected lines and names the
first rejected ones.

The answer's counters only move once a batch is published, so on a 413 (the
body passed `max_body_bytes`) or a 503 (the backend failed mid-stream) `lines`
says exactly how far the server got: a producer resends from line `lines + 1`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse, Response
from starlette.requests import ClientDisconnect

from ..._config import Settings
from ..._event import Event
from ..._exceptions import BackendError, HubClosed, InvalidLine
from ..._hub import Hub
from ..._lines import Line, LineSplitter, line_rule
from ..entry import decision_of
from ..errors import ClientError, error_response, response_for
from ..limits.admission import Admission
from ..security.credentials import EXPIRED_CHALLENGE
from .uploads import END_OF_FILE, FileField, MultipartParseError, boundary_of

logger = logging.getLogger(__name__)

NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl", "application/x-jsonlines"})
TEXT_TYPE = "text/plain"
MULTIPART_TYPE = "multipart/form-data"
FORM_TYPE = "application/x-www-form-urlencoded"

#: Most lines in one `publish_many`: bounds one Redis script's run and one loop step.
MAX_BATCH = 1000
#: Rejected lines named in the answer (all are counted).
MAX_ERRORS = 20


class _Stop(ClientError):
    """End the ingest early with an error answer that carries the report so far."""


class _Body:
    """`request.stream()`, cut at `limit` bytes: the part before the limit is yielded, then `truncated` is set.

    It is cut at `expires_at` (Unix seconds: the gate's deadline, a token's `exp`) too, even
    while no bytes come: then `expired` is set as well, and nothing after that is read.
    """

    def __init__(self, request: Request, limit: int, expires_at: float | None = None) -> None:
        self.request = request
        self.limit = limit
        self.expires_at = expires_at
        self.received = 0
        self.truncated = False
        self.expired = False

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        async with contextlib.aclosing(self.request.stream()) as stream:
            while True:
                try:
                    chunk = await self._next(stream)
                except StopAsyncIteration:
                    return
                except TimeoutError:
                    self.truncated = self.expired = True
                    return
                room = self.limit - self.received
                self.received += len(chunk)
                if len(chunk) > room:
                    self.truncated = True
                    if room > 0:
                        yield chunk[:room]
                    return
                if chunk:
                    yield chunk

    async def _next(self, stream: AsyncGenerator[bytes, None]) -> bytes:
        if self.expires_at is None:
            return await anext(stream)
        # Checked before each read too: a body whose bytes keep coming never waits, so never times out.
        remaining = self.expires_at - time.time()
        if remaining <= 0:
            raise TimeoutError
        async with asyncio.timeout(remaining):
            return await anext(stream)


class _Ingest:
    """Lines in, events out: parsing, batching, and the answer's report."""

    def __init__(self, hub: Hub, topic: str, event_type: str, *, text: bool, max_event_bytes: int) -> None:
        self.hub = hub
        self.topic = topic
        self.event_type = event_type
        self.max_event_bytes = max_event_bytes
        self.rule = line_rule(text=text)
        self.splitter = LineSplitter.for_events(max_event_bytes)
        self.lines = 0
        self.accepted = 0
        self.rejected = 0
        self.errors: list[dict[str, Any]] = []
        self.first_id: str | None = None
        self.last_id: str | None = None
        self.truncated = False
        self._numbered = 0  # lines parsed; `lines` counts those answered for (their batch published)
        self._in_flight: asyncio.Task[list[Event]] | None = None
        self._in_flight_lines: tuple[list[dict[str, Any]], int] = ([], 0)
        self.pace: Callable[[int], Awaitable[None]] | None = None
        self.max_batch = MAX_BATCH

    def report(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "accepted": self.accepted,
            "rejected": self.rejected,
            "lines": self.lines,
            "errors": self.errors,
            "first_id": self.first_id,
            "last_id": self.last_id,
            "truncated": self.truncated,
        }

    async def feed(self, chunk: bytes) -> None:
        await self._take(self.splitter.feed(chunk))

    async def end_of_file(self) -> None:
        await self._take(self.splitter.end())

    async def _take(self, lines: Sequence[Line]) -> None:
        if not lines:
            return
        rule = self.rule
        limit = self.max_event_bytes
        items: list[tuple[str, bytes]] = []
        errors: list[dict[str, Any]] = []
        event_type = self.event_type
        number = self._numbered
        for line in lines:
            number += 1
            try:
                data = rule(line, limit)
            except InvalidLine as exc:
                errors.append(exc.report(number))
                continue
            if data is not None:
                items.append((event_type, data))
                if len(items) >= self.max_batch:
                    self._numbered = number
                    await self._publish(items, errors, number)
                    items, errors = [], []
        self._numbered = number
        await self._publish(items, errors, number)

    async def _publish(self, items: list[tuple[str, bytes]], errors: list[dict[str, Any]], number: int) -> None:
        """Start publishing a batch once the previous one is done (one in flight, so order is kept)."""
        await self.settle()
        if items and self.pace is not None:
            await self.pace(len(items))
        if items:
            self._in_flight = asyncio.create_task(self.hub.publish_many(self.topic, items))
            self._in_flight_lines = (errors, number)
        else:
            self._count([], errors, number)

    async def settle(self) -> None:
        """Wait for the batch in flight and count it in the report; raises what its publish raised."""
        task = self._in_flight
        if task is None:
            return
        self._in_flight = None
        errors, number = self._in_flight_lines
        self._count(await task, errors, number)

    async def settle_quietly(self) -> None:
        """`settle()` when the answer is decided already: a failed batch is just not counted."""
        with contextlib.suppress(BackendError, HubClosed):
            await self.settle()

    async def abandon(self) -> None:
        """Cancel a batch still in flight (the request failed or was cancelled): no orphan task."""
        task, self._in_flight = self._in_flight, None
        if task is not None:
            task.cancel()
            await asyncio.wait({task})
            if not task.cancelled():
                task.exception()  # retrieved: not logged as "never retrieved"

    def _count(self, events: list[Event], errors: list[dict[str, Any]], number: int) -> None:
        if events:
            if self.first_id is None:
                self.first_id = events[0].id
            self.last_id = events[-1].id
            self.accepted += len(events)
        if errors:
            self.rejected += len(errors)
            room = MAX_ERRORS - len(self.errors)
            if room > 0:
                self.errors.extend(errors[:room])
        self.lines = number


async def ingest(
    request: Request, hub: Hub, topic: str, event_type: str, kind: str, *, admission: Admission, client: str
) -> Response:
    """Publish a streamed body line by line and answer with a report (see the module docstring).

    200 with the report; 413, 503 or 400 with `{"error": ..., "report": ...}` when the
    body was cut by the size limit, the backend failed, or a multipart body was malformed;
    422 with the same shape when no line at all was accepted.
    """
    settings: Settings = request.app.state.settings
    boundary = b""
    if kind == MULTIPART_TYPE:
        boundary = boundary_of(request.headers.get("content-type", ""))
    elif kind not in NDJSON_TYPES and kind != TEXT_TYPE:
        # `curl -d` sends form encoding unless told otherwise: the commonest first mistake.
        hint = " (curl -d sends this: add -H 'Content-Type: application/json')" if kind == FORM_TYPE else ""
        raise ClientError(
            415,
            "unsupported_media_type",
            f"Content-Type {kind!r} is not supported{hint}: send application/json (one event), application/x-ndjson "
            "(one JSON value per line), text/plain (one event per line) or multipart/form-data with a file field",
        )
    job = _Ingest(hub, topic, event_type, text=kind == TEXT_TYPE, max_event_bytes=settings.max_event_bytes)
    deadline = decision_of(request).deadline
    if admission.batch_limit is not None:  # publish_rate: slow this body's reads down to the client's rate
        job.pace = functools.partial(admission.pace, client)
        job.max_batch = min(MAX_BATCH, admission.batch_limit)
    body = _Body(request, settings.max_body_bytes, deadline.at if deadline is not None else None)
    try:
        if kind == MULTIPART_TYPE:
            await _read_upload(job, body, boundary)
        else:
            async with contextlib.aclosing(body.chunks()) as chunks:
                async for chunk in chunks:
                    await job.feed(chunk)
            if not body.truncated:
                await job.end_of_file()
        await job.settle()
    except ClientDisconnect:
        # Completed lines are published (a batch in flight finishes); the partial last line is dropped.
        await job.settle_quietly()
        logger.info(
            "ingest on %s: the client disconnected mid-body after %d lines (%d accepted); partial line dropped",
            topic,
            job.lines,
            job.accepted,
            extra={"topic": topic, "lines": job.lines, "accepted": job.accepted},
        )
        return Response(status_code=400)  # nobody reads it: the connection is gone
    except BackendError as exc:
        job.truncated = True
        message = f"the backend failed after line {job.lines}, resend from line {job.lines + 1}: {exc}"
        return response_for(exc, message=message, report=job.report())
    except HubClosed as exc:
        job.truncated = True
        message = f"the server is stopping; lines after line {job.lines} were not read"
        return response_for(exc, message=message, report=job.report())
    except ClientError as stop:  # _Stop, or BodyTimeout (the body stalled): the report so far
        await job.settle_quietly()
        job.truncated = True
        return response_for(stop, report=job.report())
    finally:
        await job.abandon()
    if body.expired:
        job.truncated = True
        message = (
            f"the token expired while the body was read: lines up to line {job.lines} were read, "
            f"send the rest from line {job.lines + 1} with a fresh token"
        )
        return error_response(401, "unauthorized", message, EXPIRED_CHALLENGE, report=job.report())
    if body.truncated:
        job.truncated = True
        limit = settings.max_body_bytes
        message = (
            f"the body is over the limit of {limit} bytes (max_body_bytes): it was cut there; "
            f"lines up to line {job.lines} were read, resend the rest from line {job.lines + 1} in another request"
        )
        return _stopped(job, 413, "payload_too_large", message)
    if job.accepted == 0 and job.rejected > 0:
        message = f"none of the {job.rejected} non-blank lines was accepted; see report.errors"
        return _stopped(job, 422, "no_valid_lines", message)
    return JSONResponse(job.report())


async def _read_upload(job: _Ingest, body: _Body, boundary: bytes) -> None:
    """The `file` field of a multipart body through the same line handling; other fields are skipped."""
    upload = FileField(boundary, "file")
    async with contextlib.aclosing(body.chunks()) as chunks:
        async for chunk in chunks:
            try:
                pieces = upload.feed(chunk)
            except MultipartParseError as exc:
                raise _Stop(400, "invalid_multipart", f"the multipart body is malformed: {exc}") from None
            for piece in pieces:
                if piece is END_OF_FILE:
                    await job.end_of_file()
                else:
                    await job.feed(piece)
    if body.truncated:
        return
    if not upload.found:
        raise _Stop(
            400,
            "missing_field",
            'the multipart body has no "file" field: send the NDJSON backlog as the field named file '
            "(curl -F file=@backlog.ndjson ...)",
        )
    if not upload.complete:
        raise _Stop(400, "invalid_multipart", "the multipart body ended before its closing boundary")


def _stopped(job: _Ingest, status: int, code: str, message: str) -> JSONResponse:
    return error_response(status, code, message, report=job.report())
