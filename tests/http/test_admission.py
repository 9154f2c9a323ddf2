"""Every admission cap through uvicorn on a real socket: status, error.code, Retry-After; open streams unharmed."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from types import SimpleNamespace

import httpx
import pytest

from broadcaster.http.gate import Gate
from broadcaster.http.limits.admission import AdmissionPolicy

from ..support.canary import Canary
from ..support.servers import ThreadServer, thread_server
from ..support.waiting import eventually

pytestmark = pytest.mark.e2e


def _client(url: str, ip: str | None = None) -> httpx.AsyncClient:
    headers = {"X-Forwarded-For": ip} if ip else {}  # 127.0.0.1 is a trusted proxy by default
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=httpx.Timeout(10, read=None))


@contextlib.asynccontextmanager
async def _streams(url: str, count: int, ip: str | None = None) -> AsyncIterator[list[httpx.Response]]:
    """`count` open NDJSON streams of one client, each answered 200."""
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(_client(url, ip))
        responses = []
        for n in range(count):
            response = await stack.enter_async_context(client.stream("GET", f"/topics/t{n}/events"))
            assert response.status_code == 200
            responses.append(response)
        yield responses


async def _refused(client: httpx.AsyncClient, path: str = "/topics/more/events") -> httpx.Response:
    response = await client.get(path)
    return response


def _assert_refusal(response: httpx.Response, status: int, code: str) -> int:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    retry_after = int(response.headers["Retry-After"])
    assert retry_after >= 1
    return retry_after


async def test_max_streams_refuses_with_503_and_keeps_open_streams(make_settings):
    with thread_server(make_settings(max_streams=3)) as server:
        async with Canary(server.url) as canary, _streams(server.url, 2, "10.0.0.1"):
            async with _client(server.url, "10.0.0.2") as other:
                _assert_refusal(await _refused(other), 503, "too_many_streams")
                assert server.app.state.hub.subscriptions == 3  # the refused stream never reached the hub
                assert (await other.get("/healthz")).status_code == 200
                await canary.publish(3)
            await canary.verify()
        # The streams closed: a new one is admitted again.
        async with _client(server.url, "10.0.0.2") as other:
            await eventually(lambda: server.app.state.admission.streams.total == 0, what="streams released")
            async with other.stream("GET", "/topics/again/events") as response:
                assert response.status_code == 200


async def test_max_streams_per_client_refuses_with_429_by_address(make_settings):
    with thread_server(make_settings(max_streams_per_client=2)) as server:
        async with Canary(server.url, headers={"X-Forwarded-For": "10.0.0.9"}) as canary:
            async with _streams(server.url, 2, "10.0.0.1"):
                async with _client(server.url, "10.0.0.1") as same, _client(server.url, "10.0.0.2") as other:
                    _assert_refusal(await _refused(same), 429, "too_many_client_streams")
                    async with other.stream("GET", "/topics/x/events") as response:
                        assert response.status_code == 200  # another client is not affected
                    await canary.publish(2)
            await canary.verify()


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(make_settings):
    settings = make_settings(max_streams_per_client=1, forwarded_allow_ips="")
    with thread_server(settings) as server:
        async with _streams(server.url, 1, "10.0.0.1"), _client(server.url, "10.0.0.2") as spoofing:
            # Both are 127.0.0.1 to the server: X-Forwarded-For from an untrusted peer names nobody.
            _assert_refusal(await _refused(spoofing), 429, "too_many_client_streams")


async def test_single_publishes_past_the_rate_get_429_rate_limited(make_settings):
    with thread_server(make_settings(publish_rate=2, publish_burst=3)) as server:
        async with Canary(server.url, headers={"X-Forwarded-For": "10.0.0.9"}) as canary:
            async with _client(server.url, "10.0.0.1") as client, _client(server.url, "10.0.0.2") as other:
                answers = [await client.post("/topics/p/events", json={"n": n}) for n in range(4)]
                assert [a.status_code for a in answers[:3]] == [201, 201, 201]
                retry_after = _assert_refusal(answers[3], 429, "rate_limited")
                assert retry_after == 1  # one token at 2/s: within a second
                assert (await other.post("/topics/p/events", json={})).status_code == 201  # per client
                await canary.publish(3)  # the canary is a client of its own, within its burst
            await canary.verify()


async def test_streamed_publish_is_slowed_to_the_rate_not_refused(make_settings):
    with thread_server(make_settings(publish_rate=40, publish_burst=10)) as server:
        async with _client(server.url, "10.0.0.1") as client:
            body = b"".join(b'{"n": %d}\n' % n for n in range(50))
            started = time.monotonic()
            response = await client.post(
                "/topics/p/events", content=body, headers={"Content-Type": "application/x-ndjson"}
            )
            elapsed = time.monotonic() - started
            assert response.status_code == 200
            assert response.json()["accepted"] == 50
            assert elapsed >= (50 - 10) / 40 * 0.9  # the burst at once, the rest at 40/s
            # The budget is spent: a single POST right after is refused.
            _assert_refusal(await client.post("/topics/p/events", json={}), 429, "rate_limited")


async def test_reconnect_storm_is_admitted_at_the_rate_with_spread_retry_after(make_settings):
    with thread_server(make_settings(admit_rate=20, admit_burst=20)) as server:
        async with Canary(server.url) as canary:
            async with _client(server.url, "10.0.0.1") as client:
                answers = await asyncio.gather(
                    *[client.get("/topics/storm/events?max_duration=0.2") for _ in range(60)]
                )
                refused = [a for a in answers if a.status_code == 503]
                # At most the burst (plus what refilled while the storm lasted) got in; the rest were told to wait.
                assert 30 <= len(refused) <= 40 + 5
                hints = {_assert_refusal(a, 503, "too_many_new_streams") for a in refused}
                assert len(hints) >= 2  # spread, not one second for everybody
                await canary.publish(3)
            await canary.verify()


class _IdentifyFromHeader:
    """Stands in for access control: the gate's identity from a header, as auth sets it from a token."""

    async def admit(self, request, decision):
        subject = request.headers.get("x-test-subject")
        return decision.adding(identity=SimpleNamespace(subject=subject)) if subject else decision


async def test_max_streams_per_client_counts_a_token_subject_across_addresses(make_settings):
    server = ThreadServer(make_settings(max_streams_per_client=2))
    server.server_app.gate = Gate([_IdentifyFromHeader(), AdmissionPolicy(server.app.state.admission)])
    server.start()
    try:
        async with Canary(server.url) as canary, contextlib.AsyncExitStack() as stack:
            for ip in ("10.0.0.1", "10.0.0.2"):  # one subject from two addresses
                client = await stack.enter_async_context(_client(server.url, ip))
                client.headers["X-Test-Subject"] = "alice"
                response = await stack.enter_async_context(client.stream("GET", "/topics/a/events"))
                assert response.status_code == 200
            async with _client(server.url, "10.0.0.3") as third, _client(server.url, "10.0.0.1") as bob:
                third.headers["X-Test-Subject"] = "alice"
                _assert_refusal(await _refused(third), 429, "too_many_client_streams")
                bob.headers["X-Test-Subject"] = "bob"  # from alice's address, but another subject
                async with bob.stream("GET", "/topics/b/events") as response:
                    assert response.status_code == 200
            await canary.publish(2)
            await canary.verify()
    finally:
        server.stop()
