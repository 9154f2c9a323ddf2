"""A write that fails mid-way (a full disk): whole lines stay, and the archiver catches up once it can write.

The failure is real: a child process lowers its own RLIMIT_FSIZE, so the kernel refuses
writes past that size with EFBIG, as it refuses them with ENOSPC on a full disk; then it
raises the limit again (the disk was cleaned up).
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import orjson

from .support import event_numbers, read_topic

CHILD = textwrap.dedent(
    """
    import asyncio, resource, signal, sys
    from pathlib import Path
    import orjson
    from broadcaster import Hub, Settings
    from broadcaster.archive import Archiver, ArchiveOptions
    from broadcaster.http.streams.encoders import NDJSONEncoder

    async def main(root):
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal
        _, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        async with Hub(settings=Settings()) as hub:
            archiver = Archiver(hub, root, ["t"], ArchiveOptions(), render=NDJSONEncoder().download)
            async with archiver:
                await hub.publish_many("t", [("message", orjson.dumps({"n": n})) for n in range(1, 11)])
                while archiver.written < 10:
                    await asyncio.sleep(0.01)
                resource.setrlimit(resource.RLIMIT_FSIZE, (2000, hard))  # the segment is ~900 bytes: ~12 more lines
                await hub.publish_many("t", [("message", orjson.dumps({"n": n})) for n in range(11, 61)])
                await asyncio.sleep(0.5)
                stuck = archiver.written
                resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
                for _ in range(1000):
                    if archiver.written >= 60:
                        break
                    await asyncio.sleep(0.01)
            print(orjson.dumps({"stuck": stuck, "written": archiver.written, "resets": archiver.resets}).decode())

    asyncio.run(main(Path(sys.argv[1])))
    """
)


def test_archiver_after_a_failed_write_keeps_whole_lines_and_catches_up(tmp_path):
    result = subprocess.run([sys.executable, "-c", CHILD, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-3000:]
    report = orjson.loads(result.stdout.strip().splitlines()[-1])
    assert 10 <= report["stuck"] < 60  # the limit stopped it part-way
    assert "File too large" in result.stderr  # the write failed, and the archiver said so
    assert report["written"] == 60 and report["resets"] == 0
    assert event_numbers(read_topic(tmp_path, "t")) == list(range(1, 61))  # every line whole, once, in order
