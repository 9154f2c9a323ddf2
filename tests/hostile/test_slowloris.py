"""Slowloris: hundreds of sockets dribbling a request head a byte a second, beside normal subscribers."""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
from pathlib import Path

import httpx
import orjson

from ..support.canary import Canary
from ..support.swarm import close_all, open_streams, p99

ROOT = Path(__file__).parent.parent.parent


def _typical_p99(samples: list[tuple[int, float]]) -> float:
    """The median of the p99s of each second: one burst of load from the shared machine does not decide it."""
    windows: dict[int, list[float]] = {}
    for sent_ns, ms in samples:
        windows.setdefault(sent_ns // 1_000_000_000, []).append(ms)
    return statistics.median(p99(w) for w in windows.values())


async def _phase(port: int, client: httpx.AsyncClient, seconds: float, subscribers: int) -> tuple[float, int]:
    """`subscribers` streams and a publisher (50 events/s) for `seconds`: the p99 publish-to-receive latency."""
    streams = await open_streams(port, subscribers, "/topics/work/events", measure=True)
    try:
        deadline = time.monotonic() + seconds
        sent = 0
        while time.monotonic() < deadline:
            answer = await client.post("/topics/work/events", json={"sent_ns": time.perf_counter_ns()})
            assert answer.status_code == 201
            sent += 1
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.5)
        assert all(s.events == sent for s in streams), "a normal subscriber missed events"
        return _typical_p99([sample for s in streams for sample in s.latencies]), sent
    finally:
        close_all(streams)


async def test_slowloris_does_not_slow_the_normal_clients(hostile_server, record, soak):
    sockets, seconds, timeout_s = (5000, 7.0, 10.0) if soak else (500, 5.0, 7.0)  # the attack outlasts a phase
    server = hostile_server("--header-timeout-s", str(timeout_s))
    async with Canary(server.url) as canary, httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        before_p99, _ = await _phase(server.port, client, seconds, 100)
        attacker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.support.slowloris",
            str(server.port),
            str(sockets),
            str(timeout_s + 10),
            stdout=asyncio.subprocess.PIPE,
            cwd=ROOT,
        )
        try:
            assert attacker.stdout is not None
            async with asyncio.timeout(60):
                assert await attacker.stdout.readline() == b"ready\n"
            attack_p99, sent = await _phase(server.port, client, seconds, 100)
            await canary.publish(3)
            async with asyncio.timeout(timeout_s + 20):
                outcome = orjson.loads(await attacker.stdout.readline())
                await attacker.wait()
        finally:
            if attacker.returncode is None:
                attacker.kill()
                await attacker.wait()
        # The machine is shared: a baseline after the attack too, so that a drift in background load between
        # the phases is not counted as the attack's effect.
        after_p99, _ = await _phase(server.port, client, seconds, 100)
        await canary.verify()
    base_p99 = max(before_p99, after_p99)
    # Every dribbler was cut off at the head timeout, not held forever.
    assert outcome["closed"] == sockets and outcome["closed_after_max_s"] < timeout_s + 3, outcome
    assert attack_p99 <= 2 * base_p99, (base_p99, attack_p99)
    record(
        what=f"slowloris: {sockets} sockets dribbling 1 byte/s beside 100 subscribers and a publisher",
        p99_without_ms=[round(before_p99, 2), round(after_p99, 2)],
        p99_with_ms=round(attack_p99, 2),
        events_per_phase=sent,
        dribblers_closed_after_max_s=round(outcome["closed_after_max_s"], 1),
        header_timeout_s=timeout_s,
    )
