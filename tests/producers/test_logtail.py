"""LogTail follows a file like tail -F: appends, rotation by rename, truncation; nothing lost or repeated."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import orjson

from producers import LogTail

from ..support.waiting import eventually


class Collect:
    """A Publish callable that keeps what it gets."""

    def __init__(self) -> None:
        self.events: list[tuple[str, object]] = []

    async def __call__(self, topic: str, data: bytes) -> None:
        self.events.append((topic, orjson.loads(data)))

    @property
    def lines(self) -> list[object]:
        return [data for _, data in self.events]


def _append(path: Path, *lines: str, end: str = "\n") -> None:
    with open(path, "a") as f:
        f.write("".join(line + end for line in lines))


async def test_logtail_follows_rotation_and_truncation_without_loss_or_repeat(tmp_path):
    """Acceptance 4."""
    log = tmp_path / "app.log"
    _append(log, "line 1", "line 2")
    tail = LogTail(log, "logs.app", poll_s=0.01, from_start=True)
    collect = Collect()
    task = asyncio.create_task(tail.run(collect))
    try:
        await eventually(lambda: collect.lines == ["line 1", "line 2"])
        _append(log, "line 3")
        _append(log, "line ", end="")  # a line written in two steps comes out once, whole
        await eventually(lambda: tail.pending_bytes == 5, what="the unfinished line read")
        _append(log, "4")
        # Rotation: lines written just before the rename must still be read from the old file.
        _append(log, "line 5", "line 6")
        os.rename(log, tmp_path / "app.log.1")
        _append(log, "line 7", "line 8")
        await eventually(lambda: len(collect.lines) >= 8, what=f"8 lines, got {collect.lines}")
        assert tail.rotations == 1
        # Truncation (like `> app.log` or copytruncate), then new lines.
        os.truncate(log, 0)
        await eventually(lambda: tail.truncations == 1, what="the truncation seen")
        _append(log, "line 9", "line 10")
        await eventually(lambda: len(collect.lines) >= 10)
        _append(log, "line 11")
        await eventually(lambda: len(collect.lines) >= 11)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert collect.lines == [f"line {n}" for n in range(1, 12)]
    assert {topic for topic, _ in collect.events} == {"logs.app"}
    assert (tail.rotations, tail.truncations, tail.skipped) == (1, 1, 0)


async def test_logtail_starts_at_the_end_and_waits_for_a_missing_file(tmp_path):
    old = tmp_path / "old.log"
    _append(old, "already there")
    collect = Collect()
    tail = LogTail(old, "logs", poll_s=0.01)
    task = asyncio.create_task(tail.run(collect))
    missing = tmp_path / "later.log"
    later = asyncio.create_task(LogTail(missing, "later", poll_s=0.01, ndjson=True).run(collect))
    try:
        await eventually(lambda: tail.following, what="the file opened (at its end)")
        _append(old, "new")
        _append(missing, '{"n": 1}', "not json", '{"n": 2}')
        await eventually(lambda: len(collect.events) == 3, what=f"3 events, got {collect.events}")
    finally:
        for t in (task, later):
            t.cancel()
        await asyncio.gather(task, later, return_exceptions=True)
    assert sorted(collect.events, key=str) == sorted(
        [("logs", "new"), ("later", {"n": 1}), ("later", {"n": 2})], key=str
    )


async def test_logtail_stops_promptly_when_cancelled(tmp_path):
    log = tmp_path / "app.log"
    log.write_text("")
    tail = LogTail(log, "logs", poll_s=5)
    task = asyncio.create_task(tail.run(Collect()))
    await eventually(lambda: tail.following, what="following the file")
    task.cancel()
    async with asyncio.timeout(1):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()


async def test_logtail_rejects_lines_by_the_servers_rules_with_their_numbers(tmp_path):
    """Issue 10 item 5: invalid UTF-8 is rejected (never replaced), like a too-long line; a BOM is dropped."""
    log = tmp_path / "app.log"
    log.write_bytes(b"\xef\xbb\xbffirst\nbad \xff byte\n" + b"x" * 100 + b"\n\nlast\n")
    tail = LogTail(log, "logs", poll_s=0.01, from_start=True, max_event_bytes=64)
    collect = Collect()
    task = asyncio.create_task(tail.run(collect))
    try:
        await eventually(lambda: tail.lines == 5, what="every line read")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert collect.lines == ["first", "last"]
    assert [(e["line"], e["code"]) for e in tail.errors] == [(2, "invalid_utf8"), (3, "too_long")]
    assert tail.skipped == 2 and "byte 0xff at column 5" in tail.errors[0]["reason"]
