"""`broadcaster token`, `--token` on publish and tail, key rotation, and the warning for an open server."""

from __future__ import annotations

import asyncio
import signal
import time

import httpx
import orjson
import pytest

from broadcaster import Settings
from broadcaster.auth import Keyring, TokenVerifier
from broadcaster.cli import exposure_warning

from .support.redis_server import free_port
from .support.servers import thread_server
from .support.tokens import PREVIOUS_SECRET, SECRET, hs256
from .support.waiting import eventually
from .test_cli import COMMAND, _env, run_cli


def test_token_prints_a_token_the_server_accepts_with_its_grants():
    result = run_cli(
        "token", "--subscribe", "sensors.*", "logs.app", "--publish", "sensors.kitchen", "--ttl", "30m", "--sub", "ci",
        BROADCASTER_AUTH_SECRET=SECRET, BROADCASTER_AUTH_AUDIENCE="dash",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    settings = Settings(auth_secret=SECRET, auth_audience="dash")
    identity = TokenVerifier(Keyring.from_settings(settings), audience="dash").verify(token)
    assert identity.subject == "ci"
    assert identity.grants.subscribe == ("sensors.*", "logs.app") and identity.grants.publish == ("sensors.kitchen",)
    assert identity.expires_at is not None and 1790 <= identity.expires_at - time.time() <= 1800


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--subscribe", "a"], {}, "signs with the HS256 secret"),
        (["--subscribe", "a", "--ttl", "soon"], {"BROADCASTER_AUTH_SECRET": SECRET}, "--ttl: 'soon' is not a duration"),
        (["--subscribe", "bad topic"], {"BROADCASTER_AUTH_SECRET": SECRET}, "is invalid"),
        (["--subscribe", "a"], {"BROADCASTER_AUTH_SECRET": "short"}, "needs at least 32"),
    ],
    ids=["no-secret", "bad-ttl", "bad-pattern", "short-secret"],
)
def test_token_usage_errors_exit_2_naming_the_problem(args, env, message):
    result = run_cli("token", *args, **env)
    assert result.returncode == 2 and message in result.stderr and not result.stdout


async def test_rotation_previous_secret_tokens_work_with_publish_and_tail(make_settings):
    """Tokens signed with --auth-previous-secret stay valid; `broadcaster token` output works with tail and publish."""
    settings = make_settings(auth_secret=SECRET, auth_previous_secret=PREVIOUS_SECRET)
    old = run_cli("token", "--subscribe", "rot.*", "--publish", "rot.a", BROADCASTER_AUTH_SECRET=PREVIOUS_SECRET)
    new = run_cli("token", "--publish", "rot.a", BROADCASTER_AUTH_SECRET=SECRET)
    old_token, new_token = old.stdout.strip(), new.stdout.strip()
    with thread_server(settings) as server:
        refused = run_cli("publish", "rot.a", "{}", "--url", server.url)
        assert refused.returncode == 1 and "401 unauthorized" in refused.stderr
        proc = await asyncio.create_subprocess_exec(
            *COMMAND, "tail", "rot.*", "--json", "--url", server.url,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=_env(BROADCASTER_TOKEN=old_token),
        )  # fmt: skip
        try:
            admin = {"Authorization": f"Bearer {hs256(admin=True)}"}
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

                async def subscribed() -> bool:
                    topics = (await client.get("/topics", headers=admin)).json()["topics"]
                    return any(t["topic"] == "rot.*" and t["subscribers"] == 1 for t in topics)

                await eventually(subscribed, within=15, what="tail subscribed with the old secret's token")
            ids = []
            for token in (old_token, new_token):
                published = run_cli("publish", "rot.a", '{"k": 1}', "--url", server.url, "--token", token)
                assert published.returncode == 0, published.stderr
                ids.append(published.stdout.strip())
            assert proc.stdout is not None
            async with asyncio.timeout(10):
                lines = [orjson.loads(await proc.stdout.readline()) for _ in ids]
            assert [line["id"] for line in lines] == ids
        finally:
            proc.send_signal(signal.SIGINT)
            async with asyncio.timeout(10):
                await proc.wait()


def test_tail_with_a_refused_token_exits_1_with_the_servers_reason(make_settings):
    with thread_server(make_settings(auth_secret=SECRET)) as server:
        result = run_cli("tail", "x", "--url", server.url, "--token", hs256(subscribe=["other"]))
    assert result.returncode == 1 and "403 forbidden" in result.stderr and "subscribe to x" in result.stderr


@pytest.mark.parametrize(
    ("host", "warned"),
    [("127.0.0.1", False), ("127.0.0.2", False), ("::1", False), ("localhost", False), ("0.0.0.0", True),
     ("::", True), ("192.0.2.10", True), ("broadcaster.example", True)],
)  # fmt: skip
def test_exposure_warning_for_non_loopback_hosts_with_auth_off(host, warned):
    assert (exposure_warning(Settings(host=host)) is not None) is warned
    assert exposure_warning(Settings(host=host, auth_secret=SECRET)) is None


def test_serve_on_a_non_loopback_address_with_auth_off_prints_the_warning():
    """192.0.2.1 (TEST-NET-1) is assigned to no interface: the bind fails after the warning, nothing listens."""
    result = run_cli("serve", "--host", "192.0.2.1", "--port", str(free_port()), timeout=30)
    assert result.returncode != 0
    assert "warning: access control is off and the server listens on 192.0.2.1" in result.stderr
    assert "anyone who can reach it may publish and subscribe" in result.stderr
    with_auth = run_cli("serve", "--host", "192.0.2.1", "--port", str(free_port()), BROADCASTER_AUTH_SECRET=SECRET)
    assert "access control: on (HS256)" in with_auth.stderr and "warning: access control is off" not in with_auth.stderr


def test_list_flags_take_commas_and_may_be_repeated():
    """`--cors-origins a,b --cors-origins c` is three origins (a second flag never drops the first silently)."""
    from broadcaster.cli import SETTING_NAMES, build_parser, setting_values

    args = build_parser().parse_args(
        ["serve", "--cors-origins", "https://a.example,https://b.example", "--cors-origins", "https://c.example"]
    )
    values = setting_values(args, SETTING_NAMES, environ={})
    assert values["cors_origins"] == ("https://a.example", "https://b.example", "https://c.example")
