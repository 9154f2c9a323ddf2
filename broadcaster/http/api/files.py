"""Serving an archive segment as a file: Starlette's `FileResponse`, and the gaps it leaves, filled here.

What `FileResponse` (Starlette 1.x) does and we use as it is: `Accept-Ranges: bytes`;
a `Range` of one range (`a-b`, suffix `-N`, open `N-`) -> 206 with `Content-Range`;
several -> `multipart/byteranges`, overlapping ones merged; `If-Range` decides
whether the range is honoured; `HEAD`; `Content-Disposition`; bodies read in
chunks in a worker thread, so memory per download stays at one chunk.

What it does not do, and this module does (the only code that knows its private
parts: `_parse_range_header`, `_handle_simple`; `tests/http/test_files.py` fails
loudly if they change):

- conditional GET: `If-None-Match` (weak comparison, `*`) and, without it,
  `If-Modified-Since` -> 304 with the validators (RFC 9110 13.1.2, 13.1.3, 13.2.2);
- our error shape: a malformed or unsatisfiable byte range is a 416 with
  `Content-Range: bytes */LEN` and a JSON error (`FileResponse` answers a malformed
  one with a plain-text 400); a range in another unit is ignored (RFC 9110 14.2);
- a file that grows while it is served (the open segment): its length is fixed at
  the request (its last whole line) and its ETag is weak. `FileResponse` takes the
  length from the `stat_result` we pass, but its full-body path reads to the end of
  the file, which for a growing file would send more than `Content-Length`: we
  override that path to stop at the length;
- `If-Range` is decided here, with the strong comparison RFC 9110 13.1.5 asks for
  (a weak ETag never matches), so that `FileResponse` only ever sees a range we
  validated or none.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
from email.utils import formatdate, parsedate_to_datetime

import anyio
from starlette.datastructures import Headers
from starlette.responses import FileResponse, MalformedRangeHeader, RangeNotSatisfiable, Response
from starlette.types import Receive, Scope, Send

from ...archive import SegmentInfo
from ..errors import error_response

CHUNK_BYTES = 131072
_ETAG_RE = re.compile(r'(?:W/)?"[^"]*"|\*')


def etag_of(info: SegmentInfo) -> str:
    """Strong for a closed segment (it never changes); weak for the open one, whose bytes grow."""
    if info.open:
        # The same length means the same bytes: the file is append-only and served in whole lines.
        identity = hashlib.md5(f"{info.name}:{info.inode}".encode(), usedforsecurity=False).hexdigest()[:16]
        return f'W/"{identity}-{info.size}"'
    digest = hashlib.md5(f"{info.name}:{info.inode}:{info.size}:{info.mtime}".encode(), usedforsecurity=False)
    return f'"{digest.hexdigest()[:24]}"'


def _opaque(tag: str) -> str:
    return tag[2:] if tag.startswith("W/") else tag


def _not_modified(headers: Headers, etag: str, last_modified: float) -> bool:
    if_none_match = headers.get("if-none-match")
    if if_none_match is not None:
        tags = _ETAG_RE.findall(if_none_match)
        return "*" in tags or _opaque(etag) in {_opaque(t) for t in tags}
    if_modified_since = headers.get("if-modified-since")
    if if_modified_since is not None:
        try:
            since = parsedate_to_datetime(if_modified_since).timestamp()
        except (TypeError, ValueError, IndexError):
            return False  # an invalid date is ignored (RFC 9110 13.1.3)
        return int(last_modified) <= since
    return False


def _range_applies(headers: Headers, etag: str, last_modified: str) -> bool:
    """Whether a `Range` is honoured: yes without `If-Range`, else only if it names the current version, strongly."""
    if_range = headers.get("if-range")
    if if_range is None:
        return True
    if if_range.startswith("W/") or etag.startswith("W/"):
        return False
    return if_range in (etag, last_modified)


class _SegmentResponse(FileResponse):
    """`FileResponse` whose full body stops at `length` (the file may be growing)."""

    # Starlette's 64 KB chunks: with 10 clients of a 1 GB file, 128 KB halves the thread hops but puts the
    # server's RSS growth near 10 MB, 256 KB past it (docs/benchmarks.md). Memory is the promise here.

    def __init__(self, info: SegmentInfo, *, headers: dict[str, str], ignore_range: bool) -> None:
        # The served length, not the file's: FileResponse takes ranges and Content-Length from it (and
        # the validators, which we set ourselves). No stat here: this runs on the event loop.
        fixed = os.stat_result((stat.S_IFREG | 0o444, info.inode, 0, 1, 0, 0, info.size, 0, int(info.mtime), 0))
        media_type = "application/gzip" if info.gzip else "application/x-ndjson"
        super().__init__(
            info.path, headers=headers, media_type=media_type, filename=f"{info.topic}-{info.name}", stat_result=fixed
        )
        self.length = info.size
        self.ignore_range = ignore_range

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.ignore_range:
            scope = {**scope, "headers": [(k, v) for k, v in scope["headers"] if k not in (b"range", b"if-range")]}
        await super().__call__(scope, receive, send)

    async def _handle_simple(self, send: Send, send_header_only: bool, send_pathsend: bool) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        if send_header_only or not self.length:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        remaining = self.length
        file = await anyio.open_file(self.path, mode="rb")
        try:
            while remaining > 0:
                chunk = await file.read(min(self.chunk_size, remaining))
                remaining = remaining - len(chunk) if chunk else 0
                await send({"type": "http.response.body", "body": chunk, "more_body": remaining > 0})
        finally:
            with anyio.CancelScope(shield=True):
                await file.aclose()


def segment_response(info: SegmentInfo, request_headers: Headers) -> Response:
    """The answer to GET or HEAD of a segment: 200, 206, 304 or 416, with validators."""
    etag = etag_of(info)
    last_modified = formatdate(info.mtime, usegmt=True)
    headers = {"etag": etag, "last-modified": last_modified}
    if info.open:
        headers["cache-control"] = "no-cache"  # it grows: revalidate (a 304 is cheap)
    if _not_modified(request_headers, etag, info.mtime):
        return Response(status_code=304, headers=headers)
    http_range = request_headers.get("range")
    use_range = http_range is not None and _range_applies(request_headers, etag, last_modified)
    if use_range and http_range is not None:
        unit = http_range.partition("=")[0].strip().lower()
        if unit != "bytes":
            use_range = False  # another unit: ignored, the whole file
        else:
            try:
                FileResponse._parse_range_header(http_range, info.size)
            except (MalformedRangeHeader, RangeNotSatisfiable) as exc:
                message = str(getattr(exc, "content", "") or "") or "the range is not satisfiable"
                return error_response(
                    416,
                    "range_not_satisfiable",
                    f"Range {http_range[:100]!r} cannot be served from {info.size} bytes: {message}",
                    {"Content-Range": f"bytes */{info.size}", **headers},
                )
    return _SegmentResponse(info, headers=headers, ignore_range=not use_range)
