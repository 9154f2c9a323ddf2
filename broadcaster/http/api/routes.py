"""HTTP handlers of the FastAPI lane: validate, take the hub from app state, return a response.

Every request here passed the gate first (`entry.ServerApp`); `entry.decision_of(request)`
is its decision. The two stream routes only document the stream lane for /docs and for
the `Allow` header of a 405: `ServerApp` serves every GET and HEAD on their paths itself.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from ... import __version__
from ..._config import Settings
from ..._event import Control
from ..._exceptions import BackendError, BackendUnavailable, HubClosed
from ..._hub import Hub
from ..._ids import history_start
from ..._topics import DEFAULT_EVENT_TYPE, validate_topic, validate_type
from ...auth import Identity
from ..entry import decision_of
from ..errors import ClientError, error_response, response_for
from ..limits.admission import Admission, client_key, identity_key
from ..publish.body import media_type, read_json_event
from ..publish.ingest import ingest
from ..streams.streaming import StreamMonitor
from ..streams.subscribe import NDJSON
from .metrics import render_metrics

router = APIRouter()

_PUBLISH_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {}, "example": {"temp": 21.5}},
            "application/x-ndjson": {"schema": {"type": "string"}, "example": '{"temp": 21.5}\n{"temp": 21.7}\n'},
            "text/plain": {"schema": {"type": "string"}, "example": "one event per line\n"},
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}}}
            },
        },
    }
}


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


@router.post(
    "/topics/{topic}/events",
    status_code=201,
    summary="Publish events",
    openapi_extra=_PUBLISH_BODY,
    responses={201: {"description": "Published: `{id, topic, ts}`"}, 200: {"description": "Streamed ingest report"}},
)
async def publish(
    request: Request,
    topic: str,
    type: Annotated[str, Query(description="event type (the SSE event name)")] = DEFAULT_EVENT_TYPE,
) -> Response:
    """Publish one JSON event, or a stream of NDJSON / text lines, or an NDJSON backlog upload."""
    validate_topic(topic)
    if type != DEFAULT_EVENT_TYPE:
        validate_type(type)
    hub = _hub(request)
    kind = media_type(request)
    if kind in ("", "application/json"):  # its publish_rate was checked in the gate (AdmissionPolicy)
        data = await read_json_event(request, _settings(request).max_event_bytes)
        event = await hub.publish(topic, data, type)
        return JSONResponse({"id": event.id, "topic": event.topic, "ts": event.ts}, status_code=201)
    admission: Admission = request.app.state.admission
    client = client_key(request.scope, identity_key(decision_of(request).identity))
    return await ingest(request, hub, topic, type, kind, admission=admission, client=client)


def _bounded(name: str, value: int | None, low: int, high: int) -> int | None:
    if value is not None and not low <= value <= high:
        raise ClientError(422, "invalid_parameter", f"{name} must be between {low} and {high}, got {value}")
    return value


def _stream_lane_only(request: Request) -> Response:
    # Unreachable: ServerApp sends GET/HEAD on a stream path to the stream lane before the framework.
    raise RuntimeError(f"{request.method} {request.url.path} reached a documentation-only stream route")


def _param(name: str, kind: str, description: str, where: str = "query") -> dict[str, Any]:
    return {"name": name, "in": where, "required": False, "schema": {"type": kind}, "description": description}


# The stream parameters are declared for /docs only: the stream lane (`subscribe.open_lane`) reads them
# from the query string itself.
_STREAM_PARAMETERS = [
    _param("format", "string", "sse or ndjson; default: sse if Accept names text/event-stream, else ndjson"),
    _param("queue", "integer", "this subscriber's queue length (events), up to the server's max_queue_size"),
    _param("overflow", "string", "disconnect (default), drop-oldest or drop-newest"),
    _param("last_event_id", "string", "resume after this event id (same as the Last-Event-ID header)"),
    _param("Last-Event-ID", "string", "resume after this event id (sent by EventSource itself)", "header"),
    _param("tail", "integer", "start with the last N retained events, then live"),
    _param("max_events", "integer", "end the stream after this many events"),
    _param("max_duration", "number", "end the stream after this many seconds"),
]
_TOPICS_PARAMETER = {
    **_param("topic", "array", "a topic or a pattern with *; repeat for more"),
    "required": True,
    "schema": {"type": "array", "items": {"type": "string"}},
}
_STREAM_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "An endless stream of events",
        "content": {"text/event-stream": {}, "application/x-ndjson": {}},
    }
}


@router.get(
    "/topics/{topic}/events",
    summary="Subscribe to a topic",
    responses=_STREAM_RESPONSES,
    openapi_extra={"parameters": _STREAM_PARAMETERS},
)
async def subscribe_topic(request: Request, topic: str) -> Response:
    """Stream a topic's events as SSE or NDJSON, live, optionally resuming or starting with a tail."""
    return _stream_lane_only(request)


