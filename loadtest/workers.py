"""Subscriber worker processes and the handle the coordinator drives them with.

Each worker runs its own uvloop and holds a share of the subscribers. Commands go over a
``multiprocessing`` pipe; running totals go through a shared array that the coordinator
reads for its progress line without a round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import os
import resource
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import uvloop

from loadtest import client

SLOTS = ("connected", "failed", "closed", "warm", "recv", "late")
_PUSH_S = 0.2


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """What a worker needs to open subscribers; requests are cycled per subscriber."""

    host: str
    port: int
    requests: tuple[bytes, ...]
    source_ips: tuple[str, ...] = ()
    cpus: tuple[int, ...] | None = None
    deadline_s: float = 600.0
    connect_concurrency: int = 200


def raise_nofile(want: int) -> int:
    """Raise RLIMIT_NOFILE towards ``want`` (root may lift the hard limit); return the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= want:
        return soft
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, max(hard, want)))
        return want
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def worker_main(index: int, cfg: WorkerConfig, conn: Connection, shared: Any) -> None:
    """Entry point of a worker process."""
    if cfg.cpus:
        os.sched_setaffinity(0, set(cfg.cpus))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_Worker(index, cfg, conn, shared).serve())


async def recv(conn: Connection) -> Any:
    """Await one message from a pipe without blocking the loop; ``EOFError`` if it closed."""
    loop = asyncio.get_running_loop()
    fut: asyncio.Future[None] = loop.create_future()

    def ready() -> None:
        if not fut.done():
            fut.set_result(None)

    loop.add_reader(conn.fileno(), ready)
    try:
        await fut
    finally:
        loop.remove_reader(conn.fileno())
        # uvloop's add_reader leaves the fd non-blocking; Connection.recv/send expect blocking.
        os.set_blocking(conn.fileno(), True)
    return conn.recv()


class _Worker:
    def __init__(self, index: int, cfg: WorkerConfig, conn: Connection, shared: Any) -> None:
        self.index = index
        self.cfg = cfg
        self.conn = conn
        self.shared = shared
        self.c = client.Counters()
        self.subs: list[client.Subscriber] = []
        self.opened = 0
        self.tasks: list[asyncio.Task[None]] = []

    def push(self) -> None:
        base = self.index * len(SLOTS)
        for i, name in enumerate(SLOTS):
            self.shared[base + i] = getattr(self.c, name)

    async def serve(self) -> None:
        try:
            async with asyncio.timeout(self.cfg.deadline_s), asyncio.TaskGroup() as tg:
                self.tasks.append(tg.create_task(self._pusher()))
                try:
                    await self._commands(tg)
                finally:
                    for task in self.tasks:
                        task.cancel()
        except TimeoutError:
            pass
        finally:
            for sub in self.subs:
                sub.close()
            self.push()

    async def _pusher(self) -> None:
        while True:
            self.push()
            await asyncio.sleep(_PUSH_S)

    async def _commands(self, tg: asyncio.TaskGroup) -> None:
        while True:
            try:
                cmd, arg = await recv(self.conn)
            except (EOFError, OSError):
                return  # the coordinator is gone
            if cmd == "connect":
                self.tasks.append(tg.create_task(self._connect(int(arg))))
            elif cmd == "collect":
                self.conn.send(self._collect(int(arg)))
            elif cmd == "info":
                self.conn.send({"controls": dict(self.c.controls), "errors": list(self.c.errors)})
            elif cmd == "stop":
                for sub in self.subs:
                    sub.close()
                await asyncio.sleep(0.05)
                self.push()
                self.conn.send({"controls": dict(self.c.controls), "errors": list(self.c.errors)})
                return

    async def _connect(self, n: int) -> None:
        sem = asyncio.Semaphore(self.cfg.connect_concurrency)
        cfg = self.cfg

        async def one(i: int) -> None:
            async with sem:
                ip = cfg.source_ips[i % len(cfg.source_ips)] if cfg.source_ips else None
                req = cfg.requests[i % len(cfg.requests)]
                sub = await client.connect(self.c, cfg.host, cfg.port, req, source_ip=ip)
                if sub is not None:
                    self.subs.append(sub)

        start = self.opened
        self.opened += n
        async with asyncio.TaskGroup() as tg:
            for i in range(start, start + n):
                tg.create_task(one(i))

    def _collect(self, step: int) -> dict[str, Any]:
        self.c.sealed.add(step)
        acc = self.c.steps.pop(step, None) or client.StepAcc()
        acc.sealed = True
        return {
            "recv": acc.recv,
            "dups": acc.dups,
            "first_ns": acc.first_ns,
            "last_ns": acc.last_ns,
            "lat": acc.lat_ns.tobytes(),
        }


