"""Raw HTTP/1.1 over a socket, for requests no well-behaved client would send."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import orjson


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes
    closed: bool  # the server closed the connection after it

    def error_code(self) -> str:
        return str(orjson.loads(self.body)["error"]["code"])


def parse_response(raw: bytes, closed: bool) -> RawResponse:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = headers.get("content-length")
    if length is not None:
        body = body[: int(length)]
    return RawResponse(status, headers, body, closed)


async def read_response(reader: asyncio.StreamReader, within: float = 10.0) -> RawResponse:
    """One response with a Content-Length body; `closed` tells whether EOF followed it within a second."""
    async with asyncio.timeout(within):
        head = await reader.readuntil(b"\r\n\r\n")
        response = parse_response(head, False)
        length = int(response.headers.get("content-length", "0"))
        response.body = await reader.readexactly(length)
    with contextlib.suppress(TimeoutError, ConnectionError):
        async with asyncio.timeout(1.0):
            response.closed = await reader.read(1) == b""
    return response


async def exchange(port: int, *parts: bytes, within: float = 10.0) -> RawResponse:
    """Send `parts` (written in order, stopping if the server closes) and read the one answer."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        for part in parts:
            try:
                writer.write(part)
                await writer.drain()
            except ConnectionError:
                break
        return await read_response(reader, within)
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()
