"""A server that stops answering (SIGSTOP: the socket stays open, nothing comes) is noticed and left.

Issue 13, acceptance 3: noticed within `heartbeat_timeout` plus one second,
reconnected once the server runs again (SIGCONT), nothing lost, although events
kept being published into Redis while the server was frozen.
"""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from broadcaster.client import Event, Retry, Subscriber
from producers import RedisTarget

from ..support.servers import ProcessServer
from ..support.waiting import eventually

# Each server process start takes 0.5 s here, and several seconds on a loaded machine (six engineers, two cores).
pytestmark = [pytest.mark.e2e, pytest.mark.redis, pytest.mark.timeout(60)]

HEARTBEAT_TIMEOUT_S = 1.5
STOPPED_S = 3.5


async def test_dead_connection_sigstop_noticed_within_timeout_resumed_after_sigcont(redis_url):
    server = ProcessServer("--redis-url", redis_url, "--heartbeat-s", "0.3")
    with server:
        process = server.process
        assert process is not None
        sub = Subscriber(
            server.url, "frozen", heartbeat_timeout=HEARTBEAT_TIMEOUT_S, timeout=1.0, retry=Retry(0.1, cap_s=0.5)
        )
        async with RedisTarget(redis_url) as target, sub:
            received: list[Event] = []

            async def consume() -> None:
                async for item in sub:
                    if isinstance(item, Event):
                        received.append(item)
                        if item.data == "last":
                            return

            consumer = asyncio.create_task(consume())
            try:
                for n in range(10):
                    await target.publish("frozen", b"%d" % n)
                await target.flush()
                await eventually(lambda: len(received) == 10, within=5, what="the first 10 events")

                process.send_signal(signal.SIGSTOP)
                stopped_at = time.monotonic()
                try:
                    for n in range(10, 20):  # into Redis while the server cannot see them
                        await target.publish("frozen", b"%d" % n)
                    await target.flush()
                    await eventually(lambda: not sub.connected, within=HEARTBEAT_TIMEOUT_S + 2, what="noticed")
                    noticed_after = time.monotonic() - stopped_at
                    await asyncio.sleep(max(0.0, STOPPED_S - (time.monotonic() - stopped_at)))
                finally:
                    process.send_signal(signal.SIGCONT)

                await eventually(lambda: sub.connected, within=10, what="reconnected after SIGCONT")
                await target.publish("frozen", b'"last"')
                await target.flush()
                async with asyncio.timeout(10):
                    await consumer
            finally:
                consumer.cancel()

    print(f"dead connection noticed {noticed_after:.2f}s after SIGSTOP")
    # The last byte came at most one keepalive period before the stop, so the timeout ran from then.
    assert HEARTBEAT_TIMEOUT_S - 0.5 <= noticed_after <= HEARTBEAT_TIMEOUT_S + 1.0
    assert [e.data for e in received] == [*range(20), "last"]  # nothing lost, nothing twice
    assert sub.reconnects >= 1
