"""Streamed ingest: NDJSON or text lines and backlog uploads on POST /topics/{topic}/events."""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import Response

from .._hub import Hub
from .errors import ClientError

SUPPORTED = ("application/json", "application/x-ndjson", "text/plain", "multipart/form-data")


async def ingest(request: Request, hub: Hub, topic: str, event_type: str, kind: str) -> Response:
    """Publish a streamed body line by line and answer with a report."""
    raise ClientError(
        415,
        "unsupported_media_type",
        f"Content-Type {kind!r} is not supported: send application/json (one event; with curl, "
        "-H 'Content-Type: application/json')",
    )
