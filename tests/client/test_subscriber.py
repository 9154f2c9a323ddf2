"""Subscriber against a real uvicorn server on a real socket: what it yields, where it resumes, how it refuses."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from broadcaster import Control, InvalidEventType, InvalidTopic
from broadcaster.client import (
    Event,
    Live,
    ProtocolError,
    Published,
    RequestRefused,
    Retry,
    ServerUnavailable,
    Subscriber,
    iter_events,
    publish,
)

from ..support.redis_server import free_port
from ..support.servers import thread_server
from ..support.waiting import eventually, eventually_sync
from .helpers import events, take, take_events

pytestmark = pytest.mark.e2e


async def _publish(url: str, topic: str, data: object, **options: object) -> Published:
    return await asyncio.to_thread(publish, url, topic, data, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize("fmt", ["ndjson", "sse"])
async def test_subscriber_yields_replay_live_then_events_of_every_selector(make_settings, fmt):
    with thread_server(make_settings()) as server:
        before = await _publish(server.url, "orders", {"n": 0})
        async with Subscriber(server.url, ["orders", "sensors.*"], format=fmt, tail=5) as sub:
            assert sub.connected and sub.reconnects == 0
            later = [
                await _publish(server.url, "sensors.kitchen", {"t": 21.5}, type="reading"),
                await _publish(server.url, "orders", [1, "two", None]),
            ]
            items = await take_events(sub, 3)
        assert not sub.connected
    assert items == [
        Event(before.id, "orders", "message", before.ts, {"n": 0}),
        Live("live", {"replayed": 1}, 1),
        Event(later[0].id, "sensors.kitchen", "reading", later[0].ts, {"t": 21.5}),
        Event(later[1].id, "orders", "message", later[1].ts, [1, "two", None]),
    ]
    assert sub.last_event_id == later[1].id


async def test_subscriber_resumes_after_a_persisted_position(make_settings):
    with thread_server(make_settings()) as server:
        published = [await _publish(server.url, "jobs", n) for n in range(4)]
        async with Subscriber(server.url, "jobs", last_event_id=published[1].id) as sub:
            items = await take(sub, lambda items: isinstance(items[-1], Live))
    assert [(e.id, e.data) for e in events(items)] == [(p.id, n) for n, p in enumerate(published)][2:]
    assert items[-1] == Live("live", {"replayed": 2}, 2)


async def test_subscriber_entered_means_subscribed_and_leaving_unsubscribes(make_settings):
    with thread_server(make_settings()) as server:
        hub = server.app.state.hub
        async with Subscriber(server.url, "presence") as sub:
            assert hub.subscriber_count("presence") == 1
            sent = await _publish(server.url, "presence", "here")  # published right after entering: delivered
            assert events(await take_events(sub, 1))[0].id == sent.id
        await eventually(lambda: hub.subscriber_count("presence") == 0, within=5, what="unsubscribed on exit")
        await sub.aclose()  # a second close is a no-op
        with pytest.raises(StopAsyncIteration):
            await anext(sub)
        with pytest.raises(RuntimeError, match="entered once"):
            await sub.__aenter__()
        with pytest.raises(RuntimeError, match="use `async with"):
            await anext(Subscriber(server.url, "presence"))


async def test_subscriber_refusals_raise_with_the_servers_reason(make_settings):
    with thread_server(make_settings(queue_size=10, max_queue_size=100)) as server:
        with pytest.raises(RequestRefused) as refused:
            async with Subscriber(server.url, "t", queue=1000):
                pass
        assert refused.value.status == 422 and refused.value.code == "invalid_parameter"
        assert "queue must be between 1 and 100" in str(refused.value)
        with pytest.raises(RequestRefused) as not_found:
            async with Subscriber(server.url + "/no/such/prefix", "t"):
                pass
        assert not_found.value.status == 404
    with pytest.raises(InvalidTopic):
        Subscriber("http://127.0.0.1:1", "bad topic!")  # refused before any request
    with pytest.raises(ValueError, match="format"):
        Subscriber("http://127.0.0.1:1", "t", format="xml")


@contextlib.contextmanager
def _web_page_server() -> Iterator[str]:
    """A plain web server that answers every GET with an HTML page (a wrong URL, as users type them)."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"<html>hello</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


async def test_subscriber_an_answer_that_is_no_stream_is_a_protocol_error():
    with _web_page_server() as url:
        with pytest.raises(ProtocolError, match="text/html, not a stream"):
            async with Subscriber(url, "t"):
                pass


