"""The hostile-input suite: a real server process per case, attacked the way the internet will.

Every case runs `python -m broadcaster serve` as a child process (so its RSS and
file descriptors are its own, and its log can be read), keeps a canary
subscriber that must receive every event published during the attack, and
ends by checking that the server logged no traceback and answered no 5xx it
should not have. Sizes are CI-sized; `pytest tests/hostile --soak` runs the
big numbers (docs/security.md records both). The figures each case measures
are printed at the end of the run ("hostile-input figures") and, with
`BROADCASTER_HOSTILE_RESULTS=path.json`, written to that file.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from ..support.canary import Canary
from ..support.servers import ProcessServer

pytestmark = pytest.mark.e2e

#: What a server log must never contain.
FAULT_MARKERS = ("Traceback", "Exception in ASGI application", "ERROR")

_FIGURES: list[dict[str, Any]] = []


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--soak", action="store_true", help="hostile suite: the big numbers (minutes, run by hand)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Each case is bounded: two minutes in the CI profile (they take 1-20 s), 25 minutes soaking.
    limit = 1500 if config.getoption("--soak", default=False) else 120
    for item in items:
        if item.path.is_relative_to(Path(__file__).parent):
            item.add_marker(pytest.mark.timeout(limit))


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--soak", default=False))


@pytest.fixture
def record(request: pytest.FixtureRequest, soak: bool) -> Callable[..., None]:
    """Record a measured figure of this case: `record(what="...", value=..., unit="...")`."""

    def add(**figure: Any) -> None:
        _FIGURES.append({"case": request.node.name, "profile": "soak" if soak else "ci", **figure})

    return add


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _FIGURES:
        return
    terminalreporter.section("hostile-input figures")
    for figure in _FIGURES:
        terminalreporter.write_line(json.dumps(figure))
    path = os.environ.get("BROADCASTER_HOSTILE_RESULTS")
    if path:
        Path(path).write_text(json.dumps(_FIGURES, indent=1) + "\n")


class HostileServer(ProcessServer):
    """`broadcaster serve` in a child process on 127.0.0.1, its log in a file, optionally with an fd limit."""

    def __init__(self, *flags: str, nofile: tuple[int, int] | None = None, env: dict[str, str] | None = None):
        super().__init__(*flags, env={"BROADCASTER_LOG_LEVEL": "info", **(env or {})})
        self.nofile = nofile
        self.log_file = tempfile.NamedTemporaryFile(prefix="broadcaster-hostile-", suffix=".log", delete=False)

    @property
    def ps(self) -> psutil.Process:
        assert self.process is not None
        return psutil.Process(self.process.pid)

    def rss_mb(self) -> float:
        return float(self.ps.memory_info().rss) / 2**20

    def fds(self) -> int:
        return int(self.ps.num_fds())

    def log(self) -> str:
        return Path(self.log_file.name).read_text(errors="replace")

    def _spawn(self) -> subprocess.Popen[bytes]:
        nofile = self.nofile

        def limit() -> None:  # in the child, before exec: the limit the server starts with
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, nofile)

        return subprocess.Popen(
            self.args, env=self.env, stdout=self.log_file, stderr=subprocess.STDOUT, preexec_fn=limit
        )

    def _output(self) -> str:
        return self.log()

    def stop(self, timeout: float = 15.0) -> int:
        self.log_file.close()
        return super().stop(timeout)

    def assert_no_fault_logged(self) -> None:
        log = self.log()
        faults = [line for line in log.splitlines() if any(marker in line for marker in FAULT_MARKERS)]
        assert not faults, "the server logged a fault:\n" + "\n".join(faults[:20]) + "\n---\n" + log[-3000:]

    def counts(self) -> dict[str, float]:
        """The hub's and monitor's counts from /metrics (subscriptions, streams), by metric name."""
        text = httpx.get(self.url + "/metrics", timeout=5).text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out


@pytest.fixture
def hostile_server() -> Iterator[Callable[..., HostileServer]]:
    """Start servers with `hostile_server(*flags, nofile=(soft, hard))`; each is checked for faults and stopped."""
    servers: list[HostileServer] = []

    def start(*flags: str, **kwargs: Any) -> HostileServer:
        server = HostileServer(*flags, **kwargs)
        servers.append(server)
        server.start()
        return server

    yield start
    try:
        for server in servers:
            server.assert_no_fault_logged()
    finally:
        for server in servers:
            code = server.stop()
            assert code == 0, f"the server exited with {code}:\n{server.log()[-3000:]}"
            Path(server.log_file.name).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def module_server(request: pytest.FixtureRequest) -> Iterator[HostileServer]:
    """One server for a module of sync (hypothesis) tests; its flags come from the module's `SERVER_FLAGS`."""
    server = HostileServer(*getattr(request.module, "SERVER_FLAGS", ()))
    server.start()
    try:
        yield server
        server.assert_no_fault_logged()
    finally:
        assert server.stop() == 0


@pytest.fixture(scope="module")
def module_canary(module_server: HostileServer) -> Iterator[Callable[[], None]]:
    """The module's canary, on a loop of its own (the tests are sync); call it to publish one event."""
    loop = asyncio.new_event_loop()
    canary = Canary(module_server.url)
    loop.run_until_complete(canary.__aenter__())
    try:
        yield lambda: loop.run_until_complete(canary.publish())
        loop.run_until_complete(canary.verify())
    finally:
        loop.run_until_complete(canary.__aexit__(None, None, None))
        loop.close()
