"""Subscriber against a real uvicorn server on a real socket: what it yields, where it resumes, how it refuses."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import threading
from collections.abc import Iterator

import httpx
import pytest

from broadcaster import Control, InvalidEventType, InvalidTopic, Settings, parse_cursor, topic_tag
from broadcaster.client import (
    Event,
    Live,
    ProtocolError,
    Published,
    RequestRefused,
    Reset,
    Retry,
    ServerUnavailable,
    Shutdown,
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
    live = items[1]
    assert isinstance(live, Live) and live.cursor is not None
    assert items == [
        Event(before.id, "orders", "message", before.ts, {"n": 0}),
        Live("live", {"replayed": 1, "cursor": live.cursor}, 1, live.cursor),
        Event(later[0].id, "sensors.kitchen", "reading", later[0].ts, {"t": 21.5}),
        Event(later[1].id, "orders", "message", later[1].ts, [1, "two", None]),
    ]
    # A multi-topic stream's position is its cursor: the base it started from, the last id of each topic.
    started, position = parse_cursor(live.cursor), parse_cursor(sub.last_event_id or "")
    assert started.positions == {} and position.base_ms == started.base_ms and not position.truncated
    assert position.positions == {
        topic_tag("orders"): (later[1].id.split(".")[1], 2),
        topic_tag("sensors.kitchen"): (later[0].id.split(".")[1], 1),
    }


async def test_subscriber_resumes_after_a_persisted_position(make_settings):
    with thread_server(make_settings()) as server:
        published = [await _publish(server.url, "jobs", n) for n in range(4)]
        async with Subscriber(server.url, "jobs", last_event_id=published[1].id) as sub:
            items = await take(sub, lambda items: isinstance(items[-1], Live))
    assert [(e.id, e.data) for e in events(items)] == [(p.id, n) for n, p in enumerate(published)][2:]
    live = items[-1]
    assert isinstance(live, Live) and live.replayed == 2
    assert live.cursor is not None and live.cursor.endswith("~" + published[1].id)  # where the stream started
    assert sub.last_event_id == published[3].id  # one topic: the position is the last event's id


@pytest.mark.parametrize("fmt", ["ndjson", "sse"])
async def test_subscriber_multi_topic_position_resumes_every_topic_exactly(make_settings, fmt):
    """The persisted cursor of a multi-topic stream replays what each topic missed, a pattern's new topic too."""
    with thread_server(make_settings()) as server:
        first = [await _publish(server.url, t, n) for n, t in enumerate(["a", "b.x", "a", "b.x", "a"])]
        async with Subscriber(server.url, ["a", "b.*", "quiet"], format=fmt, tail=5) as sub:
            items = await take(sub, lambda items: isinstance(items[-1], Live))  # the base comes with `live`
            assert [e.id for e in events(items)] == [p.id for p in first]
            position = sub.last_event_id
        assert position is not None and "~" in position
        missed = [await _publish(server.url, t, n) for n, t in enumerate(["b.x", "a", "b.new", "quiet", "b.x"])]
        async with Subscriber(server.url, ["a", "b.*", "quiet"], format=fmt, last_event_id=position) as sub:
            items = await take(sub, lambda items: isinstance(items[-1], Live))
            later = await _publish(server.url, "b.new", "live")
            items += await take_events(sub, 1)
    assert not any(isinstance(item, Reset) for item in items), items
    replayed = events(items)
    assert sorted(e.id for e in replayed[:-1]) == sorted(p.id for p in missed)  # each missed event once
    for topic in ("a", "b.x", "b.new", "quiet"):  # and each topic's in its order
        assert [e.id for e in replayed if e.topic == topic] == [p.id for p in [*missed, later] if p.topic == topic]
    assert items[-2] == Live("live", items[-2].fields, 5, _cursor_of(items[-2]))


def _cursor_of(item: object) -> str | None:
    """The `cursor` of a `Live`."""
    return item.cursor if isinstance(item, Live) else None


async def test_subscriber_multi_topic_stream_resumes_from_its_base_before_any_event(make_settings):
    """No event yet, but the stream's base (from `live`) is a resume point: what came meanwhile is replayed."""
    with thread_server(make_settings()) as server:
        async with Subscriber(server.url, ["calm", "calm.*"], retry=Retry(0.05, cap_s=0.1)) as sub:
            receiving = asyncio.create_task(take(sub, lambda items: isinstance(items[-1], Live)))
            try:
                await eventually(lambda: sub.last_event_id is not None, within=5, what="the base from `live`")
                assert (sub.last_event_id or "").endswith("~")  # a base and no id yet
                _end_streams_now(server, Control("shutdown", {"reason": "test", "retry_ms": 2000}))
                await eventually(lambda: not sub.connected, within=5, what="the stream ended")
                away = await _publish(server.url, "calm.new", "while away")
                items = await receiving
            finally:
                receiving.cancel()
    assert isinstance(items[0], Shutdown) and items[0].retry_ms == 2000, items
    assert items[1:] == [
        Event(away.id, "calm.new", "message", away.ts, "while away"),  # replayed: no reset, nothing lost
        Live("live", items[2].fields, 1, _cursor_of(items[2])),  # type: ignore[union-attr]
    ]


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
            _end_streams_now(
                server, Control("fault", {"reason": "test"})
            )  # the stream ends: the subscriber waits up to 5 s to reconnect
            await eventually(lambda: not sub.connected, within=5, what="the stream ended")
        async with asyncio.timeout(2):  # not the 5 s of the backoff
            with pytest.raises(AssertionError, match="the subscriber stopped"):
                await waiting


