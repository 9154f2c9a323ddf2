"""Stdin: one event per line of standard input (NDJSON, or text lines with `text=True`).

Pipes and terminals are read through the event loop (`connect_read_pipe`), so
nothing blocks it and Ctrl-C stops at once even while no input comes; a
regular file (`< backlog.ndjson`) is read in a worker thread, since a file
never makes a read wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import AsyncGenerator
from typing import BinaryIO

from broadcaster import DEFAULT_MAX_EVENT_BYTES, LineSplitter, Publish

from ._lines import LineCounts, LinePublisher

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


class Stdin(LineCounts):
    """Publish each line of `stream` (default: standard input) on `topic`, until the input ends.

    NDJSON by default: each line must hold one JSON value. With `text=True` each line
    becomes a JSON string. The line rules are the server's (README, "Streamed ingest"):
    blank lines are skipped; a line that is not JSON, not UTF-8 or over
    `max_event_bytes` is rejected, logged with its line number and counted in
    `skipped`; `errors` names the first ones.
    """

    def __init__(
        self,
        topic: str,
        *,
        text: bool = False,
        stream: BinaryIO | None = None,
        max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES,
    ) -> None:
        self.topic = topic
        self.text = text
        self.stream = stream
        self.max_event_bytes = max_event_bytes
        self._lines = LinePublisher(topic, text=text, max_event_bytes=max_event_bytes, source="stdin")

    async def run(self, publish: Publish) -> None:
        splitter = LineSplitter.for_events(self.max_event_bytes)
        stream = self.stream if self.stream is not None else sys.stdin.buffer
        async with contextlib.aclosing(read_chunks(stream)) as chunks:
            async for chunk in chunks:
                await self._lines.publish(publish, splitter.feed(chunk))
        await self._lines.publish(publish, splitter.end())
