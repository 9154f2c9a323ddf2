"""Streamed ingest under a big body: server memory stays flat, and how many events/s one POST carries (issue 3).

```
python -m loadtest.ingest_memory                      # 200 MB, memory backend: one NDJSON POST, one multipart upload
python -m loadtest.ingest_memory --redis              # the same on a Redis backend (starts its own Redis)
python -m loadtest.ingest_memory --mb 50 --shape ndjson
```

It starts `python -m broadcaster serve` on a free loopback port (and a Redis
server for `--redis`), warms the server up with a small body, then streams
`--mb` megabytes of 200-byte events through one POST (an async generator body,
so the client holds one block, not the body) and through one
`multipart/form-data` upload. A thread samples the server's VmRSS
(`/proc/PID/status`) every 20 ms; the growth is the peak during the upload
minus the RSS after the warm-up. Events/s is lines accepted / wall time of the
POST, as the server's report counts them. Bounded: every request has a timeout
and the processes it starts are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import httpx

from loadtest.processes import RssSampler, broadcaster_server, redis_server, rss_kb
from loadtest.procstat import cpu_seconds

EVENT_BYTES = 200
BLOCK_BYTES = 256 * 1024
BOUNDARY = "----broadcaster-ingest-benchmark"


def _block() -> tuple[bytes, int]:
    """About BLOCK_BYTES of NDJSON: lines of exactly EVENT_BYTES of data (plus the newline)."""
    lines = []
    size = 0
    n = 0
    while size < BLOCK_BYTES:
        head = f'{{"sensor":"sensor-{n % 16:02d}","seq":{n},"value":{20 + (n % 100) / 10},"pad":"'
        line = head + "x" * (EVENT_BYTES - len(head) - 2) + '"}'
        assert len(line) == EVENT_BYTES
        lines.append(line.encode() + b"\n")
        size += EVENT_BYTES + 1
        n += 1
    return b"".join(lines), n


async def _ndjson_body(block: bytes, blocks: int) -> AsyncIterator[bytes]:
    for _ in range(blocks):
        yield block


async def _multipart_body(block: bytes, blocks: int) -> AsyncIterator[bytes]:
    yield (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="sensor"\r\n\r\nignored\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; filename="backlog.ndjson"\r\n'
        "Content-Type: application/x-ndjson\r\n\r\n"
    ).encode()
    for _ in range(blocks):
        yield block
    yield f"\r\n--{BOUNDARY}--\r\n".encode()


@dataclass
class Result:
    shape: str
    backend: str
    megabytes: float
    events: int
    seconds: float
    events_per_s: float
    mb_per_s: float
    server_cpu_s: float
    redis_cpu_s: float | None
    rss_before_mb: float
    rss_peak_mb: float
    rss_growth_mb: float
    rss_samples: int
    status: int


async def _upload(url: str, pid: int, redis_pid: int | None, shape: str, backend: str, megabytes: float) -> Result:
    block, lines_per_block = _block()
    blocks = max(1, int(megabytes * 1024 * 1024 / len(block)))
    timeout = httpx.Timeout(600, connect=10)
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        # Warm-up: imports, allocator arenas, the topic's history filled (it is bounded).
        warm = await client.post(
            "/topics/warmup/events", content=block * 8, headers={"Content-Type": "application/x-ndjson"}
        )
        warm.raise_for_status()
        await asyncio.sleep(0.5)
        before_kb = rss_kb(pid)
        if shape == "ndjson":
            body, content_type = _ndjson_body(block, blocks), "application/x-ndjson"
        else:
            body, content_type = _multipart_body(block, blocks), f"multipart/form-data; boundary={BOUNDARY}"
        cpu_before = cpu_seconds([pid])
        redis_before = cpu_seconds([redis_pid]) if redis_pid else 0.0
        with RssSampler(pid, 0.02) as sampler:
            started = time.perf_counter()
            response = await client.post(
                f"/topics/bench.{shape}/events", content=body, headers={"Content-Type": content_type}
            )
            seconds = time.perf_counter() - started
        cpu = cpu_seconds([pid]) - cpu_before
        redis_cpu = round(cpu_seconds([redis_pid]) - redis_before, 2) if redis_pid else None
    report = response.json()
    accepted = report["accepted"] if response.status_code == 200 else report.get("report", {}).get("accepted", 0)
    if response.status_code != 200 or accepted != blocks * lines_per_block:
        raise RuntimeError(f"{shape}: {response.status_code} {str(report)[:500]}")
    size_mb = blocks * len(block) / 1024 / 1024
    return Result(
        shape=shape,
        backend=backend,
        megabytes=round(size_mb, 1),
        events=accepted,
        seconds=round(seconds, 2),
        events_per_s=round(accepted / seconds),
        mb_per_s=round(size_mb / seconds, 1),
        server_cpu_s=round(cpu, 2),
        redis_cpu_s=redis_cpu,
        rss_before_mb=round(before_kb / 1024, 1),
        rss_peak_mb=round(sampler.peak_kb / 1024, 1),
        rss_growth_mb=round((sampler.peak_kb - before_kb) / 1024, 1),
        rss_samples=sampler.samples,
        status=response.status_code,
    )


@contextmanager
def _processes(redis: bool) -> Iterator[tuple[str, int, int | None]]:
    """A broadcaster server (and a Redis for it); yields (url, server pid, Redis pid)."""
    with ExitStack() as stack:
        redis_url, redis_pid = stack.enter_context(redis_server()) if redis else (None, None)
        # stderr=None: the server's warnings reach the terminal.
        url, pid = stack.enter_context(broadcaster_server(redis_url=redis_url, stderr=None))
        yield url, pid, redis_pid


@contextmanager
def _profiled(pid: int, output: str | None) -> Iterator[None]:
    """py-spy sampling the server (`--format raw`: one collapsed stack per line, with its sample count)."""
    if output is None:
        yield
        return
    args = ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--format", "raw", "--output", output]
    spy = subprocess.Popen([*args, "--nonblocking"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)  # py-spy writes its output when interrupted
        try:
            spy.wait(30)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait(5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.ingest_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=200.0, help="megabytes per upload (default 200)")
    parser.add_argument("--redis", action="store_true", help="Redis backend (starts its own Redis server)")
    parser.add_argument("--shape", choices=["ndjson", "multipart", "both"], default="both")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--py-spy", metavar="PATH", help="profile the server with py-spy during the uploads (collapsed stacks to PATH)"
    )
    args = parser.parse_args(argv)
    backend = "redis" if args.redis else "memory"
    shapes = ["ndjson", "multipart"] if args.shape == "both" else [args.shape]
    results: list[dict[str, Any]] = []
    with _processes(args.redis) as (url, pid, redis_pid), _profiled(pid, args.py_spy):
        for shape in shapes:
            result = asyncio.run(_upload(url, pid, redis_pid, shape, backend, args.mb))
            results.append(asdict(result))
            redis_cpu = f"  Redis CPU {result.redis_cpu_s}s" if result.redis_cpu_s is not None else ""
            print(
                f"{shape:9} {backend:6} {result.megabytes:6.1f} MB  {result.events:>9,} events"
                f" in {result.seconds:6.2f}s  {result.events_per_s:>9,} events/s  {result.mb_per_s:6.1f} MB/s"
                f"  server CPU {result.server_cpu_s}s{redis_cpu}  RSS {result.rss_before_mb} -> peak"
                f" {result.rss_peak_mb} MB (growth {result.rss_growth_mb} MB, {result.rss_samples} samples)",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
