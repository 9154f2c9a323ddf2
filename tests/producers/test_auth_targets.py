"""Producers against a server with access control: HttpTarget's token, a refresh mid-POST, the CLI's --token."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import orjson
import pytest

from producers import HttpTarget, TargetRejected
from producers.__main__ import main

from ..support.servers import thread_server
from ..support.tokens import SECRET, claims, hs256


async def _history(url: str, topic: str) -> list[object]:
    reader = {"Authorization": f"Bearer {hs256(subscribe=['*'])}"}
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        response = await client.get(f"/topics/{topic}/history", headers=reader)
    return [orjson.loads(line)["data"] for line in response.text.splitlines()]


async def test_http_target_sends_its_token(make_settings):
    with thread_server(make_settings(auth_secret=SECRET)) as server:
        async with HttpTarget(server.url, token=hs256(publish=["plant"])) as target:
            for n in range(3):
                await target.publish("plant", orjson.dumps({"n": n}))
        assert await _history(server.url, "plant") == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert target.stats.sent == 3


@pytest.mark.parametrize(
    ("grants", "named"),
    [(None, "401"), ({"publish": ["other"]}, "403"), ({"publish": ["plant"], "ttl_s": -5}, "expired")],
    ids=["none", "outside-grants", "expired"],
)
async def test_http_target_refused_token_is_a_clear_error_not_a_retry_loop(make_settings, grants, named):
    token = None if grants is None else hs256(**grants)  # made here: a token made at collection could expire
    with thread_server(make_settings(auth_secret=SECRET)) as server:
        target = HttpTarget(server.url, token=token, retry_for_s=30)
        started = time.monotonic()
        with pytest.raises(TargetRejected) as failure:
            async with target:
                await target.publish("plant", b"1")
    assert named in str(failure.value) and "plant" in str(failure.value)
    assert time.monotonic() - started < 10  # refused at once, not retried for retry_for_s


async def test_http_target_with_a_token_function_refreshes_when_its_post_outlives_the_token(make_settings):
    """The server stops reading at exp and answers 401 with its report; the target sends the rest with the next
    token, from the line the report names: every event exactly once."""
    expiring = jwt.encode({**claims(publish=["p"]), "exp": int(time.time()) + 2}, SECRET, algorithm="HS256")
    tokens = [expiring]

    def current() -> str:
        token = tokens[-1]
        if token is expiring and time.time() >= int(jwt.decode(token, options={"verify_signature": False})["exp"]):
            tokens.append(hs256(publish=["p"]))
        return tokens[-1]

    with thread_server(make_settings(auth_secret=SECRET)) as server:
        async with HttpTarget(server.url, token=current, idle_s=30, max_post_s=30) as target:
            for n in range(30):
                await target.publish("p", orjson.dumps({"n": n}))
                await asyncio.sleep(0.1)  # pacing the producer across the token's expiry
        assert await _history(server.url, "p") == [{"n": n} for n in range(30)]
    assert len(tokens) == 2 and target.stats.sent == 30 and target.stats.retries >= 1


async def test_producer_cli_takes_token_from_flag_or_environment(make_settings, monkeypatch, capsys):
    with thread_server(make_settings(auth_secret=SECRET)) as server:
        args = ["sensor", "--target", server.url, "--topic", "lab", "--rate", "200", "--count", "5", "--seed", "1"]
        assert await asyncio.to_thread(main, args) == 1  # no token: refused, and said so
        assert "401" in capsys.readouterr().err
        assert await asyncio.to_thread(main, [*args, "--token", hs256(publish=["lab"])]) == 0
        monkeypatch.setenv("BROADCASTER_TOKEN", hs256(publish=["lab"]))
        assert await asyncio.to_thread(main, args) == 0
        assert len(await _history(server.url, "lab")) == 10
