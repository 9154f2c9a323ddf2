"""Connection churn and half-open subscribers: nothing is left behind, nothing stuck stays open."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx

from ..support.canary import Canary
from ..support.swarm import RawStream, stream_request
from ..support.waiting import eventually


async def _cycles(port: int, count: int, parallel: int = 32) -> int:
    """`count` connect-subscribe-disconnect cycles, `parallel` at a time; returns how many got 200."""
    loop = asyncio.get_running_loop()
    request = stream_request("/topics/churn/events")
    ok = 0
    next_cycle = 0

    async def worker() -> None:
        nonlocal ok, next_cycle
        while next_cycle < count:
            next_cycle += 1
            _, stream = await loop.create_connection(lambda: RawStream(request), "127.0.0.1", port)
            async with asyncio.timeout(10):
                status = await stream.head
            ok += status == 200
            stream.close()
            async with asyncio.timeout(10):
                await stream.closed

    await asyncio.gather(*[worker() for _ in range(parallel)])
    return ok


async def _settled(server) -> dict[str, float]:
    def idle() -> dict[str, float] | None:
        counts = server.counts()
        quiet = counts["broadcaster_subscriptions"] == 1 and counts["broadcaster_streams"] == 1  # the canary
        return counts if quiet and counts["broadcaster_admitted_streams"] == 1 else None

    return await eventually(idle, within=15, what="every churned stream released")


async def test_connection_churn_leaves_no_memory_fds_tasks_or_subscriptions(hostile_server, record, soak):
    cycles = 100_000 if soak else 10_000
    server = hostile_server("--admit-rate", "0")
    async with Canary(server.url) as canary:
        await _cycles(server.port, 500)  # warm-up: allocator pools, caches
        baseline = await _settled(server)
        rss_before, fds_before = server.rss_mb(), server.fds()
        stop = asyncio.Event()
        publisher = asyncio.create_task(canary.publish_every(0.1, stop))
        started = time.monotonic()
        ok = await _cycles(server.port, cycles)
        elapsed = time.monotonic() - started
        stop.set()
        await publisher
        after = await _settled(server)
        rss_after, fds_after = server.rss_mb(), server.fds()
        await canary.verify()
    assert ok == cycles
    assert after["broadcaster_tasks"] <= baseline["broadcaster_tasks"]
    assert rss_after - rss_before < 10, (rss_before, rss_after)
    assert abs(fds_after - fds_before) <= 10, (fds_before, fds_after)
    record(
        what=f"{cycles} connect-subscribe-disconnect cycles",
        cycles_per_s=round(cycles / elapsed),
        rss_before_mb=round(rss_before, 1),
        rss_after_mb=round(rss_after, 1),
        fds_before=fds_before,
        fds_after=fds_after,
        tasks_before=baseline["broadcaster_tasks"],
        tasks_after=after["broadcaster_tasks"],
        canary_p99_ms=round(canary.p99_ms(), 2),
    )


async def test_a_half_open_subscriber_is_closed_within_send_timeout_plus_a_heartbeat(hostile_server, record, soak):
    send_timeout, heartbeat = (10.0, 15.0) if soak else (2.0, 1.0)
    server = hostile_server("--send-timeout-s", str(send_timeout), "--heartbeat-s", str(heartbeat))
    async with Canary(server.url) as canary, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        # A client that vanished without a FIN: its socket stays open and reads nothing, ever.
        ghost = socket.socket()
        ghost.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        ghost.connect(("127.0.0.1", server.port))
        ghost.sendall(stream_request("/topics/ghost/events?queue=10000"))
        await eventually(lambda: server.counts()["broadcaster_streams"] == 2, what="the ghost's stream open")
        payload = {"pad": "x" * 20_000}
        for _ in range(200):  # 4 MB: more than the socket buffers hold, less than the queue's 4 MiB byte cap
            assert (await client.post("/topics/ghost/events", json=payload)).status_code == 201
        stuck_since = time.monotonic()
        await canary.publish(2)
        counts = await eventually(
            lambda: (c := server.counts())["broadcaster_streams"] == 1 and c,
            within=send_timeout + heartbeat + 5,
            what="the half-open stream closed",
        )
        closed_after = time.monotonic() - stuck_since
        await canary.publish(2)
        await canary.verify()
        ghost.close()
    assert closed_after <= send_timeout + heartbeat
    assert counts["broadcaster_send_timeouts_total"] == 1 and counts["broadcaster_evicted_total"] == 0
    record(
        what="half-open subscriber (reads nothing, never closes)",
        send_timeout_s=send_timeout,
        heartbeat_s=heartbeat,
        closed_after_s=round(closed_after, 2),
    )
