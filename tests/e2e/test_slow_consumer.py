"""A subscriber whose socket stops reading: the others do not wait for it, memory stays within the queue caps,
`disconnect` drops it, and `drop-*` tell it exactly how many events it missed."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import h11
import httpx
import orjson
import pytest

from ..support.servers import ProcessServer, ThreadServer, thread_server
from ..support.waiting import eventually

pytestmark = pytest.mark.e2e

MiB = 1024 * 1024
SMALL_RCVBUF = 4096


class RawSubscriber:
    """An HTTP/1.1 GET on a plain socket with a tiny receive buffer, that reads only when told to."""

    def __init__(self, port: int, target: str) -> None:
        self.port = port
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Before connect: the receive window is fixed at the handshake.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, SMALL_RCVBUF)
        self.sock.setblocking(False)
        self.http = h11.Connection(h11.CLIENT)
        self.status: int | None = None
        self.parsed: list[dict[str, Any]] = []  # complete NDJSON lines so far
        self._partial = b""
        self.ended = False  # the server ended the response or closed the connection

    async def open(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.sock_connect(self.sock, ("127.0.0.1", self.port))
        request = h11.Request(method="GET", target=self.target, headers=[("Host", f"127.0.0.1:{self.port}")])
        await loop.sock_sendall(self.sock, self.http.send(request) + self.http.send(h11.EndOfMessage()))

    async def read(self, *, until: Any = None, within: float = 5.0) -> None:
        """Read (and parse) until `until(self)` holds or the response ends; fail at the deadline."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(within):
            while not self.ended and not (until is not None and until(self)):
                try:
                    data = await loop.sock_recv(self.sock, 256 * 1024)
                except ConnectionResetError:
                    data = b""
                self._feed(data)

    def _feed(self, data: bytes) -> None:
        self.http.receive_data(data)
        while True:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError:  # closed in the middle of a chunk: the server aborted us
                self.ended = True
                return
            if event is h11.NEED_DATA:
                if not data:
                    self.ended = True
                return
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                *lines, self._partial = (self._partial + event.data).split(b"\n")
                self.parsed.extend(orjson.loads(line) for line in lines if line)
            elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
                self.ended = True
                return

    def lines(self) -> list[dict[str, Any]]:
        return self.parsed

    def close(self) -> None:
        self.sock.close()


@contextlib.asynccontextmanager
async def raw_subscriber(port: int, target: str) -> AsyncIterator[RawSubscriber]:
    sub = RawSubscriber(port, target)
    try:
        await sub.open()
        yield sub
    finally:
        sub.close()


def _accounted(sub: RawSubscriber) -> int:
    """Events a subscriber received plus those its `gap` messages say it missed."""
    lines = sub.lines()
    return sum(1 for line in lines if "id" in line) + sum(
        line["dropped"] for line in lines if line.get("control") == "gap"
    )


def _payload(n: int, size: int) -> bytes:
    head = b'{"n":%d,"pad":"' % n
    return head + b"x" * (size - len(head) - 2) + b'"}'


