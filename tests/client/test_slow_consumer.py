"""A consumer too slow for a burst: the client stops reading, the server's overflow policy applies.

Issue 13, acceptance 6: with a small queue and `drop-oldest` the consumer gets
a `Gap` that counts exactly what it missed. With `disconnect` (the server's
default) it gets the `Fault`, and the client resumes from the history: nothing
is missed at all.
"""

from __future__ import annotations

import httpx
import pytest

from broadcaster.client import Event, Fault, Gap, Item, Subscriber

from ..support.servers import ThreadServer, thread_server
from .helpers import events, take

pytestmark = pytest.mark.e2e

LINE_BYTES = 32 * 1024
LINES_PER_BURST = 64  # 2 MiB per POST
MAX_BURSTS = 30  # the socket buffers hold a few MiB; stop long before anything unbounded


def _line(n: int) -> bytes:
    head = b'{"n":%d,"pad":"' % n
    return head + b"x" * (LINE_BYTES - len(head) - 2) + b'"}'


async def _burst_until(server: ThreadServer, topic: str, overflowed) -> int:
    """Publish bursts (one NDJSON POST each) until `overflowed()`; return how many events were published."""
    published = 0
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
        for _ in range(MAX_BURSTS):
            body = b"\n".join(_line(published + i) for i in range(LINES_PER_BURST)) + b"\n"
            answer = await client.post(
                f"/topics/{topic}/events", content=body, headers={"Content-Type": "application/x-ndjson"}
            )
            assert answer.status_code == 200 and answer.json()["accepted"] == LINES_PER_BURST, answer.text
            published += LINES_PER_BURST
            if overflowed():
                return published
    raise AssertionError(f"{published} events did not overflow the subscriber's queue")


def _accounted(items: list[Item]) -> int:
    return len(events(items)) + sum(item.dropped or 0 for item in items if isinstance(item, Gap))


async def test_slow_consumer_small_queue_drop_oldest_yields_a_gap_under_a_burst(make_settings):
    with thread_server(make_settings(send_timeout_s=30.0)) as server:
        hub = server.app.state.hub
        async with Subscriber(server.url, "burst", queue=4, overflow="drop-oldest") as sub:
            # The consumer does not ask for anything while the burst comes: the client reads nothing.
            published = await _burst_until(server, "burst", lambda: hub.dropped > 0)
            items = await take(sub, lambda items: _accounted(items) >= published, within=20)
    gaps = [item for item in items if isinstance(item, Gap)]
    assert gaps, "no Gap"
    assert _accounted(items) == published
    assert sum(gap.dropped or 0 for gap in gaps) == hub.dropped
    # In order, each gap exactly where its events went missing, and the newest survive.
    expected = 0
    for item in items:
        if isinstance(item, Event):
            assert item.data["n"] == expected
            expected += 1
        elif isinstance(item, Gap):
            expected += item.dropped or 0
    assert expected == published
    assert events(items)[-1].data["n"] == published - 1


async def test_slow_consumer_evicted_gets_the_fault_and_resumes_without_loss(make_settings):
    with thread_server(make_settings(send_timeout_s=30.0, history_size=2000)) as server:
        hub = server.app.state.hub
        async with Subscriber(server.url, "evict", queue=4) as sub:  # overflow: the server's default, disconnect
            published = await _burst_until(
                server, "evict", lambda: any(s.evicted for s in list(hub._subscriptions)) or hub.metrics.evicted > 0
            )
            items = await take(sub, lambda items: len(events(items)) >= published, within=20)
            assert sub.reconnects == 1
    faults = [item for item in items if isinstance(item, Fault)]
    assert len(faults) == 1 and faults[0].reason == "slow consumer"
    assert [e.data["n"] for e in events(items)] == list(range(published))  # every event once, in order
