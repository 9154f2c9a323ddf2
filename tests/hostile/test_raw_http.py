"""Raw-socket HTTP abuse: smuggling, bad chunking, 10 000 headers, a 1 MB URL, 100 MB of headers per connection."""

from __future__ import annotations

import asyncio
import contextlib
import time

import httpx

from ..support.canary import Canary
from ..support.rawhttp import exchange

POST_HEAD = b"POST /topics/t/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"

ABUSE = [
    (
        "CL and TE",
        POST_HEAD + b"Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /x HTTP/1.1\r\n\r\n",
        400,
    ),
    ("two lengths", POST_HEAD + b"Content-Length: 4\r\nContent-Length: 40\r\n\r\n{}\n\n", 400),
    ("TE list", POST_HEAD + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", 400),
    ("TE obfuscated", POST_HEAD + b"Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", 400),
    ("TE space before colon", POST_HEAD + b"Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n", 400),
    ("bare LF in head", b"GET /healthz HTTP/1.1\nHost: x\n\nX: y\r\n\r\n", 400),
    ("NUL in a name", b"GET /healthz HTTP/1.1\r\nHo\x00st: x\r\n\r\n", 400),
    ("bad chunk size", POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\n\r\n0\r\n\r\n", 400),
    ("chunk size overflow", POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\nffffffffffffffffffff\r\n", 400),
    ("chunk longer than said", POST_HEAD + b"Transfer-Encoding: chunked\r\n\r\n2\r\n{}\n\n\r\n0\r\n\r\n", 400),
    (
        "10 000 headers",
        b"GET /healthz HTTP/1.1\r\n" + b"".join(b"X-%d: y\r\n" % n for n in range(10_000)) + b"\r\n",
        431,
    ),
    ("1 MB URL", b"GET /" + b"u" * 1_000_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    ("absurd method", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 HTTP/1.1\r\n\r\n", 400),
]


async def test_malformed_requests_get_a_4xx_and_the_canary_everything(hostile_server, record):
    server = hostile_server()
    async with Canary(server.url) as canary:
        for name, payload, status in ABUSE:
            response = await exchange(server.port, payload)
            assert response.status == status, (name, response)
            assert response.closed, name
            response.error_code()  # a JSON error
            await canary.publish()
        await canary.verify()
        record(
            what="malformed requests (smuggling, chunking, 10k headers, 1 MB URL)",
            requests=len(ABUSE),
            canary_p99_ms=round(canary.p99_ms(), 2),
        )


async def _flood_headers(port: int, total: int) -> tuple[int, int | None]:
    """Send up to `total` bytes of one header; return (bytes the server took, the status it answered)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    chunk = b"a" * 65536
    sent = 0
    status = None
    try:
        writer.write(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Flood: ")
        while sent < total:
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except ConnectionError:
        pass
    with contextlib.suppress(ConnectionError, TimeoutError, asyncio.IncompleteReadError):
        async with asyncio.timeout(5):
            line = await reader.readline()
            status = int(line.split()[1]) if line else None
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
    return sent, status


async def test_100_mb_of_headers_on_several_connections_costs_no_memory(hostile_server, record, soak):
    server = hostile_server()
    connections, size = (32, 100 * 2**20) if soak else (4, 100 * 2**20)
    async with Canary(server.url) as canary, httpx.AsyncClient(base_url=server.url, timeout=10) as probe:
        await canary.publish(5)
        before = server.rss_mb()
        stop = asyncio.Event()
        publisher = asyncio.create_task(canary.publish_every(0.05, stop))
        started = time.monotonic()
        flood = asyncio.gather(*[_flood_headers(server.port, size) for _ in range(connections)])
        health = []
        while not flood.done():
            t0 = time.monotonic()
            assert (await probe.get("/healthz")).status_code == 200
            health.append((time.monotonic() - t0) * 1000)
            await asyncio.sleep(0.05)
        results = await flood
        stop.set()
        await publisher
        after = server.rss_mb()
        await canary.verify()
    statuses = {status for _, status in results}
    assert statuses <= {431, None}  # 431, or the reset that ends a sender still pushing after the lingering close
    assert 431 in statuses
    assert after - before < 20, (before, after)
    record(
        what=f"{size >> 20} MB of headers on each of {connections} connections",
        rss_before_mb=round(before, 1),
        rss_after_mb=round(after, 1),
        accepted_bytes_per_connection=max(sent for sent, _ in results),
        healthz_max_ms=round(max(health), 1),
        canary_p99_ms=round(canary.p99_ms(), 2),
        seconds=round(time.monotonic() - started, 1),
    )
