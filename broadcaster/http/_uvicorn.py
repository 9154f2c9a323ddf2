"""Everything broadcaster relies on in uvicorn beyond the ASGI spec, in one place.

The stream fast path writes events straight to an idle socket, and closes a socket
stuck for `send_timeout_s` without cancelling the request task. Both need uvicorn's
HTTP/1.1 request cycle, which ASGI does not expose. What this module relies on:

- uvicorn's `send` is a bound method of its request cycle (`RequestResponseCycle` of
  `protocols/http/httptools_impl.py`), so `send.__self__` is the cycle;
- `cycle.transport` is the connection's asyncio transport;
- `cycle.chunked_encoding` is True once the response started with chunked transfer
  coding (a streaming response without Content-Length), and then a body chunk on the
  wire is `<hex length>\\r\\n<bytes>\\r\\n` (`http_chunk`);
- `transport.abort()` makes uvicorn's `connection_lost` mark the cycle disconnected and
  wake a `send()` blocked on flow control;
- `uvicorn._subprocess.get_subprocess(config, target, sockets)` starts a worker process
  as uvicorn's own supervisor does (used by `http/supervisor.py`);
- `HttpToolsProtocol` (the connection's protocol) can be subclassed and passed as
  `Config(http=...)`: `GuardedHttpToolsProtocol` hooks its parser callbacks to bound each
  request head (`http/limits/protocol.py` decides, this module only wires it in).

`tests/http/test_uvicorn_adapter.py` checks each of these against the installed uvicorn
and fails loudly if an upgrade changes one; pyproject.toml pins the tested range. Under
another ASGI server (or an h11 cycle, which frames chunks itself) `connection_of`
returns None and streams take the plain ASGI path: correct, only slower.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import Any, cast

import httptools
from starlette.types import Send
from uvicorn._subprocess import get_subprocess
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from .limits.protocol import HeadGuard, HeadLimits, Refusal, refusal_bytes

__all__ = ["Connection", "GuardedHttpToolsProtocol", "connection_of", "get_subprocess", "http_chunk", "http_protocol"]

logger = logging.getLogger(__name__)


def http_chunk(data: bytes) -> bytes:
    """`data` framed as one HTTP/1.1 chunk (chunked transfer coding)."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class Connection:
    """A stream's socket, past uvicorn: write a chunk now if the socket is idle, or abort it."""

    __slots__ = ("_cycle", "_transport")

    def __init__(self, cycle: Any, transport: Any) -> None:
        self._cycle = cycle
        self._transport = transport

    @property
    def chunked(self) -> bool:
        """Whether the response (once started) uses chunked transfer coding, so that `try_write` may frame."""
        return getattr(self._cycle, "chunked_encoding", None) is True

    def busy(self) -> bool:
        """Whether the socket is closing or still holds unsent bytes (a write now would be refused)."""
        transport = self._transport
        return bool(transport.is_closing() or transport.get_write_buffer_size())

    def try_write(self, data: bytes) -> bool:
        """Write `data` as one chunk now, unless the socket is closing or still holds unsent bytes."""
        return self.try_write_framed(http_chunk(data))

    def try_write_framed(self, chunk: bytes) -> bool:
        """`try_write` for bytes already framed by `http_chunk` (one event's chunk, shared by all)."""
        transport = self._transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return False
        transport.write(chunk)
        return True

    def try_write_parts(self, parts: tuple[bytes, bytes]) -> bool:
        """`try_write_framed` for one chunk given in parts (written together: one writev, no join)."""
        transport = self._transport
        if transport.is_closing() or transport.get_write_buffer_size():
            return False
        transport.writelines(parts)
        return True

    def abort(self) -> None:
        """Close the socket at once; uvicorn then wakes a send() stuck on it, which returns."""
        self._transport.abort()


def connection_of(send: Send) -> Connection | None:
    """The connection behind uvicorn's own `send`; None under another server or behind a wrapper."""
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is None:
        return None
    return Connection(cycle, transport)


class _Refused(Exception):
    """Raised from a parser callback to stop parsing once the answer is written."""


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with `protocol.HeadGuard`'s bounds on each request head.

    It relies on `HttpToolsProtocol`'s parser callbacks (`on_message_begin`, `on_url`,
    `on_header`, `on_headers_complete`), `data_received`'s structure (reproduced to
    answer parser errors as JSON) and its `parser`, `transport`, `cycle`, `loop`,
    `client` attributes; `tests/http/test_protocol.py` checks them. A refusal is
    written, then the connection closes after a lingering close: the server stops
    sending (FIN), reads and discards what the client still sends for up to
    `LINGER_S`, then closes. Closing at once with unread input would make the kernel
    send a reset, which can destroy the answer before the client reads it (nginx's
    `lingering_close` exists for the same reason).
    """

    LINGER_S = 2.0

    def __init__(self, *args: Any, limits: HeadLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.guard = HeadGuard(limits)
        self._head_timer: asyncio.TimerHandle | None = None
        self._refused = False

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
            self._refuse(HeadGuard.malformed(exc))
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        if self.guard.in_head:
            self._check(self.guard.received(len(data)))

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self.guard.begin()
        if self._head_timer is None:  # a kept-alive connection's next request: its own time limit
            self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._check(self.guard.url(len(url)), stop=True)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._check(self.guard.header(name, value), stop=True)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self.guard.complete()
        self._disarm_head_timer()
        super().on_headers_complete()

    def _check(self, refusal: Refusal | None, *, stop: bool = False) -> None:
        if refusal is not None:
            self._refuse(refusal)
            if stop:
                raise _Refused

    def _arm_head_timer(self) -> None:
        self._head_timer = self.loop.call_later(self.guard.limits.header_timeout_s, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._refused or self.transport.is_closing():
            return
        if self.guard.in_head:
            self._refuse(self.guard.timed_out())
        elif self.cycle is None:
            self.transport.close()  # connected and never sent a byte: nothing to answer

    def _refuse(self, refusal: Refusal) -> None:
        """Answer with `refusal` (unless a response already started), then close after lingering."""
        if self._refused:
            return
        self._refused = True
        self._disarm_head_timer()
        peer = f"{self.client[0]}:{self.client[1]}" if self.client else "unknown"
        logger.info("refused a request from %s: %d %s", peer, refusal.status, refusal.message)
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            # A body error after the app started: the app sees a disconnect; its answer is not sent.
            cycle.disconnected = True
            cycle.message_event.set()
            if cycle.response_started:
                self.transport.close()
                return
        transport = self.transport
        transport.write(refusal_bytes(refusal))
        if transport.can_write_eof():
            transport.write_eof()
            self.loop.call_later(self.LINGER_S, transport.close)
        else:
            transport.close()


def http_protocol(limits: HeadLimits) -> type[asyncio.Protocol]:
    """The protocol class for uvicorn's `Config(http=...)`: httptools with `limits` on every request head."""
    return cast("type[asyncio.Protocol]", functools.partial(GuardedHttpToolsProtocol, limits=limits))
