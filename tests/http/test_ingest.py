"""Streamed ingest: NDJSON and text lines, backlog uploads, limits, disconnects, backend failure."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest

from broadcaster import Event, Hub, Subscription

from ..support.servers import ProcessServer, thread_server
from ..support.waiting import eventually

NDJSON = {"Content-Type": "application/x-ndjson"}


async def _events(sub: Subscription, count: int, within: float = 5.0) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(within):
        while len(events) < count:
            item = await sub.get()
            if isinstance(item, Event):
                events.append(item)
    return events


async def _chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def _sse_data(lines: AsyncIterator[str]) -> object:
    """The data of the next SSE event (control events and keepalives skipped)."""
    event, data = "message", None
    async for line in lines:
        if line.startswith("event:"):
            event = line[6:].strip()
        elif line.startswith("data:"):
            data = line[5:].strip()
        elif line == "":
            if data is not None and event == "message":
                return orjson.loads(data)
            event, data = "message", None
    raise AssertionError("the SSE stream ended")


async def test_ingest_streamed_line_reaches_subscriber_before_next_line_is_sent(settings):
    """Acceptance 1: one POST held open; each line is delivered before the next one is written."""
    with thread_server(settings) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            outbox: asyncio.Queue[bytes | None] = asyncio.Queue()

            async def body() -> AsyncIterator[bytes]:
                while (line := await outbox.get()) is not None:
                    yield line

            sse_headers = {"Accept": "text/event-stream"}
            async with client.stream("GET", "/topics/held/events", headers=sse_headers) as stream:
                assert stream.status_code == 200  # headers come after the subscription is registered
                lines = stream.aiter_lines()
                post = asyncio.create_task(client.post("/topics/held/events", content=body(), headers=NDJSON))
                for n in range(3):
                    await outbox.put(orjson.dumps({"n": n}) + b"\n")
                    async with asyncio.timeout(5):
                        assert await _sse_data(lines) == {"n": n}
                    assert not post.done(), "the POST must still be open while its lines are delivered"
                await outbox.put(None)
                async with asyncio.timeout(5):
                    response = await post
    assert response.status_code == 200
    report = response.json()
    assert (report["accepted"], report["rejected"], report["lines"], report["truncated"]) == (3, 0, 3, False)


async def test_ingest_mixed_body_delivers_good_lines_in_order_and_names_bad_ones(
    make_settings, settings, client_factory
):
    """Acceptance 2: invalid JSON, invalid UTF-8 and an over-long line are rejected alone, by number and reason."""
    settings = settings.replace(max_event_bytes=1024)
    long_line = b'{"pad":"' + b"x" * 5000 + b'"}\n'
    body = (
        b'{"n": 1}\n'  # 1
        b'{"n": \n'  # 2: invalid JSON
        b'{"n": 2}\r\n'  # 3: CRLF is fine
        b'{"s": "caf\xe9"}\n'  # 4: Latin-1, not UTF-8
        b"\n"  # 5: blank, ignored
        + long_line  # 6: over max_event_bytes
        + b"   \n"  # 7: blank
        b'["n", 3]\n'  # 8
        b'"four"'  # 9: the last line needs no newline
    )
    # Split the body at awkward places: inside lines and inside the long one.
    parts = [body[i : i + 700] for i in range(0, len(body), 700)]
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        async with await hub.subscribe(["mix"]) as sub:
            response = await client.post("/topics/mix/events?type=reading", content=_chunks(*parts), headers=NDJSON)
            assert response.status_code == 200, response.text
            events = await _events(sub, 4)
    assert [e.json() for e in events] == [{"n": 1}, {"n": 2}, ["n", 3], "four"]
    assert {e.type for e in events} == {"reading"}
    report = response.json()
    assert (report["accepted"], report["rejected"], report["lines"]) == (4, 3, 9)
    assert (report["first_id"], report["last_id"]) == (events[0].id, events[-1].id)
    errors = {e["line"]: e for e in report["errors"]}
    assert sorted(errors) == [2, 4, 6]
    assert errors[2]["code"] == "invalid_json" and "not valid JSON" in errors[2]["reason"]
    assert errors[4]["code"] == "invalid_utf8" and "0xe9" in errors[4]["reason"]
    assert errors[6]["code"] == "too_long" and "5010 bytes" in errors[6]["reason"] and "1024" in errors[6]["reason"]


async def test_ingest_text_lines_become_json_strings(settings, client_factory):
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        async with await hub.subscribe(["logs"]) as sub:
            body = 'GET /index.html 200\r\nsaid "hi"\tthere\n\nwörld\n'.encode() + b"bad \xff byte\nlast"
            response = await client.post("/topics/logs/events", content=body, headers={"Content-Type": "text/plain"})
            events = await _events(sub, 4)
    assert [e.json() for e in events] == ["GET /index.html 200", 'said "hi"\tthere', "wörld", "last"]
    report = response.json()
    assert response.status_code == 200
    assert (report["accepted"], report["rejected"]) == (4, 1)
    assert report["errors"] == [{"line": 5, "code": "invalid_utf8", "reason": report["errors"][0]["reason"]}]


async def test_ingest_body_over_limit_publishes_lines_before_it_then_answers_413(make_settings, client_factory):
    settings = make_settings(max_body_bytes=100)
    lines = [orjson.dumps({"n": n, "pad": "xxxx"}) + b"\n" for n in range(10)]  # 21 bytes each
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        async with await hub.subscribe(["cut"]) as sub:
            response = await client.post("/topics/cut/events", content=_chunks(*lines), headers=NDJSON)
            events = await _events(sub, 4)
            await asyncio.sleep(0)
            assert sub.queued == 0, "the line cut by the limit must not be published"
    assert response.status_code == 413
    answer = response.json()
    assert answer["error"]["code"] == "payload_too_large"
    assert "100 bytes" in answer["error"]["message"] and "line 5" in answer["error"]["message"]
    report = answer["report"]
    assert (report["accepted"], report["lines"], report["truncated"]) == (4, 4, True)
    assert [e.json()["n"] for e in events] == [0, 1, 2, 3]
    assert report["last_id"] == events[-1].id


async def test_ingest_multipart_backlog_file_is_published_line_by_line(settings, client_factory):
    backlog = b"".join(orjson.dumps({"seq": n}) + b"\n" for n in range(500)) + b"oops\n"
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        async with await hub.subscribe(["backlog"]) as sub:
            response = await client.post(
                "/topics/backlog/events",
                data={"sensor": "ignored"},
                files={"file": ("backlog.ndjson", backlog, "application/x-ndjson")},
            )
            events = await _events(sub, 500)
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["accepted"], report["rejected"], report["lines"]) == (500, 1, 501)
    assert report["errors"][0]["line"] == 501
    assert [e.json()["seq"] for e in events] == list(range(500))


async def test_ingest_multipart_without_file_field_is_400_naming_it(make_settings, client_factory):
    async with client_factory(make_settings()) as client:
        response = await client.post("/topics/backlog/events", files={"upload": ("a.ndjson", b"{}\n")})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "missing_field"
    assert '"file"' in response.json()["error"]["message"]


async def test_ingest_multipart_over_limit_answers_413_with_report(make_settings, client_factory):
    settings = make_settings(max_body_bytes=4096)
    backlog = b"".join(orjson.dumps({"seq": n}) + b"\n" for n in range(1000))
    async with client_factory(settings) as client:
        response = await client.post("/topics/backlog/events", files={"file": ("b.ndjson", backlog)})
    assert response.status_code == 413
    report = response.json()["report"]
    assert report["truncated"] and 0 < report["accepted"] == report["lines"] < 1000


async def test_ingest_rejects_unknown_content_type_naming_supported_ones(make_settings, client_factory):
    async with client_factory(make_settings()) as client:
        response = await client.post("/topics/t/events", content=b"<x/>", headers={"Content-Type": "application/xml"})
    assert response.status_code == 415
    message = response.json()["error"]["message"]
    assert "application/x-ndjson" in message and "text/plain" in message and "multipart/form-data" in message


async def test_ingest_body_with_only_bad_lines_is_422_with_report(make_settings, client_factory):
    async with client_factory(make_settings()) as client:
        response = await client.post("/topics/t/events", content=b"nope\n{\n", headers=NDJSON)
    assert response.status_code == 422
    answer = response.json()
    assert answer["error"]["code"] == "no_valid_lines"
    assert [e["line"] for e in answer["report"]["errors"]] == [1, 2]


async def test_ingest_one_huge_chunk_is_published_in_order_in_bounded_batches(make_settings, client_factory):
    settings = make_settings()
    body = b"".join(b"%d\n" % n for n in range(2500))  # one chunk, more lines than one batch holds
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        async with await hub.subscribe(["huge"], queue_size=5000) as sub:
            response = await client.post("/topics/huge/events", content=body, headers=NDJSON)
            events = await _events(sub, 2500)
    assert response.json()["accepted"] == 2500
    assert [e.json() for e in events] == list(range(2500))


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b'--b\r\nContent-Disposition: form-data; name="file"\r\n\r\n1\n2\n3', "before its closing boundary"),
        (b"--b\r\nno headers at all\r\r\r", "malformed"),
    ],
    ids=["unterminated", "malformed"],
)
async def test_ingest_broken_multipart_is_400_with_report(make_settings, client_factory, body, message):
    async with client_factory(make_settings()) as client:
        headers = {"Content-Type": "multipart/form-data; boundary=b"}
        response = await client.post("/topics/t/events", content=body, headers=headers)
    assert response.status_code == 400
    answer = response.json()
    assert answer["error"]["code"] == "invalid_multipart" and message in answer["error"]["message"]
    assert answer["report"]["truncated"] is True


async def test_ingest_multipart_without_boundary_is_400(make_settings, client_factory):
    async with client_factory(make_settings()) as client:
        response = await client.post("/topics/t/events", content=b"x", headers={"Content-Type": "multipart/form-data"})
    assert response.status_code == 400 and "boundary" in response.json()["error"]["message"]


async def test_ingest_multipart_with_an_overlong_boundary_is_400_naming_it(make_settings, client_factory):
    boundary = "b" * 300
    headers = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    body = f'--{boundary}\r\nContent-Disposition: form-data; name="file"\r\n\r\n1\r\n--{boundary}--\r\n'
    async with client_factory(make_settings()) as client:
        response = await client.post("/topics/t/events", content=body.encode(), headers=headers)
    assert response.status_code == 400, response.text
    assert "boundary is 300 bytes long" in response.json()["error"]["message"]


async def test_ingest_text_line_too_long_once_encoded_is_rejected(make_settings, client_factory):
    settings = make_settings(max_event_bytes=20)
    body = b"short\n" + b'"' * 15 + b"\n" + b"y" * 30 + b"\n"  # 15 quotes are 32 bytes as a JSON string
    async with client_factory(settings) as client:
        response = await client.post("/topics/t/events", content=body, headers={"Content-Type": "text/plain"})
    report = response.json()
    assert (report["accepted"], report["rejected"]) == (1, 2)
    assert [(e["line"], e["code"]) for e in report["errors"]] == [(2, "too_long"), (3, "too_long")]
    assert "as a JSON string" in report["errors"][0]["reason"]


async def test_ingest_hub_closing_mid_stream_answers_503_with_report(make_settings, client_factory):
    settings = make_settings()
    hub = Hub(settings=settings)
    go_on = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b"1\n"
        await go_on.wait()
        yield b"2\n"

    async with hub, client_factory(settings, hub) as client:
        post = asyncio.create_task(client.post("/topics/t/events", content=body(), headers=NDJSON))
        await eventually(lambda: hub.metrics.published == 1)
        await hub.aclose()
        go_on.set()
        async with asyncio.timeout(5):
            response = await post
    assert response.status_code == 503
    answer = response.json()
    assert answer["error"]["code"] == "shutting_down"
    assert (answer["report"]["accepted"], answer["report"]["lines"]) == (1, 1)


@pytest.mark.e2e
async def test_ingest_client_disconnect_publishes_completed_lines_only_and_logs_once(make_settings, caplog):
    caplog.set_level(logging.INFO, logger="broadcaster.http.publish.ingest")
    with thread_server(make_settings()) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            async with client.stream("GET", "/topics/cut/events") as stream:
                lines = stream.aiter_lines()
                reader, writer = await asyncio.open_connection("127.0.0.1", server.settings.port)
                head = (
                    "POST /topics/cut/events HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-ndjson\r\n"
                    "Transfer-Encoding: chunked\r\n\r\n"
                )
                payload = b'{"n": 1}\n{"n": 2}\n{"n": 3, "partial'
                writer.write(head.encode() + b"%x\r\n" % len(payload) + payload + b"\r\n")
                await writer.drain()
                received: list[object] = []
                async with asyncio.timeout(5):
                    while len(received) < 2:
                        line = orjson.loads(await anext(lines))
                        if "data" in line:
                            received.append(line["data"])
                writer.close()
                await writer.wait_closed()
                await eventually(lambda: [r for r in caplog.records if "disconnected" in r.getMessage()], within=5)
                # A marker published after the disconnect: nothing may come before it but the two whole lines.
                assert (await client.post("/topics/cut/events", json={"marker": True})).status_code == 201
                async with asyncio.timeout(5):
                    while True:
                        line = orjson.loads(await anext(lines))
                        if "data" in line:
                            received.append(line["data"])
                            break
            assert (await client.get("/healthz")).status_code == 200
    assert received == [{"n": 1}, {"n": 2}, {"marker": True}]
    logged = [r for r in caplog.records if r.name == "broadcaster.http.publish.ingest"]
    assert len(logged) == 1 and "after 2 lines" in logged[0].getMessage()


@pytest.mark.redis
async def test_ingest_backend_down_mid_stream_answers_503_with_report(
    make_settings, redis_server_factory, client_factory
):
    redis = redis_server_factory()
    settings = make_settings(redis_url=redis.url)
    go_on = asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        yield b'{"n": 1}\n{"n": 2}\n'
        await go_on.wait()
        yield b'{"n": 3}\n'
        yield b'{"n": 4}\n'

    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        async with await hub.subscribe(["down"]) as sub:
            post = asyncio.create_task(client.post("/topics/down/events", content=body(), headers=NDJSON))
            events = await _events(sub, 2)
            redis.stop()
            go_on.set()
            async with asyncio.timeout(10):
                response = await post
    assert response.status_code == 503
    assert response.headers["retry-after"]
    answer = response.json()
    assert answer["error"]["code"] == "backend_unavailable" and "line 3" in answer["error"]["message"]
    report = answer["report"]
    assert (report["accepted"], report["lines"], report["truncated"]) == (2, 2, True)
    assert (report["first_id"], report["last_id"]) == (events[0].id, events[1].id)


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


class _PeakRss:
    """The highest VmRSS of a process while the block runs, sampled every 20 ms in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.before = self.peak = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample)

    def _sample(self) -> None:
        while not self._done.wait(0.02):
            self.peak = max(self.peak, _rss_mb(self.pid))

    def __enter__(self) -> _PeakRss:
        self.before = self.peak = _rss_mb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join(5)
        self.peak = max(self.peak, _rss_mb(self.pid))