class WorkerPool:
    """``n`` worker processes, owned by an ``async with`` block that stops them at its end."""

    def __init__(self, cfg: WorkerConfig, n: int) -> None:
        self.cfg = cfg
        self.n = max(1, n)
        ctx = mp.get_context("spawn")
        self.shared = ctx.RawArray("q", self.n * len(SLOTS))
        self.pipes: list[Connection] = []
        self.procs: list[Any] = []
        self._ctx = ctx
        self._lock = asyncio.Lock()
        self.target = 0

    async def __aenter__(self) -> WorkerPool:
        for i in range(self.n):
            here, there = self._ctx.Pipe()
            p = self._ctx.Process(target=worker_main, args=(i, self.cfg, there, self.shared), daemon=True)
            p.start()
            there.close()
            self.pipes.append(here)
            self.procs.append(p)
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(10):
                await self._all(("stop", None))
        for p in self.procs:
            p.join(timeout=0)
            if p.is_alive():
                p.terminate()
        for p in self.procs:
            await asyncio.to_thread(p.join, 5)
            if p.is_alive():
                p.kill()

    @property
    def pids(self) -> list[int]:
        return [int(p.pid) for p in self.procs if p.pid is not None]

    def totals(self) -> dict[str, int]:
        """Running totals over all workers (refreshed every 0.2 s)."""
        out = dict.fromkeys(SLOTS, 0)
        for w in range(self.n):
            for i, name in enumerate(SLOTS):
                out[name] += int(self.shared[w * len(SLOTS) + i])
        return out

    async def _all(self, msg: tuple[str, Any], *, reply: bool = True) -> list[Any]:
        async with self._lock:
            for pipe in self.pipes:
                pipe.send(msg)
            return [await recv(pipe) for pipe in self.pipes] if reply else []

    async def connect(self, total: int, *, timeout_s: float, tick: Callable[[], None] | None = None) -> dict[str, int]:
        """Open subscribers until ``total`` have been tried; wait until each connected or failed."""
        new = max(0, total - self.target)
        self.target = max(total, self.target)
        async with self._lock:
            for w, pipe in enumerate(self.pipes):
                share = new // self.n + (1 if w < new % self.n else 0)
                if share:
                    pipe.send(("connect", share))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout_s):
                while True:
                    t = self.totals()
                    if t["connected"] + t["failed"] >= self.target:
                        break
                    if tick:
                        tick()
                    await asyncio.sleep(0.1)
        await asyncio.sleep(_PUSH_S * 1.5)
        return self.totals()

    async def collect(self, step: int) -> dict[str, Any]:
        """Seal ``step`` in every worker and merge what they counted for it."""
        parts = await self._all(("collect", step))
        lat = b"".join(p["lat"] for p in parts)
        firsts = [p["first_ns"] for p in parts if p["first_ns"]]
        return {
            "recv": sum(p["recv"] for p in parts),
            "dups": sum(p["dups"] for p in parts),
            "first_ns": min(firsts, default=0),
            "last_ns": max((p["last_ns"] for p in parts), default=0),
            "lat": lat,
        }

    async def info(self) -> dict[str, Any]:
        """Control messages seen so far and the first connection errors."""
        parts = await self._all(("info", None))
        controls: dict[str, int] = {}
        errors: list[str] = []
        for p in parts:
            for k, v in p["controls"].items():
                controls[k] = controls.get(k, 0) + v
            errors.extend(p["errors"])
        return {"controls": controls, "errors": errors[:10]}
