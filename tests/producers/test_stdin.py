"""Stdin: NDJSON or text lines from a pipe or a file, without blocking the loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator
from typing import BinaryIO

import orjson
import pytest

from producers import Stdin

from ..support.waiting import eventually


@pytest.fixture
def pipe() -> Iterator[tuple[BinaryIO, int]]:
    """A pipe: its read end as a binary file (what Stdin reads), and the write end's fd."""
    read_fd, write_fd = os.pipe()
    with open(read_fd, "rb", buffering=0) as stream:
        try:
            yield stream, write_fd
        finally:
            with contextlib.suppress(OSError):
                os.close(write_fd)


class Collect:
    def __init__(self) -> None:
        self.data: list[object] = []

    async def __call__(self, topic: str, data: bytes) -> None:
        self.data.append(orjson.loads(data))


async def test_stdin_publishes_ndjson_lines_from_a_pipe_as_they_come(pipe):
    stream, write_fd = pipe
    collect = Collect()
    producer = Stdin("in", stream=stream)
    task = asyncio.create_task(producer.run(collect))
    os.write(write_fd, b'{"n": 1}\n{"n":')
    # The first line is published while the pipe stays open (and the second is unfinished).
    await eventually(lambda: collect.data == [{"n": 1}])
    os.write(write_fd, b" 2}\r\nnot json\n\n[3]")
    os.close(write_fd)
    async with asyncio.timeout(5):
        await task
    assert collect.data == [{"n": 1}, {"n": 2}, [3]]
    assert (producer.published, producer.skipped) == (3, 1)


async def test_stdin_text_lines_from_a_file(tmp_path):
    path = tmp_path / "in.txt"
    path.write_bytes(b"first\r\nsecond \xff\n\nthird")  # CRLF, a byte that is not UTF-8, no final newline
    collect = Collect()
    with path.open("rb") as stream:
        producer = Stdin("in", text=True, stream=stream)
        await producer.run(collect)
    assert collect.data == ["first", "third"]
    assert (producer.lines, producer.published, producer.skipped) == (4, 2, 1)
    assert producer.errors == [
        {"line": 2, "code": "invalid_utf8", "reason": "line is not UTF-8: byte 0xff at column 8 (invalid start byte)"}
    ]


async def test_stdin_stops_promptly_when_cancelled_while_no_input_comes(pipe):
    stream, write_fd = pipe
    collect = Collect()
    task = asyncio.create_task(Stdin("in", stream=stream).run(collect))
    os.write(write_fd, b"1\n")
    await eventually(lambda: collect.data == [1], what="reading the pipe")
    task.cancel()  # while the pipe is open and silent
    async with asyncio.timeout(1):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
