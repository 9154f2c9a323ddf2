"""Stdin: one event per line of standard input (NDJSON, or text lines with `text=True`).

Pipes and terminals are read through the event loop (`connect_read_pipe`), so
nothing blocks it and Ctrl-C stops at once even while no input comes; a
regular file (`< backlog.ndjson`) is read in a worker thread, since a file
never makes a read wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import stat
import sys
from collections.abc import AsyncGenerator
from typing import BinaryIO

from ._base import Publish
from ._exceptions import InvalidData
from ._lines import DEFAULT_MAX_LINE_BYTES, LineBuffer, encode_line

logger = logging.getLogger(__name__)

_READ_CHUNK = 256 * 1024


async def read_chunks(stream: BinaryIO) -> AsyncGenerator[bytes, None]:
    """The bytes of `stream` as they become available, without blocking the event loop."""
    fd = stream.fileno()
    if stat.S_ISREG(os.fstat(fd).st_mode):
        while chunk := await asyncio.to_thread(os.read, fd, _READ_CHUNK):
            yield chunk
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=_READ_CHUNK, loop=loop)
    transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader, loop=loop), stream)
    try:
        while chunk := await reader.read(_READ_CHUNK):
            yield chunk
    finally:
        transport.close()


class Stdin:
    """Publish each line of `stream` (default: standard input) on `topic`, until the input ends.

    NDJSON by default: each line must hold one JSON value, and lines that do not are
    skipped, logged and counted in `skipped`. With `text=True` each line becomes a JSON
    string. Blank lines are ignored.
    """

    def __init__(
        self,
        topic: str,
        *,
        text: bool = False,
        stream: BinaryIO | None = None,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
    ) -> None:
        self.topic = topic
        self.text = text
        self.stream = stream
        self.max_line_bytes = max_line_bytes
        self.published = 0
        self.skipped = 0
        self.lines = 0

    async def run(self, publish: Publish) -> None:
        buffer = LineBuffer(self.max_line_bytes)
        stream = self.stream if self.stream is not None else sys.stdin.buffer
        try:
            async with contextlib.aclosing(read_chunks(stream)) as chunks:
                async for chunk in chunks:
                    for line in buffer.feed(chunk):
                        await self._publish_line(publish, line)
            for line in buffer.end():
                await self._publish_line(publish, line)
        finally:
            self.skipped += buffer.too_long

    async def _publish_line(self, publish: Publish, line: bytes) -> None:
        self.lines += 1
        try:
            data = encode_line(line, text=self.text)
            if data is not None:
                await publish(self.topic, data)
                self.published += 1
        except InvalidData as exc:
            self.skipped += 1
            logger.warning("stdin line %d skipped: %s", self.lines, exc)
