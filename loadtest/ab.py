"""Before/after CPU per delivery of two source trees, side by side in one run, closed loop.

``python -m loadtest.ab --before DIR --after DIR`` starts ``broadcaster serve`` from each
tree (with that tree's ``.venv``), both pinned to core 0, connects ``--subscribers`` SSE
subscribers to each from this process (pinned to core 1), then runs ``--trials`` rounds.
In each round each server in turn (the order alternates: ABBA) gets ``--events`` events,
one at a time: an event is published only once every subscriber received the previous one.
So every delivery is one socket write on both sides, whatever else runs on the machine,
and the server's CPU (``utime + stime`` from ``/proc``) over its own window, divided by
its deliveries, compares the two trees' cost per delivery under the same noise. The run
has two phases with fresh servers, each tree started first once (an A/A run showed the
server started second ~5 % dearer); the answer is the geometric mean of the two phases'
ratios, each the median of the per-round ratios. The fanout
scenario, by contrast, lets a busy machine batch deliveries, which changes the cost per
delivery by more than the change under test. Bounded: every wait has a deadline, every
loop a count.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import uvloop

from loadtest.http1 import read_response, request_head, wait_ready
from loadtest.procstat import cpu_seconds, tree
from loadtest.targets import HOST
from loadtest.workers import raise_nofile
from tests.support.redis_server import free_port

TOPIC = "ab"
PATTERN = b"\ndata: "  # one per SSE frame


class _Counter:
    """Deliveries to all subscribers of one server, and a waiter for a target count."""

    def __init__(self) -> None:
        self.count = 0
        self.target = 0
        self.reached = asyncio.Event()

    def add(self, n: int) -> None:
        self.count += n
        if self.count >= self.target:
            self.reached.set()

    async def wait_for(self, target: int, timeout_s: float) -> None:
        self.target = target
        if self.count < target:
            self.reached.clear()
            async with asyncio.timeout(timeout_s):
                await self.reached.wait()


class _Subscriber(asyncio.Protocol):
    """Counts SSE frames (``data:`` lines) in whatever arrives, across read boundaries."""

    def __init__(self, counter: _Counter) -> None:
        self.counter = counter
        self.tail = b""
        self.transport: asyncio.Transport | None = None

    def data_received(self, data: bytes) -> None:
        buffer = self.tail + data
        found = buffer.count(PATTERN)
        self.tail = buffer[-(len(PATTERN) - 1) :]
        if found:
            self.counter.add(found)


class _Side:
    """One server under test: its process, subscribers and publishing connection."""

    def __init__(self, name: str, tree_dir: Path, path: str = f"/topics/{TOPIC}/events") -> None:
        self.name = name
        self.tree = tree_dir
        #: What the subscribers open (`--subscribe-path`: e.g. a multi-topic stream that includes TOPIC).
        self.path = path
        self.port = free_port()
        self.counter = _Counter()
        self.process: asyncio.subprocess.Process | None = None
        self.subscribers: list[_Subscriber] = []
        self.published = 0
        self.cpu_us_per_delivery: list[float] = []

    async def start(self) -> None:
        python = self.tree / ".venv" / "bin" / "python"
        cmd = [str(python), "-m", "broadcaster", "serve", "--host", HOST, "--port", str(self.port)]
        cmd += ["--log-level", "warning"]
        if shutil.which("taskset"):
            cmd = ["taskset", "-c", "0", *cmd]
        env = dict(os.environ, PYTHONPATH=str(self.tree))
        self.process = await asyncio.create_subprocess_exec(
            *cmd,
            cwd=self.tree,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        await wait_ready(HOST, self.port, "/readyz", timeout_s=30, alive=self.process)

    async def subscribe(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        head = request_head("GET", HOST, self.port, self.path, {"Accept": "text/event-stream"})
        for _ in range(count):
            transport, protocol = await loop.create_connection(lambda: _Subscriber(self.counter), HOST, self.port)
            transport.write(head)
            protocol.transport = transport
            self.subscribers.append(protocol)
        deadline = time.monotonic() + 30
        while await self._subscriber_count() < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.name}: subscribers did not all connect")
            await asyncio.sleep(0.2)

    async def _subscriber_count(self) -> int:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            writer.write(request_head("GET", HOST, self.port, "/topics", {"Connection": "close"}))
            body = (await read_response(reader)).body
        finally:
            writer.close()
        marker = b'"topic":"%s","subscribers":' % TOPIC.encode()
        at = body.find(marker)
        return int(body[at + len(marker) :].split(b",", 1)[0]) if at >= 0 else 0

    @contextlib.asynccontextmanager
    async def publisher(self) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        try:
            yield reader, writer
        finally:
            writer.close()

    async def trial(self, events: int, size: int, timeout_s: float) -> None:
        """Publish `events` events closed loop; record server CPU us per delivery over the window."""
        assert self.process is not None
        pids = tree(self.process.pid)
        body = b'{"pad":"' + b"x" * max(0, size - 10) + b'"}'
        head = request_head(
            "POST",
            HOST,
            self.port,
            f"/topics/{TOPIC}/events",
            {"Content-Type": "application/json", "Content-Length": str(len(body))},
        )
        n = len(self.subscribers)
        async with self.publisher() as (reader, writer):
            before = cpu_seconds(pids)
            for _ in range(events):
                writer.write(head + body)
                answer = await read_response(reader)
                if answer.status != 201:
                    raise RuntimeError(f"{self.name}: publish answered {answer.status}: {answer.body[:200]!r}")
                self.published += 1
                await self.counter.wait_for(self.published * n, timeout_s)
            used = cpu_seconds(pids) - before
        self.cpu_us_per_delivery.append(used / (events * n) * 1e6)

    async def stop(self) -> None:
        for sub in self.subscribers:
            if sub.transport is not None:
                sub.transport.close()
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                async with asyncio.timeout(15):
                    await self.process.wait()
            except TimeoutError:
                os.killpg(self.process.pid, signal.SIGKILL)
                await self.process.wait()


def _commit(tree_dir: Path) -> str:
    done = subprocess.run(["git", "-C", str(tree_dir), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or "?"


async def _phase(args: argparse.Namespace, first: Path, second: Path) -> tuple[list[float], list[float]]:
    """Start `first`, then `second`, and run the alternating trials; each side's CPU us per delivery."""
    sides = [_Side("first", first, args.subscribe_path), _Side("second", second, args.subscribe_path)]
    try:
        for side in sides:
            await side.start()
            await side.subscribe(args.subscribers)
        for side in sides:  # warm-up: one unmeasured trial each
            await side.trial(max(1, args.events // 10), args.size, args.timeout)
            side.cpu_us_per_delivery.clear()
        for round_ in range(args.trials):
            order = sides if round_ % 2 == 0 else sides[::-1]
            for side in order:
                await side.trial(args.events, args.size, args.timeout)
    finally:
        for side in sides:
            await side.stop()
    return sides[0].cpu_us_per_delivery, sides[1].cpu_us_per_delivery


def _paired(after: list[float], before: list[float]) -> float:
    ratios = [a / b for a, b in zip(after, before, strict=True) if b > 0]
    if not ratios:
        raise RuntimeError("no CPU time measured: use more --events or --subscribers per trial")
    return statistics.median(ratios)


async def run(args: argparse.Namespace) -> int:
    raise_nofile(2 * args.subscribers + 256)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setaffinity(0, {1})
    # The server started second measured ~5 % more CPU per delivery than the first in an A/A run
    # (the same tree twice), so each tree is first once: the geometric mean of both phases cancels it.
    before_1, after_1 = await _phase(args, args.before, args.after)
    after_2, before_2 = await _phase(args, args.after, args.before)
    ratio_1, ratio_2 = _paired(after_1, before_1), _paired(after_2, before_2)
    print(f"subscribers {args.subscribers}, 2 phases x {args.trials} trials of {args.events} events, {args.size} B")
    for name, tree_dir, values in (
        ("before", args.before, before_1 + before_2),
        ("after", args.after, after_1 + after_2),
    ):
        shown = " ".join(f"{v:.2f}" for v in values)
        median = statistics.median(values)
        print(f"{name:6} {_commit(tree_dir):10} server CPU us/delivery: median {median:.2f}  trials: {shown}")
    print(f"after/before, paired by round: phase 1 (before started first) {ratio_1:.3f}, phase 2 {ratio_2:.3f}")
    print(f"after/before, both phases (geometric mean): {(ratio_1 * ratio_2) ** 0.5:.3f}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m loadtest.ab", description=__doc__.split("\n\n")[0])
    p.add_argument("--before", type=Path, required=True, help="source tree with its own .venv (e.g. a main worktree)")
    p.add_argument("--after", type=Path, required=True, help="source tree with its own .venv")
    p.add_argument("--subscribers", type=int, default=1000)
    p.add_argument("--trials", type=int, default=10)
    p.add_argument("--events", type=int, default=100, help="events per trial")
    p.add_argument(
        "--subscribe-path",
        default=f"/topics/{TOPIC}/events",
        help=f"what each subscriber opens; it must receive topic {TOPIC!r} (e.g. /events?topic={TOPIC}&topic=other)",
    )
    p.add_argument("--size", type=int, default=200, help="event data bytes")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds one event may take to reach everyone")
    args = p.parse_args(argv)
    for tree_dir in (args.before, args.after):
        if not (tree_dir / ".venv" / "bin" / "python").exists():
            p.error(f"{tree_dir} has no .venv/bin/python")
    return uvloop.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
