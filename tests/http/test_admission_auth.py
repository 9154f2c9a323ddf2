"""The caps with access control on: a client is its token's subject, whatever address it comes from."""

from __future__ import annotations

import contextlib

import httpx
import pytest

from ..support.canary import Canary
from ..support.servers import thread_server
from ..support.tokens import SECRET, hs256

pytestmark = pytest.mark.e2e


def _client(url: str, ip: str, token: str) -> httpx.AsyncClient:
    headers = {"X-Forwarded-For": ip, "Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(base_url=url, headers=headers, timeout=httpx.Timeout(10, read=None))


async def test_a_subjects_streams_are_capped_across_addresses_with_real_tokens(make_settings):
    settings = make_settings(auth_secret=SECRET, max_streams_per_client=2)
    alice = hs256(sub="alice", subscribe=["*"])
    bob = hs256(sub="bob", subscribe=["*"])
    with thread_server(settings) as server:
        canary_token = hs256(sub="canary", subscribe=["canary"], publish=["canary"])
        async with (
            Canary(server.url, headers={"Authorization": f"Bearer {canary_token}"}) as canary,
            contextlib.AsyncExitStack() as stack,
        ):
            for ip in ("10.0.0.1", "10.0.0.2"):
                client = await stack.enter_async_context(_client(server.url, ip, alice))
                response = await stack.enter_async_context(client.stream("GET", "/topics/a/events"))
                assert response.status_code == 200
            async with _client(server.url, "10.0.0.3", alice) as third, _client(server.url, "10.0.0.1", bob) as other:
                refused = await third.get("/topics/a/events")
                assert refused.status_code == 429 and refused.json()["error"]["code"] == "too_many_client_streams"
                assert int(refused.headers["Retry-After"]) >= 1
                async with other.stream("GET", "/topics/b/events") as response:
                    assert response.status_code == 200  # another subject from alice's address
            await canary.publish(2)
            await canary.verify()


async def test_the_publish_rate_is_per_subject_with_real_tokens(make_settings):
    settings = make_settings(auth_secret=SECRET, publish_rate=1, publish_burst=2)
    alice = hs256(sub="alice", publish=["p"])
    bob = hs256(sub="bob", publish=["p"])
    with thread_server(settings) as server:
        async with _client(server.url, "10.0.0.1", alice) as a1, _client(server.url, "10.0.0.2", alice) as a2:
            assert (await a1.post("/topics/p/events", json=1)).status_code == 201
            assert (await a2.post("/topics/p/events", json=2)).status_code == 201
            refused = await a1.post("/topics/p/events", json=3)  # the same subject, its burst spent
            assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limited"
            assert refused.headers["Retry-After"] == "1"
        async with _client(server.url, "10.0.0.1", bob) as b:
            assert (await b.post("/topics/p/events", json=4)).status_code == 201
