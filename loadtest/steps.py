"""The machinery every streaming scenario shares: pinning, warm-up, one measured step.

A step publishes ``rate * duration`` events numbered ``step * STRIDE + i``, waits for the
deliveries to drain, then seals the step in every worker and turns the counts into one
JSON record. CPU is read from ``/proc`` at the step's start, at the end of publishing,
and after the drain.
"""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from loadtest import procstat
from loadtest.http1 import request_head
from loadtest.progress import Progress
from loadtest.publisher import Publisher
from loadtest.targets import Running
from loadtest.workers import WorkerPool

GENERATOR_BOUND = 0.85
P99_OK_MS = 100.0


@dataclass(slots=True)
class Context:
    """Options and sinks shared by the scenarios of one invocation."""

    out: Path
    logdir: Path
    emit: Callable[[dict[str, Any]], None]
    progress: Progress
    workers: int = 1
    pin: bool = True
    extra_args: str = ""
    quiet_wait_s: float = 30.0
    meta: dict[str, Any] = field(default_factory=dict)


def pinning(pin: bool) -> tuple[tuple[int, ...] | None, tuple[int, ...] | None]:
    """``(server cpus, generator cpus)``: core 0 and core 1 when there are two and ``pin`` is set."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None, None
    return (cpus[0],), (cpus[1],)


def sub_request(tgt: Running, topic: str, fmt: str) -> bytes:
    """The raw GET that opens one SSE or NDJSON stream."""
    if fmt == "sse":
        headers = {"Accept": "text/event-stream", **tgt.headers}
        return request_head("GET", tgt.host, tgt.port, f"/topics/{topic}/events", headers)
    path = f"/topics/{topic}/events?format=ndjson"
    return request_head("GET", tgt.host, tgt.port, path, {"Accept": "application/x-ndjson", **tgt.headers})


def latency_ms(lat: bytes) -> dict[str, float]:
    """p50/p90/p99/max of int64 nanosecond samples, in milliseconds (NaN if none)."""
    a = np.frombuffer(lat, dtype=np.int64)
    if a.size == 0:
        return {"p50_ms": float("nan"), "p90_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50_ms": p50 / 1e6, "p90_ms": p90 / 1e6, "p99_ms": p99 / 1e6, "max_ms": float(a.max()) / 1e6}


def status_line(pool: WorkerPool, tgt: Running, extra: str = "") -> Callable[[], str]:
    """A progress callback: subscribers, deliveries and their rate, server RSS."""
    state = {"t": time.monotonic(), "recv": 0, "rate": 0.0}

    def line() -> str:
        t = pool.totals()
        now = time.monotonic()
        if now - state["t"] >= 1.0:
            state["rate"] = (t["recv"] - state["recv"]) / (now - state["t"])
            state["t"], state["recv"] = now, t["recv"]
        rss = procstat.rss_bytes(procstat.tree(tgt.pid)) / 2**20
        return (
            f"{extra} subs {t['connected']}/{pool.target} failed {t['failed']} closed {t['closed']} "
            f"recv {t['recv']} ({state['rate']:,.0f}/s) server RSS {rss:.0f} MB"
        )

    return line


async def warmup(pool: WorkerPool, pub: Publisher, *, timeout_s: float = 30.0) -> int:
    """Publish step-0 events until every connected subscriber got one; return how many did.

    Without it, events published before a server finished subscribing (the baseline's
    per-client Redis SUBSCRIBE) would count as losses.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while loop.time() < deadline:
        t = pool.totals()
        if t["warm"] >= t["connected"] - t["closed"]:
            break
        await pub.run(0, 20, 0.25)
        await asyncio.sleep(0.3)
    await asyncio.sleep(0.5)
    await pool.collect(0)
    return pool.totals()["warm"]


async def drain(pool: WorkerPool, before: int, expected: int, *, timeout_s: float, stall_s: float = 1.5) -> None:
    """Wait until ``expected`` more deliveries arrived, nothing arrived for ``stall_s``, or ``timeout_s``."""
    loop = asyncio.get_running_loop()
    start = last_change = loop.time()
    last = -1
    while loop.time() - start < timeout_s:
        got = pool.totals()["recv"] - before
        if got >= expected:
            return
        if got != last:
            last, last_change = got, loop.time()
        elif loop.time() - last_change > stall_s:
            return
        await asyncio.sleep(0.1)


def _cores(a: procstat.Sample, b: procstat.Sample) -> float:
    return procstat.cpu_fraction(a, b)


