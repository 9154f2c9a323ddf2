"""Streaming subscribers: one ``asyncio.Protocol`` per connection, parsing only what it must.

A protocol, not ``StreamReader``: ``data_received`` is called straight from the loop with
no task wake-up per read, which keeps one generator core ahead of the servers. Per read
it strips chunked framing, cuts at the last complete line, and pulls ``seq`` and
``sent_at_ns`` from the payload with one regex that fits SSE ``data:`` lines and NDJSON
lines alike (and raw nchan bodies, and ``json.dumps``' ``": "`` spacing).
"""

from __future__ import annotations

import asyncio
import re
import time
from array import array
from dataclasses import dataclass, field
from typing import cast

from loadtest import STRIDE

_EVENT_RE = re.compile(rb'"seq":\s*(\d+),\s*"sent_at_ns":\s*(\d+)')
_findall = _EVENT_RE.findall
_time_ns = time.time_ns
CONTROLS = ("gap", "error", "reset", "shutdown", "live")
_CONTROL_PATTERNS = {
    name: (b"event: " + name.encode(), b'"control":"' + name.encode() + b'"', b'"control": "' + name.encode() + b'"')
    for name in CONTROLS
}
_MAX_MISSING = 100_000


@dataclass(slots=True)
class StepAcc:
    """Deliveries of one step's events, summed over a process's subscribers."""

    recv: int = 0
    dups: int = 0
    first_ns: int = 0
    last_ns: int = 0
    sealed: bool = False
    lat_ns: array[int] = field(default_factory=lambda: array("q"))


@dataclass(slots=True)
class Counters:
    """Everything a worker process counts (its subscribers share one)."""

    connected: int = 0
    failed: int = 0
    closed: int = 0
    warm: int = 0
    recv: int = 0
    late: int = 0
    controls: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CONTROLS, 0))
    steps: dict[int, StepAcc] = field(default_factory=dict)
    sealed: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