@pytest.mark.e2e
async def test_ingest_big_bodies_keep_server_memory_flat():
    """Acceptance 3, scaled down to stay fast: 32 MB through one NDJSON POST and through one multipart
    upload to a server process; its RSS grows by less than half the body (holding it would not pass).

    The 200 MB runs (growth < 50 MB) are `python -m loadtest.ingest_memory`, in docs/benchmarks.md.
    """
    line = orjson.dumps({"seq": 0, "pad": "x" * 180}) + b"\n"
    block = line * (256 * 1024 // len(line))
    blocks = 32 * 4
    boundary = "bench-boundary"

    async def body(multipart: bool) -> AsyncIterator[bytes]:
        if multipart:
            yield f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b"\r\n\r\n'.encode()
        for _ in range(blocks):
            yield block
        if multipart:
            yield f"\r\n--{boundary}--\r\n".encode()

    growth = {}
    with ProcessServer() as server:
        assert server.process is not None
        pid = server.process.pid
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            warm = await client.post("/topics/warm/events", content=block * 4, headers=NDJSON)
            assert warm.status_code == 200
            for shape, content_type in [
                ("ndjson", "application/x-ndjson"),
                ("multipart", f"multipart/form-data; boundary={boundary}"),
            ]:
                headers = {"Content-Type": content_type}
                with _PeakRss(pid) as rss:
                    response = await client.post("/topics/big/events", content=body(shape != "ndjson"), headers=headers)
                assert response.status_code == 200, response.text[:500]
                assert response.json()["accepted"] == blocks * (len(block) // len(line))
                growth[shape] = round(rss.peak - rss.before, 1)
    assert all(mb < 16 for mb in growth.values()), f"server RSS growth in MB: {growth}"
