"""Just enough HTTP/1.1 over asyncio streams for publishing and health checks.

Hand-written on purpose: an HTTP client library would cost more CPU per request than
the servers under test spend answering it.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

MAX_HEAD_BYTES = 64 * 1024


class HTTPError(Exception):
    """A response that could not be read or parsed."""


@dataclass(frozen=True, slots=True)
class Response:
    """A fully read response."""

    status: int
    headers: dict[str, str]
    body: bytes


def request_head(method: str, host: str, port: int, path: str, headers: dict[str, str] | None = None) -> bytes:
    """The request line and headers, ending with the blank line."""
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    lines.extend(f"{k}: {v}" for k, v in (headers or {}).items())
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a response head (without the blank line)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1."):
        raise HTTPError(f"bad status line {lines[0]!r}")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(parts[1]), headers


def is_chunked(headers: dict[str, str]) -> bool:
    return "chunked" in headers.get("transfer-encoding", "").lower()


async def read_response(reader: asyncio.StreamReader) -> Response:
    """Read one whole response (Content-Length, chunked, or until close)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        raise HTTPError("connection closed before the response head") from exc
    status, headers = parse_head(head[:-4])
    if is_chunked(headers):
        parts: list[bytes] = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")
                break
            parts.append(await reader.readexactly(size + 2))
        body = b"".join(p[:-2] for p in parts)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body = await reader.read()
    return Response(status, headers, body)


async def get(host: str, port: int, path: str, *, timeout_s: float = 2.0) -> Response:
    """One GET on a fresh connection."""
    async with asyncio.timeout(timeout_s):
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(request_head("GET", host, port, path, {"Connection": "close"}))
            return await read_response(reader)
        finally:
            writer.close()


async def wait_ready(host: str, port: int, path: str, *, timeout_s: float, alive: object = None) -> None:
    """Poll ``GET path`` until it answers 200; raise ``TimeoutError`` after ``timeout_s``.

    ``alive`` is an optional ``asyncio.subprocess.Process``: if it exits, give up at once.
    """
    async with asyncio.timeout(timeout_s):
        while True:
            if isinstance(alive, asyncio.subprocess.Process) and alive.returncode is not None:
                raise HTTPError(f"process exited with {alive.returncode} before {path} answered")
            try:
                if (await get(host, port, path)).status == 200:
                    return
            except (OSError, HTTPError, TimeoutError):
                pass
            await asyncio.sleep(0.1)