class Subscriber(asyncio.Protocol):
    """One streaming GET; counts what arrives into the shared ``Counters``."""

    def __init__(self, counters: Counters, request: bytes) -> None:
        self.c = counters
        self.request = request
        self.transport: asyncio.Transport | None = None
        self.head: bytes | None = b""
        self.chunked = False
        self.cbuf = b""  # undecoded chunked framing
        self.remaining = 0  # payload bytes left in the current chunk
        self.skip = 0  # CRLF bytes still to skip after a chunk
        self.tail = b""  # payload after the last complete line
        self.step = -1
        self.last = -2
        self.hi = 0
        self.missing: set[int] = set()
        self.acc: StepAcc | None = None
        self.ok = False
        self.warm = False
        self.closing = False
        self.done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass
        transport = self.transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closing:
            return
        if self.ok:
            self.c.closed += 1
        else:
            self._fail(f"closed before the response head: {exc!r}")
        if not self.done.done():
            self.done.set_result(False)

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, why: str) -> None:
        self.c.failed += 1
        if len(self.c.errors) < 20:
            self.c.errors.append(why)
        self.closing = True
        if not self.done.done():
            self.done.set_result(False)
        if self.transport is not None:
            self.transport.close()

    def data_received(self, data: bytes) -> None:
        now = _time_ns()
        if self.head is not None:
            data = self._head(data)
            if not data:
                return
        if self.chunked:
            # Fast path: the read is exactly one whole chunk (one server write), the usual case.
            if self.remaining or self.skip or self.cbuf:
                data = self._dechunk(data)
            else:
                nl = data.find(b"\r\n")
                try:
                    end = nl + 2 + int(data[:nl], 16)
                except ValueError:
                    end = -1
                data = data[nl + 2 : end] if 2 < end + 2 == len(data) else self._dechunk(data)
        if self.tail:
            data = self.tail + data
        cut = data.rfind(b"\n") + 1
        if cut < len(data):
            if cut == 0:
                self.tail = data
                return
            self.tail = data[cut:]
            data = data[:cut]
        elif self.tail:
            self.tail = b""
        pairs = _findall(data)
        if pairs:
            self._count(pairs, now)
        if b"event: " in data or b'"control"' in data:
            self._controls(data)

    def _head(self, data: bytes) -> bytes:
        """Consume the response head; return the body bytes that followed it."""
        head = (self.head or b"") + data
        end = head.find(b"\r\n\r\n")
        if end < 0:
            self.head = head
            if len(head) > 65536:
                self._fail("response head too long")
            return b""
        self.head = None
        status_line, _, rest = head[:end].partition(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or parts[1] != b"200":
            self._fail(status_line.decode("latin-1", "replace"))
            return b""
        self.chunked = b"chunked" in rest.lower()
        self.ok = True
        self.c.connected += 1
        self.done.set_result(True)
        return head[end + 4 :]

    def _dechunk(self, data: bytes) -> bytes:
        buf = self.cbuf + data if self.cbuf else data
        out: list[bytes] = []
        pos, n = 0, len(buf)
        while pos < n:
            if self.remaining:
                take = min(self.remaining, n - pos)
                out.append(buf[pos : pos + take])
                pos += take
                self.remaining -= take
                if self.remaining:
                    break
                self.skip = 2
            if self.skip:
                take = min(self.skip, n - pos)
                pos += take
                self.skip -= take
                if self.skip:
                    break
            nl = buf.find(b"\r\n", pos)
            if nl < 0:
                break
            size = int(buf[pos:nl].split(b";", 1)[0], 16)
            pos = nl + 2
            if size == 0:  # the server ended the body; connection_lost counts it
                break
            self.remaining = size
        self.cbuf = buf[pos:] if pos < n else b""
        return out[0] if len(out) == 1 else b"".join(out)

    def _count(self, pairs: list[tuple[bytes, bytes]], now: int) -> None:
        self.c.recv += len(pairs)
        acc, last, hi = self.acc, self.last, self.hi
        if acc is not None and acc.sealed:
            acc = None
        for s, t in pairs:
            seq = int(s)
            if seq == last + 1 and seq < hi and acc is not None:  # in order, same step: the hot path
                last = seq
            else:
                self.last = last
                acc = self._unusual(seq, now)
                last, hi = self.last, self.hi
                if acc is None:
                    continue
            acc.recv += 1
            acc.lat_ns.append(now - int(t))
        self.last = last
        if acc is not None:
            acc.last_ns = now

    def _unusual(self, seq: int, now: int) -> StepAcc | None:
        """A new step, a hole, a late fill, a duplicate or a sealed step; the acc to count into."""
        if seq // STRIDE != self.step:
            self._enter_step(seq // STRIDE)
        acc = self.acc
        if acc is None or acc.sealed:  # arrived after its step was collected
            self.acc = None
            self.c.late += 1
            return None
        if not acc.first_ns:
            acc.first_ns = now
        last = self.last
        if seq == last + 1:
            self.last = seq
        elif seq > last:
            if seq - last < _MAX_MISSING:
                self.missing.update(range(last + 1, seq))
            self.last = seq
        elif seq in self.missing:
            self.missing.discard(seq)
        else:
            acc.dups += 1
        return acc

    def _enter_step(self, step: int) -> None:
        if not self.warm:
            self.warm = True
            self.c.warm += 1
        self.step = step
        self.last = step * STRIDE - 1
        self.hi = (step + 1) * STRIDE
        self.missing = set()
        if step in self.c.sealed:
            self.acc = None
            return
        acc = self.c.steps.get(step)
        if acc is None:
            acc = self.c.steps[step] = StepAcc()
        self.acc = acc

    def _controls(self, data: bytes) -> None:
        for name, patterns in _CONTROL_PATTERNS.items():
            n = sum(data.count(p) for p in patterns)
            if n:
                self.c.controls[name] += n


async def connect(
    counters: Counters, host: str, port: int, request: bytes, *, source_ip: str | None = None, timeout_s: float = 30.0
) -> Subscriber | None:
    """Open one subscriber and wait for its response head; ``None`` if it failed."""
    loop = asyncio.get_running_loop()
    sub = Subscriber(counters, request)
    try:
        async with asyncio.timeout(timeout_s):
            await loop.create_connection(lambda: sub, host, port, local_addr=(source_ip, 0) if source_ip else None)
            ok = await sub.done
    except (OSError, TimeoutError) as exc:
        sub._fail(f"connect: {exc!r}")
        return None
    return sub if ok else None
