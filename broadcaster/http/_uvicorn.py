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
  as uvicorn's own supervisor does (used by `http/supervisor.py`).

`tests/http/test_uvicorn_adapter.py` checks each of these against the installed uvicorn
and fails loudly if an upgrade changes one; pyproject.toml pins the tested range. Under
another ASGI server (or an h11 cycle, which frames chunks itself) `connection_of`
returns None and streams take the plain ASGI path: correct, only slower.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Send
from uvicorn._subprocess import get_subprocess

__all__ = ["Connection", "connection_of", "get_subprocess", "http_chunk"]


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