@router.get(
    "/events",
    summary="Subscribe to several topics and patterns",
    responses=_STREAM_RESPONSES,
    openapi_extra={"parameters": [_TOPICS_PARAMETER, *_STREAM_PARAMETERS]},
)
async def subscribe_many(request: Request) -> Response:
    """One stream of several topics; SSE `data:` carries the whole event object, topic included."""
    return _stream_lane_only(request)


@router.get(
    "/topics/{topic}/history",
    summary="Download retained events",
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "NDJSON, one event per line"}},
)
async def history(
    request: Request,
    topic: str,
    after: Annotated[str | None, Query(description="only events after this id")] = None,
    limit: Annotated[int | None, Query(description="at most this many events")] = None,
) -> Response:
    """The retained events as an NDJSON download, streamed page by page."""
    hub = _hub(request)
    validate_topic(topic)
    start = history_start(topic, after)  # InvalidEventId (400) unless an id of this topic
    _bounded("limit", limit, 1, 10**9)
    pages = hub.history_pages(topic, after=start.seq if start else None, limit=limit)
    first = await anext(pages)
    reset = start.lost(first.epoch, first.last, first.events) if start else None
    if start is not None and first.epoch != start.epoch:  # another history: all of it is new to the client
        pages = hub.history_pages(topic, limit=limit)
        first = await anext(pages)

    async def body() -> AsyncIterator[bytes]:
        if reset:
            yield NDJSON.control(Control("reset", {"reason": reset, "last_event_id": after}))
        page = first
        while True:
            if page.events:
                yield NDJSON.download(page.events)
            try:
                page = await anext(pages)
            except StopAsyncIteration:
                return
            except BackendError as exc:
                yield NDJSON.control(Control("fault", {"reason": f"backend error: {exc}"}))
                return

    headers = {"Content-Disposition": f'attachment; filename="{topic}.ndjson"', "Cache-Control": "no-store"}
    return StreamingResponse(body(), media_type="application/x-ndjson", headers=headers)


@router.get("/topics", summary="Active topics")
async def topics(request: Request) -> JSONResponse:
    """Topics this process serves or saw (those the token may subscribe), with subscriber counts, rates, retained;
    `access`: `off`, `anonymous` (access control on, no token sent) or `token`."""
    stats = await _hub(request).topic_stats()
    identity = decision_of(request).identity
    access = "off"
    if isinstance(identity, Identity):  # access control is on: only what the identity may subscribe
        stats = [s for s in stats if identity.grants.may_subscribe(s.topic)]
        access = "anonymous" if identity.expires_at is None else "token"  # the dashboard asks for a token
    return JSONResponse(
        {
            "access": access,
            "topics": [
                {
                    "topic": s.topic,
                    "subscribers": s.subscribers,
                    "events": s.events,
                    "events_per_s": s.rate,
                    "retained": s.retained,
                    "last_id": s.last_id,
                }
                for s in stats
            ],
        }
    )


@router.head("/healthz", include_in_schema=False)
@router.get("/healthz", summary="Liveness")
async def healthz(request: Request) -> JSONResponse:
    """200 while the process and its event pump live; 503 after a fault."""
    hub = _hub(request)
    if not hub.healthy:
        return error_response(503, "unhealthy", hub.failure or "unhealthy")
    return JSONResponse({"status": "ok", "version": __version__})


@router.head("/readyz", include_in_schema=False)
@router.get("/readyz", summary="Readiness")
async def readyz(request: Request) -> JSONResponse:
    """200 when the backend answers; 503 with Retry-After otherwise."""
    hub = _hub(request)
    try:
        await hub.ping()
    except BackendUnavailable as exc:
        return response_for(exc, message=str(exc))
    except HubClosed as exc:
        return response_for(exc, message="the server is stopping")
    backend = "memory" if _settings(request).redis_url is None else "redis"
    return JSONResponse({"status": "ready", "backend": backend})


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(request: Request) -> PlainTextResponse:
    monitor: StreamMonitor = request.app.state.monitor
    text = render_metrics(_hub(request), monitor, request.app.state.admission)
    return PlainTextResponse(text, media_type="text/plain; version=0.0.4")
