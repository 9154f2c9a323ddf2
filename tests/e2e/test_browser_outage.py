"""Issue 16 in a real browser (headless Chromium, run as in test_browser.py).

1. EventSource on a Redis-backed server: Redis is killed, the page's stream ends
   (`max_duration`) so the browser reconnects during the outage, Redis comes back (empty),
   events are published: the page received every event, before and after, exactly once.
3. The `fault` control (a slow consumer evicted) reaches `addEventListener("fault")` and
   not `onerror`: `onerror` only sees the connection closing after it, without data.

The page reports to a route of the test's own (`/browser-log`), kept in a list, so that
its log does not depend on Redis.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import orjson
import pytest
from fastapi import Request
from fastapi.responses import HTMLResponse, Response

from ..support.servers import ThreadServer
from ..support.waiting import eventually
from .test_browser import chromium_binary, headless_chromium

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>outage</title></head><body><script>
let chain = Promise.resolve();
let number = 0;
function report(entry) {
  entry.n = number++;
  const body = JSON.stringify(entry);  // one POST at a time: the log keeps the browser's order
  const headers = {"Content-Type": "application/json"};
  chain = chain.then(() => fetch("/browser-log", {method: "POST", headers, body}));
}
const source = new EventSource("STREAM");
source.onopen = () => report({kind: "open"});
source.onerror = (e) => report({kind: "closed", with_data: "data" in e, state: source.readyState});
let stalled = false;
source.onmessage = (e) => {
  report({kind: "event", id: e.lastEventId, data: JSON.parse(e.data)});
  if (!stalled && BUSY_MS > 0) {  // a page too busy to read (a long task): the stream backs up
    stalled = true;
    const until = Date.now() + BUSY_MS;
    while (Date.now() < until) {}
  }
};
for (const name of ["live", "reset", "fault", "shutdown", "gap"]) {
  source.addEventListener(name, (e) => report({kind: name, ...JSON.parse(e.data)}));
}
</script></body></html>
"""


def serve_page(server: ThreadServer, stream: str, busy_ms: int = 0) -> list[dict]:
    """Add the page and its log route to the server's app; return the log the page fills."""
    log: list[dict] = []

    async def page() -> HTMLResponse:
        return HTMLResponse(PAGE.replace("STREAM", stream).replace("BUSY_MS", str(busy_ms)))

    async def record(request: Request) -> Response:
        log.append(orjson.loads(await request.body()))
        return Response(status_code=204)

    server.app.add_api_route("/browser-page", page, methods=["GET"])
    server.app.add_api_route("/browser-log", record, methods=["POST"])
    return log


def kinds(log: list[dict], kind: str) -> list[dict]:
    return [entry for entry in log if entry["kind"] == kind]


async def publish(client: httpx.AsyncClient, topic: str, value: object) -> httpx.Response | None:
    answer = await client.post(f"/topics/{topic}/events", json=value)
    return answer if answer.status_code == 201 else None


@pytest.mark.redis
async def test_browser_reconnects_during_a_redis_outage_and_misses_nothing(
    make_settings, redis_server_factory: Callable[..., object]
):
    chromium_binary()
    redis = redis_server_factory()
    settings = make_settings(redis_url=redis.url, retry_ms=150, heartbeat_s=0.5)  # type: ignore[attr-defined]
    server = ThreadServer(settings)
    log = serve_page(server, "/topics/outage-feed/events?max_duration=1")
    server.start()
    hub = server.app.state.hub
    try:
        async with asyncio.timeout(40), httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            with headless_chromium(f"{server.url}/browser-page") as browser:
                await eventually(lambda: hub.subscriber_count("outage-feed") >= 1, within=15, what="the page's stream")
                published = []
                for n in range(5):
                    answer = await publish(client, "outage-feed", {"n": n, "phase": "before"})
                    assert answer is not None
                    published.append(answer.json()["id"])
                await eventually(lambda: len(kinds(log, "event")) >= 5, within=10, what="events before the outage")

                redis.stop()  # type: ignore[attr-defined]
                opens = len(kinds(log, "open"))
                # The stream ends after max_duration; the browser reconnects while Redis is down, and is answered.
                await eventually(lambda: len(kinds(log, "open")) > opens, within=10, what="a reconnect in the outage")
                assert (await client.post("/topics/outage-feed/events", json={"n": -1})).status_code == 503

                redis.start()  # type: ignore[attr-defined]
                for n in range(5, 10):
                    answer = await eventually(
                        lambda n=n: publish(client, "outage-feed", {"n": n, "phase": "after"}),
                        within=10,
                        interval=0.1,
                        what="publish after Redis is back",
                    )
                    published.append(answer.json()["id"])
                await eventually(lambda: len(kinds(log, "event")) >= 10, within=15, what="events after the outage")
                await asyncio.sleep(0.3)  # pacing: a duplicate would arrive right behind (checked below)
                assert browser.poll() is None, "chromium exited early"
        events = kinds(log, "event")
        assert [e["data"]["n"] for e in events] == list(range(10)), "every event exactly once, in order"
        assert [e["id"] for e in events] == published
        # Redis came back empty: the history of the first five was lost, and the page was told.
        assert kinds(log, "reset") and all("lost" in r["reason"] for r in kinds(log, "reset"))
        assert not kinds(log, "fault") and not kinds(log, "shutdown")
        assert [entry["n"] for entry in log] == list(range(len(log))), "the log kept the browser's order"
    finally:
        server.stop()


async def test_browser_fault_control_reaches_its_listener_not_onerror(make_settings):
    """A slow-consumer eviction: the `fault` message goes to addEventListener('fault') only.

    The page blocks its main thread for a few seconds on the first event, so the browser
    stops reading, the socket and the queue fill, and the server evicts the subscriber.
    """
    chromium_binary()
    server = ThreadServer(make_settings(retry_ms=60_000, send_timeout_s=20.0))  # no reconnect during the test
    log = serve_page(server, "/topics/slow-feed/events?queue=4", busy_ms=12_000)
    server.start()
    hub = server.app.state.hub
    pad = "x" * 60_000
    try:
        async with asyncio.timeout(60), httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            with headless_chromium(f"{server.url}/browser-page") as browser:
                await eventually(lambda: hub.subscriber_count("slow-feed") >= 1, within=15, what="the page's stream")
                assert await publish(client, "slow-feed", {"n": 0}) is not None
                # The page stalls on that event (its report waits until the stall ends): publish on regardless.
                sent = 1
                while hub.metrics.evicted == 0:
                    assert sent < 3000, "the page was never evicted"
                    body = b"".join(orjson.dumps({"n": sent + i, "pad": pad}) + b"\n" for i in range(20))
                    answer = await client.post(
                        "/topics/slow-feed/events", content=body, headers={"Content-Type": "application/x-ndjson"}
                    )
                    assert answer.json()["accepted"] == 20
                    sent += 20
                await eventually(lambda: kinds(log, "closed"), within=30, what="the stream closed")
                assert browser.poll() is None, "chromium exited early"
        faults = kinds(log, "fault")
        assert len(faults) == 1 and faults[0]["reason"] == "slow consumer", log[-3:]
        closed = kinds(log, "closed")
        assert all(not entry["with_data"] for entry in closed), "onerror saw only the connection, not the message"
        assert faults[0]["n"] < closed[0]["n"], "the fault came first, then the connection closed"
        received = [e["data"]["n"] for e in kinds(log, "event")]
        assert received == list(range(len(received))), "what it got before the eviction: in order, no gap"
        assert hub.metrics.evicted == 1
    finally:
        server.stop()
