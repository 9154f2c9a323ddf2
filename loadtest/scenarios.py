"""The five scenarios of issue 5 and the CI smoke run, one coroutine each.

Each takes the shared ``Context``, one target spec and scenario options, starts the
target itself, emits one JSON record per step through ``ctx.emit`` and stops everything
before it returns. All of them are bounded: fixed event counts, step durations, and
timeouts on every wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from loadtest import procstat, slow, targets
from loadtest.publisher import Publisher, stream_ndjson
from loadtest.steps import Context, measured_step, pinning, status_line, sub_request, warmup
from loadtest.workers import WorkerConfig, WorkerPool

MAX_SERVER_RSS_MB = 4096


@dataclass(frozen=True, slots=True)
class Options:
    """Scenario knobs; ``None`` means the scenario's default."""

    subscribers: int
    duration_s: float
    rates: tuple[float, ...]
    size: int
    formats: tuple[str, ...] = ("sse",)
    slow: int = 0
    levels: tuple[int, ...] = ()
    max_events: int = 0
    source_ips: tuple[str, ...] = ()


DEFAULTS: dict[str, Options] = {
    "fanout": Options(1000, 10.0, (10, 50, 100, 200, 300, 500, 700, 1000), 200),
    "latency": Options(1000, 30.0, (100,), 200),
    "idle": Options(10_000, 3.0, (), 200, levels=(1000, 2500, 5000, 10_000)),
    "slow": Options(100, 60.0, (100,), 4096, slow=10),
    "ingest": Options(1, 10.0, (), 200, max_events=2_000_000),
    "smoke": Options(20, 3.0, (50,), 200, formats=("sse", "ndjson")),
    "efficiency": Options(1000, 10.0, (100,), 200),
}

# Which concrete targets a --target family name means in each scenario.
VARIANTS: dict[str, dict[str, tuple[str, ...]]] = {
    "latency": {"broadcaster": ("broadcaster-redis",), "nchan": ("nchan-redis",)},
    "ingest": {"broadcaster": ("broadcaster", "broadcaster-redis"), "nchan": ()},
    # Access control's cost per delivery: the same load with auth off and on, interleaved run by run.
    "efficiency": {"broadcaster": ("broadcaster", "broadcaster-auth")},
}


def _formats(spec: targets.TargetSpec, opts: Options) -> tuple[str, ...]:
    return tuple(f for f in opts.formats if f in spec.formats) or ("sse",)


def _pool(tgt: targets.Running, topic: str, ctx: Context, opts: Options, cpus: tuple[int, ...] | None) -> WorkerPool:
    reqs = tuple(sub_request(tgt, topic, f) for f in _formats(tgt.spec, opts))
    bound = 4 * opts.duration_s * max(1, len(opts.rates)) + 600
    cfg = WorkerConfig(tgt.host, tgt.port, reqs, opts.source_ips, cpus, bound)
    return WorkerPool(cfg, ctx.workers)


@contextlib.contextmanager
def _generator_affinity(cpus: tuple[int, ...] | None) -> Any:
    old = os.sched_getaffinity(0)
    if cpus:
        os.sched_setaffinity(0, set(cpus))
    try:
        yield
    finally:
        os.sched_setaffinity(0, old)


async def _streaming(ctx: Context, spec: targets.TargetSpec, opts: Options, *, pin: bool, stop_saturated: bool) -> None:
    server_cpus, gen_cpus = pinning(pin)
    topic = f"lt-{ctx.meta['scenario']}-{ctx.meta['run']}"
    with _generator_affinity(gen_cpus):
        async with targets.start(spec, ctx.logdir, cpus=server_cpus, extra_args=ctx.extra_args) as tgt:
            async with _pool(tgt, topic, ctx, opts, gen_cpus) as pool:
                ctx.progress.status = status_line(pool, tgt, "connecting")
                await pool.connect(opts.subscribers, timeout_s=120, tick=ctx.progress.show)
                pub = Publisher(tgt.host, tgt.port, topic, size=opts.size, headers=tgt.headers)
                ctx.progress.status = status_line(pool, tgt, "warm-up")
                warm = await warmup(pool, pub)
                info = await pool.info()
                ctx.meta.update(warm=warm, connect_errors=info["errors"])
                stalled, best = 0, 0.0
                for step, rate in enumerate(opts.rates, 1):
                    ctx.progress.status = status_line(pool, tgt, f"step {step}/{len(opts.rates)} {rate:g}/s")
                    rec = await measured_step(
                        ctx, tgt, pool, pub, step=step, rate=rate, duration_s=opts.duration_s,
                        generator_pinned=gen_cpus is not None,
                    )  # fmt: skip
                    rec["controls"] = (await pool.info())["controls"]
                    ctx.emit(rec)
                    # Saturated and no faster than before: more offered load only piles up backlog
                    # (unbounded in the naive baseline), so stop after two such steps in a row.
                    grew = rec["deliveries_per_s"] > 1.1 * best
                    stalled = stalled + 1 if rec["saturated"] and not grew else 0
                    best = max(best, rec["deliveries_per_s"])
                    if stop_saturated and (stalled >= 2 or rec["server_rss_mb"] > MAX_SERVER_RSS_MB):
                        ctx.progress.log(f"  {spec.name} saturated at {rate:g}/s: later steps skipped")
                        break


