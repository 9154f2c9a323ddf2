"""A real browser's EventSource (headless Chromium) resumes without loss after the server ends its stream.

The page is served by the broadcaster app itself (same origin, no CORS): it opens an
`EventSource` on a topic whose stream the server ends after a few events (`max_events`),
so the browser reconnects by itself, with `Last-Event-ID`, again and again. The page
reports everything it receives by POSTing to a log topic, which the test subscribes to.
No browser-driver package: Chromium runs as a plain subprocess.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator

import httpx
import orjson
import pytest
from fastapi.responses import HTMLResponse

from ..support.browser import chromium_binary
from ..support.servers import ThreadServer

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

EVENTS = 40
PER_STREAM = 8  # the server ends each stream after this many events
RETRY_MS = 150

PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>resume</title></head><body><script>
let chain = Promise.resolve();
let number = 0;
function report(entry) {
  entry.n = number++;
  const body = JSON.stringify(entry);  // one POST at a time: the log keeps the browser's order
  chain = chain.then(() => fetch("/topics/browser-log/events",
    {method: "POST", headers: {"Content-Type": "application/json"}, body}));
}
const source = new EventSource("/topics/browser-feed/events?max_events=PER_STREAM");
source.onopen = () => report({kind: "open"});
source.onerror = () => report({kind: "closed", state: source.readyState});
source.onmessage = (e) => report({kind: "event", id: e.lastEventId, data: JSON.parse(e.data)});
source.addEventListener("live", (e) => report({kind: "live", ...JSON.parse(e.data)}));
source.addEventListener("reset", (e) => report({kind: "reset", ...JSON.parse(e.data)}));
</script></body></html>
""".replace("PER_STREAM", str(PER_STREAM))


@contextlib.contextmanager
def headless_chromium(url: str) -> Iterator[subprocess.Popen[bytes]]:
    binary = chromium_binary()
    # Chromium's helper processes may still write to the profile as it goes: kill the whole
    # group, and let a straggler's last file not fail the test (the directory is a temp one).
    with tempfile.TemporaryDirectory(prefix="broadcaster-chromium-", ignore_cleanup_errors=True) as profile:
        args = [binary, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run"]
        args += ["--disable-background-networking", "--disable-component-update", "--disable-sync"]
        args += ["--disable-dev-shm-usage", f"--user-data-dir={profile}", url]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            yield process
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


async def test_browser_eventsource_resumes_after_server_ends_stream(make_settings):
    chromium_binary()
    server = ThreadServer(make_settings(retry_ms=RETRY_MS, history_size=1000))
    server.app.add_api_route("/browser-test", lambda: HTMLResponse(PAGE), methods=["GET"])
    server.start()
    try:
        published: list[str] = []
        log: list[dict] = []
        async with (
            asyncio.timeout(25),
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            client.stream("GET", "/topics/browser-log/events", params={"tail": 0}) as log_stream,
        ):
            lines = log_stream.aiter_lines()
            assert orjson.loads(await anext(lines))["control"] == "live"  # the log is subscribed

            def received() -> list[dict]:
                return [entry for entry in log if entry["kind"] == "event"]

            async def read_log(until) -> None:
                while not until():
                    item = orjson.loads(await anext(lines))
                    if "data" in item:
                        log.append(item["data"])

            with headless_chromium(f"{server.url}/browser-test") as browser:
                await read_log(lambda: any(entry["kind"] == "open" for entry in log))
                for value in range(EVENTS):
                    # Steadily, so that events are also published while the browser is reconnecting.
                    answer = await client.post("/topics/browser-feed/events", json={"n": value})
                    published.append(answer.json()["id"])
                    await asyncio.sleep(0.05)  # pacing the producer, not waiting for a condition
                await read_log(lambda: len(received()) >= EVENTS)
                assert browser.poll() is None, "chromium exited early"
            assert [entry["n"] for entry in log] == list(range(len(log))), "the log kept the browser's order"
            assert [entry["data"]["n"] for entry in received()] == list(range(EVENTS))
            assert [entry["id"] for entry in received()] == published  # no gap, no duplicate
            opens = [entry for entry in log if entry["kind"] == "open"]
            lives = [entry for entry in log if entry["kind"] == "live"]
            assert len(opens) >= 3, f"expected at least 2 reconnects, saw {len(opens) - 1}"
            # Events published while it was away came back in a replay: it sent Last-Event-ID.
            assert sum(entry["replayed"] for entry in lives) > 0, lives
            assert not [entry for entry in log if entry["kind"] == "reset"]
    finally:
        server.stop()