def _end_streams_now(server, end: Control) -> None:
    hub = server.app.state.hub
    hub._pump_task.get_loop().call_soon_threadsafe(hub.end_streams, lambda: end)


async def test_subscriber_gives_up_after_the_retry_budget_naming_the_cause():
    sub = Subscriber(f"http://127.0.0.1:{free_port()}", "t", retry=Retry(0.05, cap_s=0.1, give_up_after_s=0.5))
    started = asyncio.get_running_loop().time()
    with pytest.raises(ServerUnavailable, match=r"cannot connect to .* \(ConnectError\); gave up after 0\.\d+s"):
        async with asyncio.timeout(5):
            await sub.__aenter__()
    assert asyncio.get_running_loop().time() - started < 2.0
    assert not sub.connected


def test_subscriber_drops_an_event_seen_before_per_topic_by_epoch_and_seq():
    from broadcaster.client._position import DEDUP_TOPICS, StreamPosition

    def event(topic: str, epoch: str, seq: int) -> Event:
        return Event(f"{topic_tag(topic)}.{epoch}.{seq}", topic, "message", 1, seq)

    position = StreamPosition(True, None)
    assert position.first_time(event("t", "0000000a", 5), None)
    assert not position.first_time(event("t", "0000000a", 5), None)  # the same event again
    assert not position.first_time(event("t", "0000000a", 4), None)  # an older one of the same history
    assert position.first_time(event("other", "0000000a", 2), None)  # other topics have their own seqs
    assert position.first_time(event("t", "0000000b", 1), None)  # a new history starts again at 1
    assert position.first_time(event("t", "0000000b", 2), None)
    position.reset(Reset("reset", {}, "lost", None, ("t",)))  # the history of t is gone: it may start again
    assert position.first_time(event("t", "0000000b", 1), None)
    for n in range(DEDUP_TOPICS + 1):
        position.first_time(event(f"many.{n}", "0000000a", 1), None)
    assert len(position._seqs) == DEDUP_TOPICS  # bounded: the least recent topic is forgotten
    assert position.first_time(event("other", "0000000a", 2), None)


def test_subscriber_cursor_built_on_ndjson_is_bounded_and_says_so():
    from broadcaster.client._position import MAX_CURSOR_IDS, StreamPosition

    position = StreamPosition(True, None)
    position.live(Live("live", {}, 0, "1795384978745~"))
    ids = [f"{topic_tag(f'p.{n}')}.0000000a.1" for n in range(MAX_CURSOR_IDS + 2)]
    for n, event_id in enumerate(ids):
        position.first_time(Event(event_id, f"p.{n}", "message", 1, None), None)
    cursor = position.value or ""
    assert cursor == "1795384978745!~" + ",".join(ids[2:])  # the two least recent dropped, and `!` says so
    assert len(parse_cursor(cursor).positions) == MAX_CURSOR_IDS
    assert MAX_CURSOR_IDS == Settings().max_topics_per_stream  # the server's default bound of its own cursor


def test_subscriber_cursor_from_a_bare_id_takes_the_base_of_live_and_keeps_the_ids_yielded():
    """A multi-topic stream resumed from one id (no base): `live` tells the base; what was replayed stays."""
    from broadcaster.client._position import StreamPosition

    a1, a2, b1 = (f"{topic_tag(t)}.0000000a.{n}" for t, n in [("a", 1), ("a", 2), ("b.x", 1)])
    position = StreamPosition(True, a1)
    assert position.value == a1
    assert not position.first_time(Event(a1, "a", "message", 1, None), None)  # the resume point is not yielded again
    assert position.first_time(Event(b1, "b.x", "message", 1, None), None)  # replayed before `live`
    assert position.value == f"{a1},{b1}"  # no base yet: the ids only
    position.live(Live("live", {}, 1, f"1795384978745~{a1}"))
    assert position.value == f"1795384978745~{a1},{b1}"
    assert position.first_time(Event(a2, "a", "message", 1, None), None)
    assert position.value == f"1795384978745~{b1},{a2}"  # most recently yielded last