def _metrics(text: str) -> dict[str, float]:
    return {
        name: float(value)
        for name, value in (line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    }


def _subscribers(server: ThreadServer, topic: str) -> int:
    return server.app.state.hub.subscriber_count(topic)


class LineReader:
    """A normal subscriber: a streamed httpx NDJSON request, recording when each event id arrived."""

    def __init__(self, response: httpx.Response) -> None:
        self.response = response
        self.arrived: dict[str, float] = {}
        self.order: list[str] = []
        self.controls: list[dict[str, Any]] = []

    async def run(self) -> None:
        buffer = b""
        async for chunk in self.response.aiter_raw():
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            now = time.monotonic()
            for line in lines:
                # The id is at the very start of an event line: no need to parse 256 KiB of JSON.
                if line.startswith(b'{"id":"'):
                    event_id = line[7 : line.index(b'"', 7)].decode()
                    self.arrived[event_id] = now
                    self.order.append(event_id)
                else:
                    self.controls.append(orjson.loads(line))


def _reset_peak_rss(pid: int) -> None:
    """Reset the process's peak-RSS mark (VmHWM) to its current RSS (Linux `clear_refs`)."""
    with open(f"/proc/{pid}/clear_refs", "w") as clear:
        clear.write("5")


def _rss_kib(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise AssertionError(f"no {field} in /proc/{pid}/status")


async def test_slow_consumer_neither_delays_others_nor_grows_memory():
    """>= 100 MiB pushed at two sockets that never read: the normal subscriber gets every event promptly, the
    `disconnect` one is dropped, the `drop-oldest` one stays stuck, and the server's RSS stays within the caps."""
    queue_bytes = 4 * MiB
    event_bytes = 256 * 1024
    count = 400  # 100 MiB
    window = 4  # events in flight to the normal subscriber at most: it must keep up, not a huge backlog
    server = ProcessServer(
        *("--queue-size", "100", "--queue-bytes", str(queue_bytes), "--max-event-bytes", str(event_bytes)),
        *("--history-size", "2", "--send-timeout-s", "60", "--heartbeat-s", "5"),
    )
    with server:
        assert server.process is not None
        pid = server.process.pid
        async with (
            raw_subscriber(server.port, "/topics/big/events?overflow=disconnect") as evicted,
            raw_subscriber(server.port, "/topics/big/events?overflow=drop-oldest") as stuck,
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            client.stream("GET", "/topics/big/events") as response,
        ):

            async def subscribers() -> int:
                listing = (await client.get("/topics")).json()["topics"]
                return {t["topic"]: t["subscribers"] for t in listing}.get("big", 0)

            async def all_three() -> bool:
                return await subscribers() == 3

            await eventually(all_three, within=5, what="three subscribers")
            reader = LineReader(response)
            reading = asyncio.create_task(reader.run())
            published: dict[str, float] = {}
            ids: list[str] = []

            async def publish(n: int) -> None:
                await eventually(lambda: len(reader.order) >= n - window, within=5, interval=0.001)
                sent = time.monotonic()
                answer = await client.post(
                    "/topics/big/events", content=_payload(n, event_bytes), headers={"Content-Type": "application/json"}
                )
                assert answer.status_code == 201, answer.text
                ids.append(answer.json()["id"])
                published[ids[-1]] = sent

            try:
                for n in range(40):  # warm up: fill the stuck sockets' kernel buffers and the queues
                    await publish(n)
                await eventually(lambda: len(reader.order) == 40, within=5)
                _reset_peak_rss(pid)
                rss_before = _rss_kib(pid, "VmRSS")
                started = time.monotonic()
                for n in range(40, 40 + count):
                    await publish(n)
                await eventually(lambda: len(reader.order) == len(ids), within=10, what="the normal subscriber")
                elapsed = time.monotonic() - started
                peak = _rss_kib(pid, "VmHWM")
                # (b) `disconnect` dropped its slow subscriber; `drop-oldest` kept its own, dropping for it
                # (checked while the normal subscriber is still connected and reading).
                assert await subscribers() == 2
                metrics = _metrics((await client.get("/metrics")).text)
                assert metrics["broadcaster_evicted_total"] == 1
                assert metrics["broadcaster_dropped_total"] >= count - 100
            finally:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading

            # (a) the normal subscriber got every event, in order, each soon after it was published.
            assert reader.order == ids
            latencies = sorted(reader.arrived[i] - published[i] for i in ids)
            assert latencies[-1] < 2.0, f"slowest delivery {latencies[-1]:.3f}s"
            # ... and memory stayed bounded by the queue caps, while 100 MiB went by.
            caps_kib = 3 * queue_bytes // 1024
            growth_kib = peak - rss_before
            print(
                f"pushed {count * event_bytes / MiB:.0f} MiB in {elapsed:.2f}s; RSS {rss_before} KiB -> peak {peak}"
                f" KiB (+{growth_kib / 1024:.1f} MiB); p50 delivery {latencies[len(latencies) // 2] * 1000:.1f} ms,"
                f" max {latencies[-1] * 1000:.1f} ms"
            )
            assert growth_kib < caps_kib + 20 * 1024, f"RSS grew by {growth_kib} KiB"

            # The dropped one, once it reads: what the kernel held, then the `fault` naming the slow consumer.
            await evicted.read(within=5)
            assert evicted.status == 200 and evicted.ended
            lines = evicted.lines()
            assert lines[-1]["control"] == "fault" and lines[-1]["reason"] == "slow consumer"
            got = [line["id"] for line in lines if "id" in line]
            assert got == ids[: len(got)] and len(got) < len(ids)
            # The stuck `drop-oldest` one is still subscribed: reading now, it accounts for every event.
            await stuck.read(until=lambda sub: _accounted(sub) >= len(ids), within=5)
            assert _accounted(stuck) == len(ids)
            assert [line for line in stuck.lines() if "id" in line][-1]["id"] == ids[-1]  # the newest survive


async def test_slow_consumer_disconnect_drops_and_closes_the_socket(make_settings):
    settings = make_settings(queue_size=20, queue_bytes=MiB, send_timeout_s=1.0, heartbeat_s=5.0)
    with thread_server(settings) as server:
        async with (
            raw_subscriber(server.settings.port, "/topics/d/events") as slow,
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
            client.stream("GET", "/topics/d/events") as response,
        ):
            await eventually(lambda: _subscribers(server, "d") == 2, within=5)
            reader = LineReader(response)
            reading = asyncio.create_task(reader.run())
            ids = []
            try:
                for n in range(400):  # far more than kernel buffers + queue can take (~25 MiB)
                    answer = await client.post("/topics/d/events", content=_payload(n, 64 * 1024))
                    assert answer.status_code == 201
                    ids.append(answer.json()["id"])
                    await eventually(lambda: len(reader.order) == len(ids), within=5, interval=0.001)
                    if _subscribers(server, "d") == 1:
                        break
                assert _subscribers(server, "d") == 1, "the slow subscriber was never dropped"
                # Others are unaffected: they keep receiving.
                for n in range(5):
                    answer = await client.post("/topics/d/events", json=n)
                    ids.append(answer.json()["id"])
                await eventually(lambda: reader.order == ids, within=5)
            finally:
                reading.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reading
            # Its writer is stuck on a socket that takes nothing: send_timeout closes the connection.
            await eventually(lambda: server.app.state.monitor.aborted >= 1, within=5, what="send timeout")
            metrics = _metrics((await client.get("/metrics")).text)
            assert metrics["broadcaster_evicted_total"] == 1
            assert metrics["broadcaster_send_timeouts_total"] == 1
            await slow.read(within=5)  # drains what the kernel held, then sees the connection end
            assert slow.ended
            assert slow.status == 200
            received = [line["id"] for line in slow.lines() if "id" in line]
            assert received == ids[: len(received)]  # a prefix, in order: nothing reordered or duplicated
            assert len(received) < len(ids)


@pytest.mark.parametrize("policy", ["drop-oldest", "drop-newest"])
async def test_slow_consumer_drop_policy_gap_counts_exactly_what_was_missed(make_settings, policy):
    """A subscriber that stalls, then reads: received + dropped == published, and the gap sits where they went."""
    settings = make_settings(queue_size=10, queue_bytes=16 * MiB, send_timeout_s=30.0, heartbeat_s=30.0)
    published = 300
    with thread_server(settings) as server:
        target = f"/topics/g/events?overflow={policy}"
        async with (
            raw_subscriber(server.settings.port, target) as slow,
            httpx.AsyncClient(base_url=server.url, timeout=10) as client,
        ):
            await eventually(lambda: _subscribers(server, "g") == 1, within=5)
            ids = []
            for n in range(published):  # 300 x 16 KiB: well past what the socket and a 10-event queue hold
                answer = await client.post("/topics/g/events", content=_payload(n, 16 * 1024))
                assert answer.status_code == 201
                ids.append(answer.json()["id"])
            hub = server.app.state.hub
            assert hub.dropped > 0, "nothing was dropped: the test did not overflow the queue"

            await slow.read(until=lambda sub: _accounted(sub) >= published, within=10)
            lines = slow.lines()
            events = [line for line in lines if "id" in line]
            gaps = [line for line in lines if line.get("control") == "gap"]
            assert len(events) + sum(gap["dropped"] for gap in gaps) == published
            assert sum(gap["dropped"] for gap in gaps) == hub.dropped
            assert gaps, "no gap message"
            # Every event either arrived or is inside a gap's id range, and the gap precedes what follows it.
            position = {event_id: index for index, event_id in enumerate(ids)}
            expected_next = 0
            for line in lines:
                if "id" in line:
                    assert position[line["id"]] == expected_next, line["id"]
                    assert line["data"]["n"] == expected_next
                    expected_next += 1
                elif line.get("control") == "gap":
                    assert position[line["first_id"]] == expected_next
                    assert position[line["last_id"]] == expected_next + line["dropped"] - 1
                    expected_next += line["dropped"]
            assert expected_next == published
            if policy == "drop-oldest":
                assert events[-1]["id"] == ids[-1]  # the newest survive
            else:
                assert events[0]["id"] == ids[0]  # the oldest survive