async def test_subscriber_learns_the_servers_heartbeat(make_settings):
    with thread_server(make_settings(heartbeat_s=0.2)) as server:
        async with Subscriber(server.url, "quiet") as sub:
            assert sub.heartbeat_timeout == 60.0  # nothing learned yet
            waiting = asyncio.create_task(anext(sub))
            # Keepalives come within 0.2 s of silence (the server's sweep runs every 0.1 s): 2 x that + 1 s.
            await eventually(lambda: sub.heartbeat_timeout < 60.0, within=5, what="a keepalive seen")
            await asyncio.sleep(1.0)  # let a few more keepalives come: the largest silence counts
            assert 1.2 <= sub.heartbeat_timeout <= 2.0, sub.heartbeat_timeout
            sent = await _publish(server.url, "quiet", "ping")
            async with asyncio.timeout(5):
                assert (await waiting) == Event(sent.id, "quiet", "message", sent.ts, "ping")


def test_iter_events_is_a_plain_iterator_that_closes_on_break(make_settings):
    with thread_server(make_settings()) as server:
        published = [publish(server.url, "script", {"n": n}) for n in range(3)]
        got = []
        for item in iter_events(server.url, "script", tail=3):
            got.append(item)
            if isinstance(item, Event) and item.id == published[-1].id:
                break
        assert [e.data for e in events(got)] == [{"n": 0}, {"n": 1}, {"n": 2}]
        hub = server.app.state.hub
        eventually_sync(lambda: hub.subscriber_count("script") == 0, timeout=5, what="stream closed after break")


async def test_iter_events_refuses_to_run_inside_an_event_loop():
    with pytest.raises(RuntimeError, match="async with Subscriber"):
        iter_events("http://127.0.0.1:1", "t")


def test_publish_answers_and_refusals(make_settings):
    with thread_server(make_settings(max_event_bytes=1000)) as server:
        answer = publish(server.url, "pub.one", {"x": 1}, type="reading")
        assert answer.topic == "pub.one" and answer.id and answer.ts > 0
        history = httpx.get(f"{server.url}/topics/pub.one/history").text
        assert answer.id in history and '"type":"reading"' in history
        with pytest.raises(RequestRefused) as too_big:
            publish(server.url, "pub.one", "x" * 2000)
        assert too_big.value.status == 413 and too_big.value.code == "payload_too_large"
    with pytest.raises(InvalidEventType):
        publish("http://127.0.0.1:1", "pub.one", 1, type="gap")
    with pytest.raises(ServerUnavailable, match="cannot reach"):
        publish(f"http://127.0.0.1:{free_port()}", "pub.one", 1, timeout=2)


async def test_subscriber_closed_by_another_task_ends_the_iteration_cleanly(make_settings):
    """A consumer task blocked in a read, or waiting to reconnect, sees its loop end; nothing raises."""
    with thread_server(make_settings()) as server:
        sub = Subscriber(server.url, "bye", retry=Retry(initial_s=5.0, cap_s=5.0))
        async with sub:
            reading = asyncio.create_task(take(sub, lambda items: False, within=30))
            await asyncio.sleep(0.2)  # blocked in the read now
        async with asyncio.timeout(5):
            with pytest.raises(AssertionError, match="the subscriber stopped"):
                await reading
        assert not sub.connected

        sub = Subscriber(server.url, "bye", retry=Retry(initial_s=5.0, cap_s=5.0))
        async with sub:
            waiting = asyncio.create_task(take(sub, lambda items: False, within=30))
            _end_streams_now(server)  # the stream ends: the subscriber waits up to 5 s to reconnect
            await eventually(lambda: not sub.connected, within=5, what="the stream ended")
        async with asyncio.timeout(2):  # not the 5 s of the backoff
            with pytest.raises(AssertionError, match="the subscriber stopped"):
                await waiting


def _end_streams_now(server) -> None:
    hub = server.app.state.hub
    hub._pump_task.get_loop().call_soon_threadsafe(hub.end_streams, lambda: Control("fault", {"reason": "test"}))


async def test_subscriber_gives_up_after_the_retry_budget_naming_the_cause():
    sub = Subscriber(f"http://127.0.0.1:{free_port()}", "t", retry=Retry(0.05, cap_s=0.1, give_up_after_s=0.5))
    started = asyncio.get_running_loop().time()
    with pytest.raises(ServerUnavailable, match=r"cannot connect to .* \(ConnectError\); gave up after 0\.\d+s"):
        async with asyncio.timeout(5):
            await sub.__aenter__()
    assert asyncio.get_running_loop().time() - started < 2.0
    assert not sub.connected


def test_subscriber_drops_an_event_seen_before_and_remembers_a_bounded_window():
    from broadcaster.client._subscriber import DEDUP_WINDOW

    sub = Subscriber("http://127.0.0.1:1", "t")
    first = Event("1-1", "t", "message", 1, None)
    assert sub._first_time(first) and not sub._first_time(first)
    assert sub._first_time(Event("1-1", "other", "message", 1, None))  # ids are per topic
    for n in range(2 * DEDUP_WINDOW):
        sub._first_time(Event(f"2-{n}", "t", "message", 2, n))
    assert len(sub._seen) == len(sub._seen_set) == DEDUP_WINDOW
    assert sub._first_time(first)  # long forgotten
