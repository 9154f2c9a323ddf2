"""A slowloris attacker in a process of its own: `python -m tests.support.slowloris PORT SOCKETS DEADLINE_S`.

It opens SOCKETS connections to 127.0.0.1:PORT, prints `ready`, then sends each
one byte of a request head a second until the server closes it (or DEADLINE_S
passes), and prints one JSON line: how many sockets the server closed and
after how long at most. A process of its own, so that its thousands of
writes do not slow the event loop that measures the normal clients' latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time

import orjson

HEAD = b"GET /topics/slow/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + b"a" * 100_000


async def _dribble(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, deadline: float) -> float | None:
    began = time.monotonic()
    try:
        for byte in HEAD:
            if time.monotonic() > deadline:
                return None  # never closed by the server
            writer.write(bytes([byte]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(1.0):
                    if await reader.read(65536) == b"":
                        break
            if reader.at_eof():
                break
    except ConnectionError:
        pass
    finally:
        writer.close()
    return time.monotonic() - began


async def main(port: int, sockets: int, deadline_s: float) -> None:
    gate = asyncio.Semaphore(200)

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        async with gate:
            return await asyncio.open_connection("127.0.0.1", port)

    connections = await asyncio.gather(*[connect() for _ in range(sockets)])
    print("ready", flush=True)
    deadline = time.monotonic() + deadline_s
    results = await asyncio.gather(*[_dribble(r, w, deadline) for r, w in connections])
    closed = [r for r in results if r is not None]
    print(
        orjson.dumps({"sockets": sockets, "closed": len(closed), "closed_after_max_s": max(closed, default=0)}).decode()
    )


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])))
