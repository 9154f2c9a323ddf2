"""The stream lane: opening a subscriber stream for a request the gate admitted.

Stream requests (GET and HEAD on `/topics/{topic}/events` and `/events`) are
parsed here from the raw query string and headers, not by FastAPI, and served
without the framework stack: a stream lives for hours, and every middleware
frame above it would stay in memory for as long (about 12 KB per idle
subscriber, measured with tracemalloc). `ServerApp` sends every stream request
here once the gate admitted it; the FastAPI stream routes only document them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from starlette.datastructures import QueryParams
from starlette.types import ASGIApp

from ..._config import Settings
from ..._exceptions import BackendUnavailable
from ..._hub import Hub
from ..._ids import Cursor, StreamCursor, parse_cursor
from ..._replay import Opening, Replay
from ..._topics import validate_selector, validate_topic
from ..._types import OverflowPolicy, StreamFormat
from ...archive import DeepReplay, ServerArchive
from ..errors import ClientError, response_for
from ..gate import ADMIT, Decision, GateRequest
from .encoders import Encoder, NDJSONEncoder, SSEEncoder
from .streaming import EventStream, StreamMonitor

logger = logging.getLogger(__name__)

NDJSON = NDJSONEncoder()
SSE = SSEEncoder()
SSE_ENVELOPE = SSEEncoder(envelope=True)
MAX_DURATION_S = 86_400.0
#: A new multi-topic stream's cursor starts this long before now: clocks of the server and of
#: Redis may differ by up to that (a topic's events since then replay on resume; some may predate the stream).
BASE_MARGIN_MS = 5_000


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """A validated subscription request."""

    selectors: list[str]
    encoder: Encoder
    queue: int | None = None
    overflow: OverflowPolicy | None = None
    after: Cursor | None = None
    tail: int | None = None
    max_events: int | None = None
    max_duration: float | None = None
    #: `/events` (topics and patterns; the SSE `id:` is the stream's cursor), not `/topics/{t}/events`.
    multi: bool = False


def _integer(query: QueryParams, name: str, low: int, high: int) -> int | None:
    raw = query.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise ClientError(422, "invalid_parameter", f"{name} must be an integer, got {raw[:40]!r}") from None
    if not low <= value <= high:
        raise ClientError(422, "invalid_parameter", f"{name} must be between {low} and {high}, got {value}")
    return value


def _encoder(fmt: str | None, accept: str, multi: bool) -> Encoder:
    if fmt is None:
        chosen = StreamFormat.SSE if "text/event-stream" in accept else StreamFormat.NDJSON
    else:
        try:
            chosen = StreamFormat(fmt)
        except ValueError:
            raise ClientError(422, "invalid_parameter", f"format must be sse or ndjson, got {fmt[:40]!r}") from None
    if chosen is StreamFormat.SSE:
        return SSE_ENVELOPE if multi else SSE
    return NDJSON


def parse_stream_request(
    settings: Settings, selectors: list[str], query: QueryParams, headers: Mapping[str, str], *, multi: bool
) -> StreamRequest:
    """Validate a stream request; raise `ClientError`, `InvalidTopic` or `InvalidEventId` naming the problem."""
    if not selectors:
        raise ClientError(422, "invalid_parameter", "name at least one topic: /events?topic=A&topic=B")
    if len(selectors) > settings.max_topics_per_stream:
        message = f"a stream may name at most {settings.max_topics_per_stream} topics, got {len(selectors)}"
        raise ClientError(422, "invalid_parameter", message)
    for selector in selectors:
        (validate_selector if multi else validate_topic)(selector)
    overflow = query.get("overflow")
    policy = None
    if overflow is not None:
        try:
            policy = OverflowPolicy(overflow)
        except ValueError:
            allowed = ", ".join(p.value for p in OverflowPolicy)
            message = f"overflow must be one of {allowed}, got {overflow[:40]!r}"
            raise ClientError(422, "invalid_parameter", message) from None
    max_duration = None
    raw_duration = query.get("max_duration")
    if raw_duration is not None:
        try:
            max_duration = float(raw_duration)
        except ValueError:
            message = f"max_duration must be a number of seconds, got {raw_duration[:40]!r}"
            raise ClientError(422, "invalid_parameter", message) from None
        if not 0 < max_duration <= MAX_DURATION_S:
            message = f"max_duration must be in (0, {MAX_DURATION_S:.0f}] seconds, got {raw_duration[:40]}"
            raise ClientError(422, "invalid_parameter", message)
    last_event_id = headers.get("last-event-id") or query.get("last_event_id")
    return StreamRequest(
        selectors=selectors,
        encoder=_encoder(query.get("format"), headers.get("accept", ""), multi),
        queue=_integer(query, "queue", 1, settings.max_queue_size),
        overflow=policy,
        after=parse_cursor(last_event_id) if last_event_id else None,
        tail=_integer(query, "tail", 0, settings.history_size),
        max_events=_integer(query, "max_events", 1, 10**9),
        max_duration=max_duration,
        multi=multi,
    )


async def open_stream(
    hub: Hub,
    monitor: StreamMonitor,
    settings: Settings,
    request: StreamRequest,
    decision: Decision = ADMIT,
    archive: ServerArchive | None = None,
) -> EventStream:
    """Subscribe live first, then prepare the replay (resume or tail); the caller sends the stream.

    The gate's `decision` gives the stream its extra headers and its deadline. With an
    `archive`, a resume older than the retained history is replayed from it first (`DeepReplay`).
    While the backend is unreachable the stream is answered all the same (200) and waits for it
    (`Opening`): a stream never answers a non-200 for a transient backend fault.
    """
    sub = await hub.subscribe(request.selectors, queue_size=request.queue, overflow=request.overflow)
    replay: Replay | DeepReplay | None = None
    opening = None
    encoder = request.encoder
    cursor = _stream_cursor(settings, request) if request.multi else None
    if cursor is not None and encoder is SSE_ENVELOPE:  # multi-topic SSE: each event's `id:` is the stream's cursor
        encoder = SSEEncoder(envelope=True, cursor=cursor)
    try:
        if request.after is not None or request.tail is not None:
            tail = None if request.after is not None else request.tail
            if request.after is not None and archive is not None:
                replay = DeepReplay(hub, archive.catalog, request.selectors, after=request.after)
            else:
                replay = Replay(hub, request.selectors, after=request.after, tail=tail)
            # `live` says where the stream starts (NDJSON clients build on it); the replay moves the
            # topics it resets, so that the next resume does not announce the same loss.
            replay.stream_cursor = cursor
            try:
                await replay.prepare()
            except BackendUnavailable:
                opening = Opening(hub, replay, settings.backend_wait_s)
        elif not hub.backend_available:
            opening = Opening(hub, None, settings.backend_wait_s)
    except BaseException:
        sub.close()
        raise
    return EventStream(
        sub,
        encoder,
        monitor,
        replay=replay,
        opening=opening,
        retry_ms=int(settings.retry_ms * random.uniform(1.0, 1.5)),
        max_events=request.max_events,
        max_duration=request.max_duration,
        deadline=decision.deadline,
        headers=decision.headers,
    )


def _stream_cursor(settings: Settings, request: StreamRequest) -> StreamCursor:
    after = request.after
    start = time.time_ns() // 1_000_000 - BASE_MARGIN_MS
    if after is None or after.legacy:
        return StreamCursor(start, settings.max_topics_per_stream)
    base = start if after.base_ms is None else after.base_ms
    return StreamCursor(base, settings.max_topics_per_stream, after)


async def open_lane(state: Any, request: GateRequest, decision: Decision) -> ASGIApp:
    """The stream for an admitted stream request, or the JSON error that answers it instead.

    `state` is the application's state (hub, monitor, settings). Nothing of the request
    is kept by the stream but what it needs: the caller then runs the returned app.
    """
    settings: Settings = state.settings
    query = request.query
    headers = request.headers
    try:
        multi = request.path == "/events"
        parsed = parse_stream_request(settings, list(request.topics), query, headers, multi=multi)
        archive = getattr(state, "archive", None)
        return await open_stream(state.hub, state.monitor, settings, parsed, decision, archive)
    except Exception as exc:
        return response_for(exc, where=f"opening a stream on {request.path}")