async def wait_quiet(progress: Progress, *, max_wait_s: float, threshold: float = 0.15) -> float:
    """Wait (at most ``max_wait_s``) until the machine's busy CPU over 1 s is below ``threshold`` cores.

    Between targets nothing of ours runs, so anything busy is someone else: benchmarks on a
    shared machine are worth little while another job holds a core. Returns the last reading.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max_wait_s
    while True:
        a, t0 = procstat.system_busy_s(), loop.time()
        await asyncio.sleep(1.0)
        busy = (procstat.system_busy_s() - a) / (loop.time() - t0)
        if busy < threshold or loop.time() >= deadline:
            if busy >= threshold:
                progress.log(f"  machine still busy ({busy:.0%} of a core used by others): results will be noisy")
            return busy
        progress.status = functools.partial(str, f"waiting for a quiet machine ({busy:.0%} of a core busy)")
        progress.show()


def other_cpu(a: tuple[procstat.Sample, ...], b: tuple[procstat.Sample, ...], busy_a: float, busy_b: float) -> float:
    """Cores used between two readings by processes that are neither the target nor the generator."""
    wall = b[0].wall_s - a[0].wall_s
    ours = sum(y.cpu_s - x.cpu_s for x, y in zip(a, b, strict=True))
    return max(0.0, (busy_b - busy_a - ours) / wall) if wall > 0 else 0.0


async def measured_step(
    ctx: Context,
    tgt: Running,
    pool: WorkerPool,
    pub: Publisher,
    *,
    step: int,
    rate: float,
    duration_s: float,
    generator_pinned: bool,
    drain_s: float = 5.0,
) -> dict[str, Any]:
    """Publish one step, drain, and return its record (not yet emitted)."""
    gen_roots = [os.getpid(), *pool.pids]
    redis = tgt.redis_pids

    def read() -> tuple[procstat.Sample, procstat.Sample, procstat.Sample]:
        return (
            procstat.sample([tgt.pid]),
            procstat.sample(redis),
            procstat.sample(gen_roots, follow_tree=False),
        )

    before = pool.totals()
    subs = before["connected"] - before["closed"]
    s0, busy0 = read(), procstat.system_busy_s()
    res = await pub.run(step, rate, duration_s, tick=ctx.progress.show)
    s1, busy1 = read(), procstat.system_busy_s()
    await drain(pool, before["recv"], res.sent * subs, timeout_s=drain_s)
    s2 = read()
    got = await pool.collect(step)
    after = pool.totals()
    unique = got["recv"] - got["dups"]
    expected = res.sent * subs
    span_s = max(res.elapsed_s, (got["last_ns"] - res.started_ns) / 1e9)
    gen_cpu = _cores(s0[2], s1[2])
    gen_max = procstat.max_proc_fraction(s0[2], s1[2])
    lat = latency_ms(got["lat"])
    rec: dict[str, Any] = {
        "step": step,
        "offered_rate": rate,
        "published": res.sent,
        "publish_rate": round(res.rate, 1),
        "publish_errors": res.errors,
        "publish_first_error": res.first_error,
        "subscribers": subs,
        "closed_during_step": after["closed"] - before["closed"],
        "expected": expected,
        "deliveries": unique,
        "deliveries_per_s": round(unique / span_s, 1) if span_s > 0 else 0.0,
        "loss": max(0, expected - unique),
        "dups": got["dups"],
        **{k: round(v, 3) for k, v in lat.items()},
        "server_cpu_pct": round(100 * _cores(s0[0], s1[0]), 1),
        "redis_cpu_pct": round(100 * _cores(s0[1], s1[1]), 1) if redis else None,
        "server_us_per_delivery": round((s2[0].cpu_s - s0[0].cpu_s) * 1e6 / unique, 2) if unique else None,
        "total_us_per_delivery": round((s2[0].cpu_s + s2[1].cpu_s - s0[0].cpu_s - s0[1].cpu_s) * 1e6 / unique, 2)
        if unique
        else None,
        "server_rss_mb": round(s2[0].rss / 2**20, 1),
        "redis_rss_mb": round(s2[1].rss / 2**20, 1) if redis else None,
        "gen_cpu_pct": round(100 * gen_cpu, 1),
        "gen_max_proc_cpu_pct": round(100 * gen_max, 1),
        "generator_bound": gen_max >= GENERATOR_BOUND or (generator_pinned and gen_cpu >= GENERATOR_BOUND),
        # CPU used by anything else on the machine (other jobs, kernel threads): > 10 % means a noisy step.
        "other_cpu_pct": round(100 * other_cpu(s0, s1, busy0, busy1), 1),
    }
    rec["ok"] = bool(rec["loss"] == 0 and rec["dups"] == 0 and lat["p99_ms"] <= P99_OK_MS)
    # Saturated: deliveries fell behind, or publishes were answered too slowly to offer the rate.
    rec["saturated"] = bool(unique < 0.9 * expected or res.rate < 0.8 * rate)
    return rec
