"""History download of a big topic: server memory stays flat, and the NDJSON is valid (issue 4).

```
python -m loadtest.history_memory                     # 100 000 events, memory backend
python -m loadtest.history_memory --redis             # the same on a Redis backend (starts its own Redis)
python -m loadtest.history_memory --events 20000
```

It starts `python -m broadcaster serve --history-size N` on a free loopback port
(and a Redis server for `--redis`), publishes N events of about 150 bytes through
one streamed NDJSON POST, downloads a small slice once to warm the server up, then
downloads `GET /topics/{topic}/history` whole, twice. A thread samples the server's
VmRSS (`/proc/PID/status`) every 10 ms during each download; the growth is the peak
minus the RSS just before it. The client checks every line as it arrives (it
parses, its id is greater than the previous one) and the count. Bounded: every
request has a timeout and the processes it starts are stopped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass

import httpx
import orjson

from loadtest.processes import RssSampler, broadcaster_server, redis_server, rss_kb

TOPIC = "history.big"
PAD = "x" * 100


@dataclass
class Result:
    backend: str
    events: int
    lines: int
    megabytes: float
    seconds: float
    events_per_s: float
    rss_before_mb: float
    rss_peak_mb: float
    rss_growth_mb: float
    rss_after_mb: float
    rss_samples: int
    second_seconds: float
    second_rss_growth_mb: float
    valid: bool


async def _lines(count: int) -> AsyncIterator[bytes]:
    block: list[bytes] = []
    for n in range(count):
        block.append(orjson.dumps({"n": n, "pad": PAD}) + b"\n")
        if len(block) == 2000:
            yield b"".join(block)
            block = []
    if block:
        yield b"".join(block)


async def _download(client: httpx.AsyncClient, params: dict[str, str | int]) -> tuple[int, int, bool]:
    """Stream the download; return (lines, bytes, valid): every line parses, ids increase, data in order."""
    lines = size = 0
    last: tuple[int, int] = (-1, -1)
    valid = True
    async with client.stream("GET", f"/topics/{TOPIC}/history", params=params) as response:
        response.raise_for_status()
        disposition = response.headers.get("content-disposition", "")
        valid = disposition.startswith("attachment")
        async for line in response.aiter_lines():
            size += len(line) + 1
            item = orjson.loads(line)
            ms, _, n = item["id"].partition("-")
            seq = (int(ms), int(n))
            valid = valid and seq > last and item["data"]["n"] == lines
            last = seq
            lines += 1
    return lines, size, valid


async def measure(url: str, pid: int, backend: str, events: int) -> Result:
    timeout = httpx.Timeout(300, connect=10)
    async with httpx.AsyncClient(base_url=url, timeout=timeout) as client:
        answer = await client.post(
            f"/topics/{TOPIC}/events", content=_lines(events), headers={"Content-Type": "application/x-ndjson"}
        )
        answer.raise_for_status()
        if answer.json()["accepted"] != events:
            raise RuntimeError(f"the server accepted {answer.json()['accepted']} of {events} events")
        await _download(client, {"limit": 5000})  # warm-up: code paths, allocator arenas
        before = rss_kb(pid)
        start = time.perf_counter()
        with RssSampler(pid, 0.01) as sampler:
            lines, size, valid = await _download(client, {})
        seconds = time.perf_counter() - start
        after = rss_kb(pid)
        # Again: on the memory backend the first download built each retained event's NDJSON line,
        # which stays cached on the event (as live fan-out does); a second one shows what is left.
        start = time.perf_counter()
        with RssSampler(pid, 0.01) as second:
            second_lines, _, second_valid = await _download(client, {})
        second_seconds = time.perf_counter() - start
    mb = 1024.0
    return Result(
        backend=backend,
        events=events,
        lines=lines,
        megabytes=round(size / 1024 / 1024, 1),
        seconds=round(seconds, 2),
        events_per_s=round(lines / seconds),
        rss_before_mb=round(before / mb, 1),
        rss_peak_mb=round(sampler.peak_kb / mb, 1),
        rss_growth_mb=round((sampler.peak_kb - before) / mb, 1),
        rss_after_mb=round(after / mb, 1),
        rss_samples=sampler.samples,
        second_seconds=round(second_seconds, 2),
        second_rss_growth_mb=round((second.peak_kb - after) / mb, 1),
        valid=valid and second_valid and lines == second_lines == events,
    )


def run(events: int, use_redis: bool) -> Result:
    serve_args = ("--history-size", str(events))
    if use_redis:
        with redis_server() as (redis_url, _), broadcaster_server(*serve_args, redis_url=redis_url) as (url, pid):
            return asyncio.run(measure(url, pid, "redis", events))
    with broadcaster_server(*serve_args) as (url, pid):
        return asyncio.run(measure(url, pid, "memory", events))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.history_memory", description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=100_000, help="events published, retained and downloaded")
    parser.add_argument("--redis", action="store_true", help="run the server on a Redis backend (its own Redis)")
    args = parser.parse_args(argv)
    result = run(args.events, args.redis)
    print(json.dumps(asdict(result)))
    print(
        f"{result.backend}: {result.lines} lines, {result.megabytes} MB in {result.seconds}s "
        f"({result.events_per_s} events/s); server RSS {result.rss_before_mb} MB before, peak "
        f"{result.rss_peak_mb} MB (+{result.rss_growth_mb} MB), {result.rss_after_mb} MB after; "
        f"{result.rss_samples} samples; a second download: {result.second_seconds}s, "
        f"+{result.second_rss_growth_mb} MB; valid NDJSON: {result.valid}",
        file=sys.stderr,
    )
    return 0 if result.valid else 1


if __name__ == "__main__":
    sys.exit(main())
