"""Real broadcaster servers for end-to-end tests: uvicorn in a thread, or whole processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

import httpx

from broadcaster import Settings
from broadcaster.http import create_app
from broadcaster.http.gate import Policy
from broadcaster.http.server import Server, ServerApp, make_config

from .redis_server import free_port
from .waiting import eventually_sync


class ThreadServer:
    """Our uvicorn `Server` running `ServerApp` in a thread with its own event loop, on 127.0.0.1:<free port>.

    `app` is the FastAPI app inside (its state has the hub); `policies` replace the gate's;
    `config` overrides uvicorn's options (`access_log=True`).
    """

    def __init__(self, settings: Settings, *, policies: Sequence[Policy] | None = None, **config: Any) -> None:
        self.settings = settings.replace(port=settings.port if settings.port != 8000 else free_port())
        self.app = create_app(self.settings)
        self.server_app = ServerApp(self.app, policies=policies)
        self.server = Server(make_config(self.settings, app=self.server_app, **{"log_level": "warning", **config}))
        self.thread = threading.Thread(target=self.server.run, name="uvicorn-test-server", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.settings.port}"

    def start(self) -> None:
        self.thread.start()
        eventually_sync(lambda: self.server.started or not self.thread.is_alive(), what="uvicorn started")
        if not self.server.started:
            raise RuntimeError("the test server failed to start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        if self.thread.is_alive():
            raise RuntimeError("the test server did not stop within 15s")


@contextlib.contextmanager
def thread_server(settings: Settings, *, policies: Sequence[Policy] | None = None) -> Iterator[ThreadServer]:
    server = ThreadServer(settings, policies=policies)
    server.start()
    try:
        yield server
    finally:
        server.stop()


class ProcessServer:
    """`python -m broadcaster serve` as a child process, on 127.0.0.1:<free port>."""

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = free_port()
        self.args = [sys.executable, "-m", "broadcaster", "serve", "--port", str(self.port), *args]
        self.env = {**os.environ, "BROADCASTER_LOG_LEVEL": "warning", **(env or {})}
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> None:
        self.process = self._spawn()

        def ready() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self._output()[-3000:]}")
            try:
                return httpx.get(self.url + "/readyz", timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        eventually_sync(ready, timeout=timeout, what=f"server on port {self.port} ready")

    def _spawn(self) -> subprocess.Popen[bytes]:
        return subprocess.Popen(self.args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)

    def _output(self) -> str:
        """What the server printed (after it exited)."""
        assert self.process is not None
        return self.process.stdout.read().decode() if self.process.stdout else ""

    def stop(self, timeout: float = 15.0) -> int:
        process, self.process = self.process, None
        if process is None:
            return 0
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
                raise
        if process.stdout:
            process.stdout.close()
        return process.returncode

    def __enter__(self) -> ProcessServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
