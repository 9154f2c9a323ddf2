"""Tokens: sent as `Authorization: Bearer`, a callable refreshed on 401 and on a `token_expired` end.

Issue 13, acceptance 5, as far as today's server allows: access control (issue
11) has not landed, so a small ASGI gate in front of the real app (uvicorn on a
real socket) stands in for it: it answers 401 unless the Bearer token is the
current one, as issue 11 specifies, and streams are ended with the
`token_expired` fault through the hub's own `end_streams`, the way the server
ends a stream at its token's expiry.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import orjson
import pytest

from broadcaster import Control, Settings
from broadcaster.client import Fault, Forbidden, Published, Subscriber, Unauthorized, publish

from ..support.servers import ProcessServer, ThreadServer
from ..support.waiting import eventually
from .helpers import events, take, take_events

pytestmark = pytest.mark.e2e


class TokenGate:
    """401 unless `Authorization: Bearer <a token in valid>`; 403 for the topic `secret`."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.valid = {"t1"}
        self.refused = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            token = dict(scope["headers"]).get(b"authorization", b"").decode().removeprefix("Bearer ")
            if token not in self.valid:
                self.refused += 1
                return await _error(send, 401, "unauthorized", "a valid token is needed")
            if b"topic=secret" in scope["query_string"]:
                return await _error(send, 403, "forbidden", "subscribe to secret is not granted")
        await self.app(scope, receive, send)


async def _error(send: Any, status: int, code: str, message: str) -> None:
    headers = [(b"content-type", b"application/json"), (b"www-authenticate", b'Bearer realm="broadcaster"')]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": orjson.dumps({"error": {"code": code, "message": message}})})


@contextlib.contextmanager
def gated_server(settings: Settings) -> Iterator[tuple[ThreadServer, TokenGate]]:
    server = ThreadServer(settings)
    gate = TokenGate(server.server.config.app)
    server.server.config.app = gate
    server.start()
    try:
        yield server, gate
    finally:
        server.stop()


def _end_streams(server: ThreadServer, end: Control) -> None:
    """End every stream the way the server does (on its own loop): drain, then `end`."""
    hub = server.app.state.hub
    assert hub._pump_task is not None
    hub._pump_task.get_loop().call_soon_threadsafe(hub.end_streams, lambda: end)


def _tokens(values: list[str], calls: list[str], *, asynchronous: bool) -> Callable[[], Any]:
    def next_token() -> str:
        calls.append(values[len(calls)])
        return calls[-1]

    async def next_token_async() -> str:
        await asyncio.sleep(0)
        return next_token()

    return next_token_async if asynchronous else next_token


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync-callable", "async-callable"])
async def test_tokens_callable_refreshed_on_token_expired_and_on_401_stream_goes_on(make_settings, asynchronous):
    with gated_server(make_settings()) as (server, gate):
        calls: list[str] = []
        token: Callable[[], str | Awaitable[str]] = _tokens(["t1", "t2", "t3"], calls, asynchronous=asynchronous)
        sent = [publish(server.url, "feed", n, token="t1") for n in range(2)]

        async def publish_more(n: int, token: str) -> None:
            sent.append(await asyncio.to_thread(publish, server.url, "feed", n, token=token))

        async with Subscriber(server.url, "feed", tail=2, token=token) as sub:
            items = await take_events(sub, 2)
            assert calls == ["t1"]

            # The token expires: the stream ends with `token_expired`; the client takes a fresh one.
            gate.valid = {"t2"}
            _end_streams(server, Control("fault", {"reason": "token_expired"}))
            await publish_more(2, "t2")
            items += await take_events(sub, 1)
            assert calls == ["t1", "t2"]

            # The token is revoked: the reconnect gets 401, the callable is called once, the request retried.
            gate.valid = {"t3"}
            _end_streams(server, Control("shutdown", {"reason": "server stopping", "retry_ms": 0}))
            await publish_more(3, "t3")
            items += await take_events(sub, 1)
            assert calls == ["t1", "t2", "t3"]
            assert sub.reconnects == 2
    assert gate.refused == 1
    faults = [item for item in items if isinstance(item, Fault)]
    assert [fault.reason for fault in faults] == ["token_expired"]
    assert [(e.id, e.data) for e in events(items)] == [(p.id, n) for n, p in enumerate(sent)]  # no loss, no repeat


