"""Request bodies: content types and the bounded read of one JSON event."""

from __future__ import annotations

from fastapi import Request

from ..._exceptions import InvalidLine
from ..._lines import json_data
from ..errors import ClientError


def media_type(request: Request) -> str:
    """The request's media type, lower-cased, without parameters ('' if none)."""
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def declared_length(request: Request) -> int | None:
    raw = request.headers.get("content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise ClientError(400, "bad_request", f"Content-Length {raw!r} is not a number") from None


async def read_limited(request: Request, limit: int, what: str) -> bytes:
    """The whole body, refusing (413) as soon as it passes `limit` bytes, without reading the rest."""
    length = declared_length(request)
    if length is not None and length > limit:
        raise ClientError(413, "payload_too_large", f"{what} is {length} bytes, the limit is {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ClientError(413, "payload_too_large", f"{what} is over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_event(request: Request, limit: int) -> bytes:
    """One event's data from an `application/json` body: bounded, then the line rules' `json_data` (one line)."""
    what = "the event body"
    try:
        data = json_data(await read_limited(request, limit, what), limit, what)
    except InvalidLine as exc:
        if exc.code == "too_long":  # re-serialised on one line, it grew past the limit
            raise ClientError(413, "payload_too_large", str(exc)) from None
        raise ClientError(400, exc.code, str(exc)) from None
    if data is None:
        raise ClientError(400, "invalid_json", f"{what} is empty: send one JSON value")
    return data
