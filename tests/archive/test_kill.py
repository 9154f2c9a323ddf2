"""Acceptance 1: `broadcaster archive` killed with SIGKILL three times while a producer publishes on Redis.

The files end holding every published event exactly once, in order, checked against
the producer's record of ids; after each kill every whole line parses (at most an
unfinished last line, which the next start cuts). The kills come at random moments spread
over the publishing, whatever the archiver is doing then (starting up, catching up, writing).

CI runs 3 000 events at 400/s (7.5 s of publishing; a restart takes a second or two). The full
size runs by hand:

    ARCHIVE_KILL_EVENTS=50000 ARCHIVE_KILL_RATE=1000 pytest -q tests/archive/test_kill.py -s
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path

import orjson
import pytest

from broadcaster import Hub, Settings
from broadcaster.archive._layout import STATE_NAME, segment_files

from ..support.waiting import eventually

EVENTS = int(os.environ.get("ARCHIVE_KILL_EVENTS", "3000"))
RATE = float(os.environ.get("ARCHIVE_KILL_RATE", "400"))
KILLS = 3
TOPIC = "kill.sensor"

pytestmark = [pytest.mark.redis, pytest.mark.e2e, pytest.mark.timeout(int(EVENTS / RATE) + 60)]


def _scan(root: Path) -> tuple[list[str], int]:
    """The event ids of the topic's whole lines, and the bytes of unfinished last lines. Fails on a corrupt line."""
    ids: list[str] = []
    partial = 0
    for path in segment_files(root / TOPIC).values():
        raw = path.read_bytes()
        whole, _, rest = raw.rpartition(b"\n")
        partial += len(rest)
        for line in whole.split(b"\n") if whole else []:
            record = orjson.loads(line)  # raises on a corrupt or interleaved line
            assert "control" not in record, f"unexpected control line {record}"
            ids.append(record["id"])
    return ids, partial


async def _start(root: Path, redis_url: str) -> asyncio.subprocess.Process:
    args = ["-m", "broadcaster", "archive", "--dir", str(root), "--topics", "kill.*", "--redis-url", redis_url]
    args += ["--history-size", str(EVENTS), "--archive-segment-bytes", "65536", "--log-level", "warning"]
    return await asyncio.create_subprocess_exec(sys.executable, *args, stderr=asyncio.subprocess.PIPE)


def _opened_by(root: Path, process: asyncio.subprocess.Process) -> bool:
    """Whether the archiver has opened the directory (its state file names its pid): its signal handlers are set."""
    assert process.returncode is None, "the archiver exited"
    try:
        return bool(orjson.loads((root / STATE_NAME).read_bytes())["pid"] == process.pid)
    except (OSError, orjson.JSONDecodeError, KeyError):
        return False


async def _produce(hub: Hub, record: list[str]) -> None:
    """EVENTS events at a steady RATE, in batches every 10 ms; `record` gets each accepted id."""
    per_tick = max(1, int(RATE / 100))
    started = time.monotonic()
    n = 0
    while n < EVENTS:
        batch = [("message", orjson.dumps({"n": n + i})) for i in range(min(per_tick, EVENTS - n))]
        events = await hub.publish_many(TOPIC, batch)
        record.extend(e.id for e in events)
        n += len(events)
        await asyncio.sleep(max(0.0, started + n / RATE - time.monotonic()))


async def test_archiver_killed_three_times_keeps_every_event_exactly_once_in_order(redis_url, tmp_path):
    rng = random.Random(14)
    record: list[str] = []
    partial_after_kill: list[int] = []
    writing: list[bool] = []  # whether each killed archiver had opened its directory (else: killed starting up)
    run_s = EVENTS / RATE
    async with Hub(settings=Settings(redis_url=redis_url, history_size=EVENTS)) as hub:
        process = await _start(tmp_path, redis_url)
        await eventually(lambda: _opened_by(tmp_path, process), within=20, what="the archiver started")
        started = time.monotonic()
        producer = asyncio.create_task(_produce(hub, record))
        try:
            for kill in range(KILLS):
                # Kills at random moments spread over the publishing, whatever the archiver is doing then.
                at = started + run_s * (kill + rng.uniform(0.2, 0.8)) / (KILLS + 0.5)
                await asyncio.sleep(max(0.0, at - time.monotonic()))
                assert not producer.done(), "the producer finished before the kill"
                writing.append(_opened_by(tmp_path, process))
                process.send_signal(signal.SIGKILL)
                assert await process.wait() == -signal.SIGKILL
                ids, partial = _scan(tmp_path)  # every whole line parses, right after the kill
                partial_after_kill.append(partial)
                assert ids == record[: len(ids)], f"kill {kill + 1}: the files do not match the producer's record"
                process = await _start(tmp_path, redis_url)
            await producer
            await eventually(lambda: len(_scan(tmp_path)[0]) >= len(record), within=30, interval=0.05)
            await eventually(lambda: _opened_by(tmp_path, process), within=20, what="the archiver started")
            process.send_signal(signal.SIGTERM)
            assert await process.wait() == 0
        finally:
            producer.cancel()
            if process.returncode is None:
                process.kill()
                await process.wait()
    ids, partial = _scan(tmp_path)
    assert len(record) == EVENTS
    assert partial == 0
    assert len(ids) == len(set(ids)) == EVENTS, f"{len(ids)} lines, {len(set(ids))} distinct, {EVENTS} published"
    assert ids == record  # every event once, in the producer's order
    print(f"\n{EVENTS} events at {RATE:.0f}/s, {KILLS} SIGKILLs while publishing; it was running: {writing}")
    print(f"unfinished bytes after each kill: {partial_after_kill}")
