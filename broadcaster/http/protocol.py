"""Request-head hygiene in uvicorn's httptools protocol: size, field count, a total time for the head.

What uvicorn 0.3x and httptools (llhttp, strict) already do, and are left to do:
conflicting `Content-Length` and `Transfer-Encoding`, duplicate lengths, bad
chunk sizes, obsolete line folding, control bytes in names: the parser refuses
them and uvicorn answers 400 and closes. What neither does, and this subclass
adds:

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

Each refusal is written, then the connection is closed after a short
lingering close: the server stops sending (FIN), reads and discards what the
client is still sending for up to `LINGER_S`, then closes. Closing at once
with unread input makes the kernel send a reset, which can destroy the answer
before the client reads it (nginx's `lingering_close` exists for the same reason).

This module depends on `HttpToolsProtocol`'s callbacks (`on_message_begin`,
`on_url`, `on_header`, `on_headers_complete`) and attributes (`parser`,
`transport`, `cycle`, `client`); `tests/http/test_protocol.py` fails if an
uvicorn upgrade changes them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from dataclasses import dataclass
from typing import Any, cast

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from .._config import Settings

logger = logging.getLogger(__name__)

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
#: How long a refused connection's further input is read and discarded before the socket closes.
LINGER_S = 2.0


@dataclass(frozen=True, slots=True)
class HeadLimits:
    max_head_bytes: int = MAX_HEAD_BYTES
    max_headers: int = MAX_HEADERS
    header_timeout_s: float = 10.0


class _Refused(Exception):
    """Raised from a parser callback to stop parsing once the answer is written."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bounded request head and a time limit on it (module docstring)."""

    def __init__(self, *args: Any, limits: HeadLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._head_timer: asyncio.TimerHandle | None = None
        self._in_head = False
        self._head_bytes = 0  # bytes of the chunks received while the head is incomplete
        self._url_bytes = 0
        self._header_bytes = 0
        self._header_count = 0
        self._refused = False

    # Connection and data

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering: the answer is out, the rest is discarded
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserCallbackError:
            if self._refused:
                return
            raise
        except httptools.HttpParserError as exc:
            self._refuse(400, "bad_request", f"invalid HTTP request: {exc}")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self._in_head:
            # httptools holds a partial header in memory until it ends: bound the head as it arrives.
            self._head_bytes += len(data)
            if self._head_bytes > self.limits.max_head_bytes:
                self._refuse(431, "headers_too_large", self._too_large("request head"))

    # Parser callbacks

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = self._url_bytes = self._header_bytes = self._header_count = 0
        if self._head_timer is None:  # a kept-alive connection's next request: its own time limit
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._url_bytes += len(url)
        if self._url_bytes > self.limits.max_head_bytes:
            self._refuse(414, "uri_too_long", self._too_large("URL"))
            raise _Refused
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        self._header_bytes += len(name) + len(value) + 4
        if self._header_count > self.limits.max_headers:
            message = f"the request has more than {self.limits.max_headers} header fields"
            self._refuse(431, "too_many_headers", message)
            raise _Refused
        if self._url_bytes + self._header_bytes > self.limits.max_head_bytes:
            self._refuse(431, "headers_too_large", self._too_large("request head"))
            raise _Refused
        if name.lower() == b"transfer-encoding" and value.strip().lower() != b"chunked":
            # llhttp takes `gzip, chunked` and would hand the app compressed bytes as if they were the body.
            message = (
                f"Transfer-Encoding {value[:40].decode('latin-1')!r} is not supported: send chunked or a Content-Length"
            )
            self._refuse(400, "unsupported_transfer_encoding", message)
            raise _Refused
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    # Refusals

    def _too_large(self, what: str) -> str:
        return f"the {what} is over the limit of {self.limits.max_head_bytes} bytes"

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.limits.header_timeout_s, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if self._in_head:
            message = f"the request head did not arrive within {self.limits.header_timeout_s:g}s (header_timeout_s)"
            logger.info("closing a connection from %s: %s", _peer(self.client), message)
            self._refuse(408, "header_timeout", message, log=False)
        elif self.cycle is None:
            self.transport.close()  # connected and never sent a byte: nothing to answer

    def _refuse(self, status: int, code: str, message: str, *, log: bool = True) -> None:
        """Answer `status` with a JSON error (unless a response already started), then close after lingering."""
        if self._refused:
            return
        self._refused = True
        self._disarm_head_timer()
        if log:
            logger.info("refused a request from %s: %d %s", _peer(self.client), status, message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A body error after the app started: the app sees a disconnect; its answer is not sent.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
                return
        body = orjson.dumps({"error": {"code": code, "message": message}})
        head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body)
        transport = self.transport
        transport.write(STATUS_LINE[status] + head + body)
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(LINGER_S, transport.close)
        else:
            transport.close()


def _peer(client: tuple[str, int] | None) -> str:
    return f"{client[0]}:{client[1]}" if client else "unknown"


def http_protocol(settings: Settings) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `Config(http=...)`: httptools with the limits of `settings`."""
    limits = HeadLimits(header_timeout_s=settings.header_timeout_s)
    return cast("type[asyncio.Protocol]", functools.partial(GuardedHttpToolsProtocol, limits=limits))
