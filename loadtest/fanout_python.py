"""The Python side of one delivery, without the kernel: hub fan-out and direct writes to stub sockets.

``python -m loadtest.fanout_python`` subscribes ``--subscribers`` streams to one topic in
this process, each a real `EventStream` parked as its subscription's sink (as under uvicorn)
but writing to a stub transport that only counts, then publishes ``--events`` events per
round and prints the process CPU ns per delivery (min and median over ``--rounds``). A
delivery on a real socket costs ~9 us of kernel time on top (docs/benchmarks.md), which
swamps small changes and varies with the machine's load; this measures only our code, so
two trees can be compared by running it with each tree's venv, interleaved. It checks that
every delivery reached its stub. Bounded by its arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from typing import Any

from broadcaster import Hub, Settings
from broadcaster.http.streams.streaming import EventStream, StreamMonitor
from broadcaster.http.streams.subscribe import SSE


class _Transport:
    """An idle socket that takes every write at once."""

    def __init__(self) -> None:
        self.writes = 0

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def abort(self) -> None:
        pass


def _attach(stream: EventStream, transport: _Transport) -> None:
    try:
        from broadcaster.http._uvicorn import Connection
    except ImportError:  # a tree from before the adapter (issue 10): the stream held the transport
        stream._transport = transport  # type: ignore[attr-defined]
        return
    stream._connection = Connection(None, transport)


async def run(subscribers: int, events: int, rounds: int) -> list[float]:
    data = b'{"pad":"' + b"x" * 190 + b'"}'
    async with Hub(settings=Settings()) as hub:
        monitor = StreamMonitor(heartbeat_s=60, send_timeout_s=60)
        transports: list[_Transport] = []
        parked: list[asyncio.Future[Any]] = []
        for _ in range(subscribers):
            sub = await hub.subscribe(["fanout"])
            stream = EventStream(sub, SSE, monitor)
            transport = _Transport()
            _attach(stream, transport)
            sub.sink = stream
            transports.append(transport)
            parked.append(asyncio.ensure_future(sub.wait()))  # a writer parked, as under uvicorn
        await asyncio.sleep(0.01)
        per_delivery: list[float] = []
        for _ in range(rounds):
            start = time.process_time()
            for _ in range(events):
                await hub.publish("fanout", data)
                await asyncio.sleep(0)  # the hub's flush runs on call_soon
                await asyncio.sleep(0)
            per_delivery.append((time.process_time() - start) / (events * subscribers) * 1e9)
        written = sum(t.writes for t in transports)
        if written != subscribers * events * rounds or any(f.done() for f in parked):
            raise RuntimeError(f"{written} direct writes of {subscribers * events * rounds}: not the direct path")
        for future in parked:
            future.cancel()
    return per_delivery


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.fanout_python", description=__doc__.split("\n\n")[0])
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--events", type=int, default=300, help="events per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--label", default="", help="printed before the numbers")
    args = p.parse_args(argv)
    values = asyncio.run(run(args.subscribers, args.events, args.rounds))
    print(f"{args.label}ns per delivery: min {min(values):.0f} median {statistics.median(values):.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
