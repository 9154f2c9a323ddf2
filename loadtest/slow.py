"""Subscribers that connect, ask for a stream, and never read a byte.

A small ``SO_RCVBUF`` (set before ``connect`` so the window is negotiated small) makes
the kernel stop accepting data early, so the server's own buffering shows at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

_TCP_ESTABLISHED = 1


async def open_slow(host: str, port: int, request: bytes, n: int, *, rcvbuf: int = 4096) -> list[socket.socket]:
    """Open ``n`` never-reading subscribers; the caller closes them (see ``close_slow``)."""
    loop = asyncio.get_running_loop()
    socks: list[socket.socket] = []
    for _ in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setblocking(False)
        await loop.sock_connect(s, (host, port))
        await loop.sock_sendall(s, request)
        socks.append(s)
    return socks


def closed_by_server(s: socket.socket) -> bool:
    """Whether the server has closed or reset this connection, as far as TCP can tell.

    A FIN queued behind unread data is not seen until that data is read, so this is a lower bound.
    """
    try:
        state = s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0]
    except OSError:
        return True
    return state != _TCP_ESTABLISHED


def close_slow(socks: list[socket.socket]) -> int:
    """Close them all; return how many the server had already closed."""
    closed = sum(closed_by_server(s) for s in socks)
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()
    return closed
