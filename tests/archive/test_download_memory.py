"""Acceptance 3, CI size: 10 clients download one segment at once; the server's RSS stays within 10 MB.

The full size (a 1 GB segment, CPU and MB/s side by side with nginx) is `python -m loadtest
download`, run by hand; its numbers are in docs/benchmarks.md. Here a 64 MB segment, from a
real `broadcaster serve --archive-dir` process, with curl clients.
"""

from __future__ import annotations

import shutil
import subprocess
import threading

import psutil
import pytest

from broadcaster import Event
from broadcaster.archive import ArchiveOptions
from broadcaster.archive._writer import ArchiveWriter

from ..support.servers import ProcessServer
from .support import BASE_MS, NDJSON_LINES, event_id

pytestmark = [pytest.mark.e2e]
CLIENTS = 10
TOPIC = "bench.segment"


def _segment(root) -> tuple[str, int]:
    writer = ArchiveWriter(root, ArchiveOptions(segment_bytes=1 << 30), NDJSON_LINES)
    writer.open()
    pad = b'"' + b"x" * 1000 + b'"'
    for block in range(64):
        events = [Event(TOPIC, event_id(TOPIC, block * 1000 + i + 1), "message", pad, BASE_MS) for i in range(1000)]
        writer.write(TOPIC, events)
    writer.close()
    path = next((root / TOPIC).glob("*.ndjson"))
    return path.name, path.stat().st_size


def test_ten_clients_download_a_segment_at_once_with_flat_server_memory(tmp_path):
    name, size = _segment(tmp_path)
    assert size > 64_000_000
    curl = shutil.which("curl")
    assert curl, "curl is not installed (apt-get install curl; .ci/run installs it)"
    with ProcessServer("--archive-dir", str(tmp_path)) as server:
        assert server.process is not None
        process = psutil.Process(server.process.pid)
        url = f"{server.url}/topics/{TOPIC}/archive/{name}"
        # Warm up: one download (code paths, the worker threads, allocator arenas), then measure.
        subprocess.run([curl, "-sS", "-o", "/dev/null", url], check=True, timeout=30)
        before = process.memory_info().rss
        peak = before
        done = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not done.wait(0.005):
                peak = max(peak, process.memory_info().rss)

        sampler = threading.Thread(target=sample)
        sampler.start()
        try:
            clients = [
                subprocess.Popen(
                    [curl, "-sS", "-o", "/dev/null", "-w", "%{size_download}", url], stdout=subprocess.PIPE
                )
                for _ in range(CLIENTS)
            ]
            sizes = [int(client.communicate(timeout=60)[0]) for client in clients]
        finally:
            done.set()
            sampler.join(5)
    assert sizes == [size] * CLIENTS
    growth = peak - before
    assert growth < 10 * 1024 * 1024, f"server RSS grew {growth / 1e6:.1f} MB serving {CLIENTS} x {size / 1e6:.0f} MB"