async def fanout(ctx: Context, spec: targets.TargetSpec, opts: Options) -> None:
    """Stepped offered rate to N subscribers of one topic; server and generator on separate cores."""
    await _streaming(ctx, spec, opts, pin=ctx.pin, stop_saturated=True)


async def latency(ctx: Context, spec: targets.TargetSpec, opts: Options) -> None:
    """Steady rate to N subscribers, Redis backend; the latency percentiles are the result."""
    await _streaming(ctx, spec, opts, pin=ctx.pin, stop_saturated=False)


async def efficiency(ctx: Context, spec: targets.TargetSpec, opts: Options) -> None:
    """One steady rate (100 events/s to 1000 subscribers: 100 000 deliveries/s), pinned: server CPU per delivery."""
    await _streaming(ctx, spec, opts, pin=ctx.pin, stop_saturated=False)


async def smoke(ctx: Context, spec: targets.TargetSpec, opts: Options) -> None:
    """A few seconds of tiny numbers, SSE and NDJSON: the CI check that nothing is lost."""
    await _streaming(ctx, spec, opts, pin=False, stop_saturated=False)


async def idle(ctx: Context, spec: targets.TargetSpec, opts: Options) -> None:
    """Connect idle subscribers in levels and record the server's RSS at each."""
    topic = f"lt-idle-{ctx.meta['run']}"
    async with targets.start(spec, ctx.logdir, extra_args=ctx.extra_args) as tgt:
        async with _pool(tgt, topic, ctx, opts, None) as pool:
            ctx.progress.status = status_line(pool, tgt, "idle")
            redis = tgt.redis_pids
            await asyncio.sleep(opts.duration_s)
            base = procstat.rss_bytes(procstat.tree(tgt.pid))
            base_redis = procstat.rss_bytes(redis)
            levels = sorted({*opts.levels, opts.subscribers} - {0})
            levels = [n for n in levels if n <= opts.subscribers]
            for n in [0, *levels]:
                t = await pool.connect(n, timeout_s=180, tick=ctx.progress.show) if n else pool.totals()
                await asyncio.sleep(opts.duration_s)
                rss = procstat.rss_bytes(procstat.tree(tgt.pid))
                conns = t["connected"] - t["closed"]
                ctx.emit({
                    "level": n,
                    "connections": conns,
                    "failed": t["failed"],
                    "server_rss_mb": round(rss / 2**20, 2),
                    "redis_rss_mb": round(procstat.rss_bytes(redis) / 2**20, 2) if redis else None,
                    "kb_per_conn": round((rss - base) / conns / 1024, 2) if conns else None,
                    "redis_kb_per_conn": round((procstat.rss_bytes(redis) - base_redis) / conns / 1024, 2)
                    if conns and redis
                    else None,
                })  # fmt: skip
            # Prove the connections were real subscriptions: one event must reach them all.
            warm = await warmup(
                pool, Publisher(tgt.host, tgt.port, topic, size=opts.size, headers=tgt.headers), timeout_s=60
            )
            rss = procstat.rss_bytes(procstat.tree(tgt.pid))
            conns = pool.totals()["connected"]
            ctx.emit({
                "level": "after_event", "connections": conns, "verified_live": warm, "after_event": True,
                "server_rss_mb": round(rss / 2**20, 2),
                "kb_per_conn": round((rss - base) / conns / 1024, 2) if conns else None,
            })  # fmt: skip


