"""Slowloris: hundreds of sockets dribbling a request head a byte a second, beside normal subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from ..support.canary import Canary
from ..support.swarm import close_all, open_streams, p99

HEAD = b"GET /topics/slow/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 10_000


async def _dribbler(port: int, started: asyncio.Event, closed_after: list[float]) -> None:
    """One byte a second, never finishing the head; note how long the server kept the socket."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    began = time.monotonic()
    started.set()
    try:
        for byte in HEAD:
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    if await reader.read(65536) == b"" or reader.at_eof():
                        break  # the server answered (408) and closed
            if reader.at_eof():
                break
    except ConnectionError:
        pass
    closed_after.append(time.monotonic() - began)
    writer.close()


async def _phase(port: int, client: httpx.AsyncClient, seconds: float, subscribers: int) -> tuple[float, int]:
    """`subscribers` streams and a publisher (50 events/s) for `seconds`: the p99 publish-to-receive latency."""
    streams = await open_streams(port, subscribers, "/topics/work/events", measure=True)
    try:
        deadline = time.monotonic() + seconds
        sent = 0
        while time.monotonic() < deadline:
            answer = await client.post("/topics/work/events", json={"sent_ns": time.perf_counter_ns()})
            assert answer.status_code == 201
            sent += 1
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        assert all(s.events == sent for s in streams), "a normal subscriber missed events"
        return p99([ms for s in streams for ms in s.latencies_ms]), sent
    finally:
        close_all(streams)


async def test_slowloris_does_not_slow_the_normal_clients(hostile_server, record, soak):
    sockets, seconds, timeout_s = (5000, 20.0, 10.0) if soak else (500, 4.0, 6.0)
    server = hostile_server("--header-timeout-s", str(timeout_s))
    async with Canary(server.url) as canary, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        base_p99, _ = await _phase(server.port, client, seconds, 100)
        closed_after: list[float] = []
        started = [asyncio.Event() for _ in range(sockets)]
        attack = [asyncio.create_task(_dribbler(server.port, e, closed_after)) for e in started]
        await asyncio.gather(*[e.wait() for e in started])
        attack_p99, sent = await _phase(server.port, client, seconds, 100)
        await canary.publish(3)
        await asyncio.wait_for(asyncio.gather(*attack), timeout_s + 10)
        await canary.verify()
    # Every dribbler was cut off at the head timeout, not held forever.
    assert len(closed_after) == sockets and max(closed_after) < timeout_s + 3
    assert attack_p99 <= 2 * base_p99, (base_p99, attack_p99)
    record(
        what=f"slowloris: {sockets} sockets dribbling 1 byte/s beside 100 subscribers and a publisher",
        p99_without_ms=round(base_p99, 2),
        p99_with_ms=round(attack_p99, 2),
        events_per_phase=sent,
        dribblers_closed_after_max_s=round(max(closed_after), 1),
        header_timeout_s=timeout_s,
    )
