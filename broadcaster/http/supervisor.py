"""`--workers N`: N server processes sharing one listening socket.

uvicorn's own supervisor builds a stock `uvicorn.Server` in each worker, which
would lose our shutdown hook (`http.server.Server`), so this small supervisor
runs our `Server` in each worker instead. SIGINT/SIGTERM are forwarded to the
workers, which end their streams and exit; a worker that dies is restarted
(at most `MAX_RESTARTS` times in a row within a minute, then the supervisor
gives up rather than spin).
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from multiprocessing.context import SpawnProcess
from types import FrameType

import uvicorn

from ._uvicorn import get_subprocess
from .server import Server

logger = logging.getLogger("uvicorn.error")

MAX_RESTARTS = 5
_JOIN_TIMEOUT_S = 30.0


def run_workers(config: uvicorn.Config) -> int:
    """Run `config.workers` processes until a signal; return the exit code."""
    sock = config.bind_socket()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)

    def spawn() -> SpawnProcess:
        process = get_subprocess(config, target=Server(config).run, sockets=[sock])
        process.start()
        return process

    workers = [spawn() for _ in range(config.workers)]
    restarts: list[float] = []
    exit_code = 0
    try:
        while not stop.wait(0.5):
            for index, process in enumerate(workers):
                if process.is_alive():
                    continue
                now = time.monotonic()
                restarts = [t for t in restarts if now - t < 60] + [now]
                if len(restarts) > MAX_RESTARTS:
                    logger.error("workers keep dying; stopping (last exit code %s)", process.exitcode)
                    exit_code = 1
                    stop.set()
                    break
                logger.warning("worker %s exited with %s; starting a new one", process.pid, process.exitcode)
                workers[index] = spawn()
    finally:
        for process in workers:
            if process.is_alive():
                process.terminate()  # SIGTERM: the worker's Server ends its streams and exits
        deadline = time.monotonic() + _JOIN_TIMEOUT_S
        for process in workers:
            process.join(max(0.1, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
        sock.close()
    return exit_code
