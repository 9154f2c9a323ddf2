"""Request-head hygiene: bounds on a request head's size, field count and time, and the answers past them.

What uvicorn 0.3x and httptools (llhttp, strict) already do, and are left to do:
conflicting `Content-Length` and `Transfer-Encoding`, duplicate lengths, bad
chunk sizes, obsolete line folding, control bytes in names: the parser refuses
them and the connection is closed. What neither does, and `HeadGuard` adds:

- a bound on the head: httptools keeps a URL and each header in memory as it
  arrives, with no limit (four clients sending 100 MB of headers took the
  server to 454 MB). Over `max_head_bytes` the answer is 414 (the URL) or 431
  (the headers), and over `max_headers` fields 431;
- a total time for the head (`header_timeout_s`, from the connection's start
  or, on a kept-alive connection, from the next request's first byte): uvicorn
  has none, so a client that dribbles a byte a second (slowloris), or sends
  nothing at all, holds its socket forever;
- a `Transfer-Encoding` other than plain `chunked` (llhttp accepts `gzip, chunked`
  and would pass the compressed bytes on as the body): 400;
- answers as JSON naming the problem (uvicorn's 400 is a plain-text "Invalid
  HTTP request received." without the parser's reason).

`HeadGuard` only counts and decides; the parser's callbacks reach it through
`_uvicorn.GuardedHttpToolsProtocol` (uvicorn's internals stay in that module),
which writes the answer (`refusal_bytes`) and closes the connection after a
lingering close.
"""

from __future__ import annotations

import http
from dataclasses import dataclass
from typing import NamedTuple

import orjson

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100


@dataclass(frozen=True, slots=True)
class HeadLimits:
    max_head_bytes: int = MAX_HEAD_BYTES
    max_headers: int = MAX_HEADERS
    header_timeout_s: float = 10.0


class Refusal(NamedTuple):
    status: int
    code: str
    message: str


def refusal_bytes(refusal: Refusal) -> bytes:
    """The whole HTTP/1.1 answer: status line, headers (`connection: close`) and the JSON error."""
    body = orjson.dumps({"error": {"code": refusal.code, "message": refusal.message}})
    phrase = http.HTTPStatus(refusal.status).phrase
    head = f"HTTP/1.1 {refusal.status} {phrase}\r\ncontent-type: application/json\r\n"
    return (head + f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body


class HeadGuard:
    """The bounds of the request head a connection is receiving; each check returns a `Refusal` or None."""

    __slots__ = ("limits", "in_head", "_received", "_url_bytes", "_header_bytes", "_headers")

    def __init__(self, limits: HeadLimits) -> None:
        self.limits = limits
        self.in_head = False
        self._received = self._url_bytes = self._header_bytes = self._headers = 0

    def begin(self) -> None:
        """A request head starts."""
        self.in_head = True
        self._received = self._url_bytes = self._header_bytes = self._headers = 0

    def complete(self) -> None:
        """The head is complete: the request goes to the app."""
        self.in_head = False

    def url(self, size: int) -> Refusal | None:
        self._url_bytes += size
        if self._url_bytes > self.limits.max_head_bytes:
            return Refusal(414, "uri_too_long", self._too_large("URL"))
        return None

    def header(self, name: bytes, value: bytes) -> Refusal | None:
        self._headers += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._headers > self.limits.max_headers:
            return Refusal(
                431, "too_many_headers", f"the request has more than {self.limits.max_headers} header fields"
            )
        if self._url_bytes + self._header_bytes > self.limits.max_head_bytes:
            return Refusal(431, "headers_too_large", self._too_large("request head"))
        if name.lower() == b"transfer-encoding" and value.strip().lower() != b"chunked":
            shown = value[:40].decode("latin-1")
            message = f"Transfer-Encoding {shown!r} is not supported: send chunked or a Content-Length"
            return Refusal(400, "unsupported_transfer_encoding", message)
        return None

    def received(self, size: int) -> Refusal | None:
        """`size` bytes were fed to the parser and the head is still incomplete.

        httptools holds a partial header in memory until it ends, so the head is
        also bounded as it arrives, a read at a time.
        """
        self._received += size
        if self._received > self.limits.max_head_bytes:
            return Refusal(431, "headers_too_large", self._too_large("request head"))
        return None

    def timed_out(self) -> Refusal:
        message = f"the request head did not arrive within {self.limits.header_timeout_s:g}s (header_timeout_s)"
        return Refusal(408, "header_timeout", message)

    @staticmethod
    def malformed(reason: object) -> Refusal:
        return Refusal(400, "bad_request", f"invalid HTTP request: {reason}")

    def _too_large(self, what: str) -> str:
        return f"the {what} is over the limit of {self.limits.max_head_bytes} bytes"
