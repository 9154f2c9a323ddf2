"""The file-descriptor limit: raised at start, and a stream cap below it keeps health and publishing alive."""

from __future__ import annotations

import httpx

from broadcaster.limits import default_max_streams, raise_fd_limit

from ..support.canary import Canary
from ..support.swarm import close_all, open_streams
from ..support.waiting import eventually

SOURCES = [f"127.0.0.{n}" for n in range(2, 22)]  # 20 client addresses: under the per-client cap each


async def test_a_soft_limit_of_1024_is_raised_and_5000_streams_are_served(hostile_server, record, soak):
    raise_fd_limit()  # this process holds the client ends
    count = 15_000 if soak else 5_000
    hard = count + 4096
    server = hostile_server("--admit-rate", "0", nofile=(1024, hard))
    assert f"file-descriptor limit {hard} (raised from 1024)" in server.log()
    async with Canary(server.url) as canary, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        rss_before = server.rss_mb()
        streams = await open_streams(server.port, count, "/topics/fd/events", sources=SOURCES)
        try:
            assert {s.status for s in streams} == {200}
            fds = server.fds()
            assert fds > count  # every stream holds its socket, past the old soft limit
            assert (await client.get("/healthz")).status_code == 200
            for n in range(3):
                assert (await client.post("/topics/fd/events", json={"n": n})).status_code == 201
            await canary.publish(3)
            await eventually(lambda: all(s.events == 3 for s in streams), within=30, what="every stream got 3 events")
            await canary.verify()
            rss_after = server.rss_mb()
        finally:
            close_all(streams)
    record(
        what=f"soft fd limit 1024, hard {hard}: {count} streams",
        server_fds=fds,
        rss_per_stream_kb=round((rss_after - rss_before) * 1024 / count, 1),
        canary_p99_ms=round(canary.p99_ms(), 2),
    )


async def test_with_a_hard_limit_of_1024_streams_past_the_cap_get_503_and_health_answers(hostile_server, record):
    raise_fd_limit()
    cap = default_max_streams(1024)
    server = hostile_server("--admit-rate", "0", nofile=(1024, 1024))
    assert f"max_streams {cap} (derived from it)" in server.log()
    async with Canary(server.url) as canary, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        streams = await open_streams(server.port, cap + 100, "/topics/fd/events", sources=SOURCES)
        try:
            statuses = [s.status for s in streams]
            assert statuses.count(200) == cap - 1  # the canary holds one place
            assert statuses.count(503) == 100 + 1
            # A refused stream's connection is closed at once: it holds no descriptor past the cap.
            await eventually(lambda: all(s.closed.done() for s in streams if s.status == 503), what="refusals closed")
            for _ in range(20):
                assert (await client.get("/healthz")).status_code == 200
                assert (await client.post("/topics/fd/events", json={})).status_code == 201
            await canary.publish(3)
            await canary.verify()
            fds = server.fds()
            assert fds < 1024
        finally:
            close_all(streams)
    record(
        what="hard fd limit 1024: streams past the cap",
        cap=cap,
        refused=101,
        server_fds=fds,
        healthz_and_publish="answered 20/20",
    )
