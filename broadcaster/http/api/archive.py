"""The archive's routes: segment listing, segment files (Range, ETag, ...), exports by range.

They answer on a server started with `--archive-dir`; elsewhere they are a 404
naming the setting. The gate admits them as `Action.ARCHIVE` with their topic (a
policy grants it with the topic's `subscribe` grant); then every route goes through
`check_read`, the one place that decides whether this topic's archive is readable here.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import anyio.to_thread
from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from ..._topics import validate_topic
from ...archive import ArchiveCatalog, Bound, Range, RangeError, ServerArchive, plan, stream_plan
from ..errors import ClientError
from .files import segment_response

router = APIRouter()

DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 1000
_FILENAME_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")


def check_read(request: Request, topic: str) -> ArchiveCatalog:
    """The archive's catalog, if this request may read `topic` from it.

    Raises `InvalidTopic` (422) for a bad name and `ClientError` 404 when the server has no archive.
    """
    validate_topic(topic)
    archive: ServerArchive | None = getattr(request.app.state, "archive", None)
    if archive is None:
        raise ClientError(404, "no_archive", "this server has no archive (start it with --archive-dir DIR)")
    return archive.catalog


def _not_archived(topic: str) -> ClientError:
    return ClientError(404, "not_archived", f"topic {topic!r} has no archive on this server")


_SEGMENT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"description": "The segment file", "content": {"application/x-ndjson": {}, "application/gzip": {}}},
    206: {"description": "The requested byte range(s); several as multipart/byteranges"},
    304: {"description": "Not modified (If-None-Match / If-Modified-Since)"},
    404: {"description": "No such segment in the listing"},
    416: {"description": "Range not satisfiable; Content-Range: bytes */LEN"},
}


@router.get("/topics/{topic}/archive", summary="List archive segments")
async def list_segments(
    request: Request,
    topic: str,
    limit: Annotated[
        int, Query(ge=1, description=f"segments per page (at most {MAX_LIST_LIMIT}; `next` names the rest)")
    ] = DEFAULT_LIST_LIMIT,
    before: Annotated[str | None, Query(description="the page after this one: segments older than this name")] = None,
) -> JSONResponse:
    """The topic's segments, newest first: name, bytes, first and last id and time, open or closed."""
    catalog = check_read(request, topic)

    def page() -> tuple[list[dict[str, Any]], str | None] | None:
        if topic not in catalog.topics():
            return None
        segments = catalog.segments(topic)[::-1]
        if before is not None:
            segments = [s for s in segments if s.name < before]
        size = min(limit, MAX_LIST_LIMIT)  # a page, not the listing: `next` leads to the rest
        chosen = segments[:size]
        more = len(segments) > size
        return [catalog.describe(s).as_json() for s in chosen], chosen[-1].name if more and chosen else None

    found = await anyio.to_thread.run_sync(page)
    if found is None:
        raise _not_archived(topic)
    items, next_before = found
    for item in items:
        item["url"] = f"/topics/{topic}/archive/{item['name']}"
    next_url = (
        f"/topics/{topic}/archive?limit={min(limit, MAX_LIST_LIMIT)}&before={next_before}" if next_before else None
    )
    return JSONResponse({"topic": topic, "segments": items, "next": next_url})


def _bound(name: str, value: str | None, topic: str) -> Bound | None:
    if value is None or value == "":
        return None
    try:
        return Bound.parse(value, topic)
    except ValueError as exc:
        raise ClientError(400, "invalid_parameter", f"{name}: {exc}") from None


def _label(bound: Bound | None, default: str) -> str:
    return default if bound is None else _FILENAME_UNSAFE.sub("-", bound.text)[:64]


@router.get(
    "/topics/{topic}/archive/export",
    summary="Export a range of the archive",
    responses={200: {"content": {"application/x-ndjson": {}}, "description": "NDJSON, streamed"}},
)
async def export(
    request: Request,
    topic: str,
    start: Annotated[str | None, Query(alias="from", description="first event: an id, or an ISO 8601 time")] = None,
    end: Annotated[str | None, Query(alias="to", description="last event id (inclusive) or time (exclusive)")] = None,
) -> Response:
    """One NDJSON download of the events from `from` to `to`, across segments, decompressed as it streams."""
    catalog = check_read(request, topic)
    rng = Range(_bound("from", start, topic), _bound("to", end, topic))
    if topic not in await anyio.to_thread.run_sync(catalog.topics):
        raise _not_archived(topic)
    try:
        planned = await anyio.to_thread.run_sync(plan, catalog, topic, rng)
    except RangeError as exc:
        code = "invalid_parameter" if exc.status == 400 else "id_not_archived"
        raise ClientError(exc.status, code, str(exc)) from None

    filename = f"{topic}_{_label(rng.start, 'start')}_{_label(rng.end, 'end')}.ndjson"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"', "Cache-Control": "no-store"}
    return StreamingResponse(stream_plan(planned), media_type="application/x-ndjson", headers=headers)


@router.head("/topics/{topic}/archive/{segment}", include_in_schema=False)
@router.get("/topics/{topic}/archive/{segment}", summary="Download a segment", responses=_SEGMENT_RESPONSES)
async def segment(request: Request, topic: str, segment: str) -> Response:
    """A segment file, served as a file: Range (206, multipart/byteranges, 416), ETag, Last-Modified, 304, HEAD."""
    catalog = check_read(request, topic)
    info = await anyio.to_thread.run_sync(catalog.segment, topic, segment)
    if info is None:
        raise ClientError(404, "not_found", f"topic {topic!r} has no segment {segment[:120]!r} (see its listing)")
    return segment_response(info, request.headers)