async def test_tokens_a_refused_token_raises_and_a_fixed_one_cannot_be_refreshed(make_settings):
    with gated_server(make_settings()) as (server, gate):
        with pytest.raises(Unauthorized) as refused:
            async with Subscriber(server.url, "feed", token="wrong"):
                pass
        assert refused.value.status == 401 and refused.value.code == "unauthorized"
        with pytest.raises(Unauthorized):
            async with Subscriber(server.url, "feed"):  # no token at all
                pass
        with pytest.raises(Forbidden, match="secret is not granted"):
            async with Subscriber(server.url, "secret", token="t1"):
                pass

        async with Subscriber(server.url, "feed", token="t1") as sub:
            gate.valid = {"t2"}
            _end_streams(server, Control("fault", {"reason": "token_expired"}))
            with pytest.raises(Unauthorized):
                await take(sub, lambda items: False, within=10)
            await eventually(lambda: not sub.connected, within=1)


def test_tokens_publish_refreshes_a_callable_once_on_401(make_settings):
    with gated_server(make_settings()) as (server, gate):
        calls: list[str] = []
        gate.valid = {"fresh"}
        answer = publish(server.url, "feed", {"x": 1}, token=_tokens(["stale", "fresh"], calls, asynchronous=False))
        assert calls == ["stale", "fresh"] and answer.topic == "feed"
        with pytest.raises(Unauthorized):
            publish(server.url, "feed", 1, token=_tokens(["stale", "stale2"], [], asynchronous=False))
        with pytest.raises(TypeError, match="not async"):
            publish(server.url, "feed", 1, token=_tokens(["fresh"], [], asynchronous=True))


SECRET = "client-test-secret-" + "x" * 32  # HS256 secrets are at least 32 bytes (issue 11)


async def _broadcaster_token(*grants: str, ttl_s: int) -> str:
    """A token from `broadcaster token`, the way a script gets one (issue 11's command)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "broadcaster",
        "token",
        *grants,
        "--ttl",
        str(ttl_s),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "BROADCASTER_AUTH_SECRET": SECRET},
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode == 0, err.decode()
    return out.decode().strip()


async def test_tokens_callable_against_the_real_access_control_401_then_token_expired_no_loss():
    server = ProcessServer("--auth-secret", SECRET, "--heartbeat-s", "0.5")
    try:
        server.start()  # not `with server:`, which leaves the output pipe of a failed start open
        publisher = await _broadcaster_token("--publish", "feed", ttl_s=600)
        calls: list[float] = []

        async def token() -> str:
            calls.append(time.monotonic())
            if len(calls) == 1:
                return "not-a-token"  # the first request gets 401: the callable is called again
            return await _broadcaster_token("--subscribe", "feed", ttl_s=2)

        sent: list[Published] = []
        async with Subscriber(server.url, "feed", token=token) as sub:
            assert len(calls) == 2

            async def produce() -> None:
                for n in range(40):
                    sent.append(await asyncio.to_thread(publish, server.url, "feed", n, token=publisher))
                    await asyncio.sleep(0.1)  # 4 s: the 2 s tokens expire on the way

            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(produce())
                items = await take_events(sub, 40, within=30)
    finally:
        server.stop()
    faults = [item.reason for item in items if isinstance(item, Fault)]
    assert faults and set(faults) == {"token_expired"}
    assert len(calls) == 2 + len(faults) and sub.reconnects == len(faults)
    assert [e.id for e in events(items)] == [p.id for p in sent]  # every event once, in order