async def slow_consumers(ctx: Context, spec: targets.TargetSpec, opts: Options) -> None:
    """Normal subscribers with and without never-reading ones; RSS growth and normal p99."""
    for with_slow in (True, False):
        topic = f"lt-slow-{ctx.meta['run']}-{int(with_slow)}"
        async with targets.start(spec, ctx.logdir, extra_args=ctx.extra_args) as tgt:
            async with _pool(tgt, topic, ctx, opts, None) as pool:
                ctx.progress.status = status_line(pool, tgt, f"slow={with_slow}")
                await pool.connect(opts.subscribers, timeout_s=60, tick=ctx.progress.show)
                pub = Publisher(tgt.host, tgt.port, topic, size=opts.size, headers=tgt.headers)
                await warmup(pool, pub)
                req = sub_request(tgt, topic, "sse")
                socks = await slow.open_slow(tgt.host, tgt.port, req, opts.slow) if with_slow else []
                await asyncio.sleep(1.0)
                base = procstat.rss_bytes(procstat.tree(tgt.pid))
                peak = base

                async def watch() -> None:
                    nonlocal peak
                    while True:
                        peak = max(peak, procstat.rss_bytes(procstat.tree(tgt.pid)))
                        await asyncio.sleep(0.25)

                async with asyncio.TaskGroup() as tg:
                    watcher = tg.create_task(watch())
                    try:
                        rec = await measured_step(
                            ctx, tgt, pool, pub, step=1, rate=opts.rates[0], duration_s=opts.duration_s,
                            generator_pinned=False,
                        )  # fmt: skip
                    finally:
                        watcher.cancel()
                rec.update(
                    with_slow=with_slow,
                    slow_subscribers=len(socks),
                    slow_closed_by_server=slow.close_slow(socks),
                    rss_before_mb=round(base / 2**20, 1),
                    rss_peak_mb=round(peak / 2**20, 1),
                    rss_growth_mb=round((peak - base) / 2**20, 1),
                    controls=(await pool.info())["controls"],
                )
                ctx.emit(rec)


async def ingest(ctx: Context, spec: targets.TargetSpec, opts: Options) -> None:
    """One streamed NDJSON POST as fast as the server accepts it; optional subscribers count deliveries."""
    if not spec.ingest:
        ctx.progress.log(f"  {spec.name}: no streamed NDJSON ingest, skipped")
        return
    topic = f"lt-ingest-{ctx.meta['run']}"
    async with targets.start(spec, ctx.logdir, extra_args=ctx.extra_args) as tgt:
        async with _pool(tgt, topic, ctx, opts, None) as pool:
            await pool.connect(opts.subscribers, timeout_s=60)
            await warmup(pool, Publisher(tgt.host, tgt.port, topic, size=opts.size, headers=tgt.headers))
            sent = 0

            def tick(n: int) -> None:
                nonlocal sent
                sent = n
                ctx.progress.show()

            ctx.progress.status = lambda: f"ingest {spec.name}: sent {sent:,}"
            redis = tgt.redis_pids
            s0, r0 = procstat.sample([tgt.pid]), procstat.sample(redis)
            res = await stream_ndjson(
                tgt.host, tgt.port, topic, size=opts.size, max_events=opts.max_events,
                duration_s=opts.duration_s, tick=tick, headers=tgt.headers,
            )  # fmt: skip
            s1, r1 = procstat.sample([tgt.pid]), procstat.sample(redis)
            await _settled(pool)
            got = await pool.collect(1)
            accepted = res.answer.get("accepted")
            n = accepted if isinstance(accepted, int) else 0
            deliveries = got["recv"] - got["dups"]
            ctx.emit({
                "sent": res.sent, "status": res.status, "answer": res.answer, "error": res.error,
                "accepted": n, "rejected": res.answer.get("rejected"),
                "elapsed_s": round(res.elapsed_s, 3),
                "events_per_s": round(n / res.elapsed_s, 1) if res.elapsed_s > 0 else 0.0,
                "server_cpu_pct": round(100 * procstat.cpu_fraction(s0, s1), 1),
                "redis_cpu_pct": round(100 * procstat.cpu_fraction(r0, r1), 1) if redis else None,
                "subscribers": pool.totals()["connected"],
                "deliveries": deliveries,
                # Every accepted event must reach the subscribers (one that was disconnected misses some).
                "disconnected": pool.totals()["closed"],
                "ok": res.status in (200, 201) and n == res.sent and deliveries == n * opts.subscribers,
            })  # fmt: skip


async def _settled(pool: WorkerPool, *, quiet_s: float = 1.0, limit_s: float = 15.0) -> None:
    """Wait (at most ``limit_s``) until the subscribers' receive count has not moved for ``quiet_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    last, since = -1, loop.time()
    while loop.time() < deadline:
        now = pool.totals()["recv"]
        if now != last:
            last, since = now, loop.time()
        elif loop.time() - since >= quiet_s:
            return
        await asyncio.sleep(0.1)


SCENARIOS: dict[str, Callable[[Context, targets.TargetSpec, Options], Awaitable[None]]] = {
    "fanout": fanout,
    "latency": latency,
    "idle": idle,
    "slow": slow_consumers,
    "ingest": ingest,
    "efficiency": efficiency,
    "smoke": smoke,
}
