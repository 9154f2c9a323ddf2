"""Access control through the app uvicorn runs (ServerApp: the gate, then the lanes), in process.

The same refusals over a real socket, for every route and stream kind, are in
tests/e2e/test_auth.py; this module covers the rules one by one.
"""

from __future__ import annotations

import time

import httpx
import pytest

from broadcaster import Hub

from ...support.tokens import SECRET, hs256

REALM = 'Bearer realm="broadcaster"'


@pytest.fixture
def auth_settings(make_settings):
    def make(**changes):
        return make_settings(auth_secret=SECRET, **changes)

    return make


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def error(response: httpx.Response) -> tuple[int, str, str]:
    body = response.json()["error"]
    return response.status_code, body["code"], body["message"]


async def test_no_token_is_401_with_the_plain_challenge(client_factory, auth_settings):
    async with client_factory(auth_settings()) as client:
        response = await client.get("/topics/a/events")
    status, code, message = error(response)
    assert (status, code) == (401, "unauthorized")
    assert response.headers["www-authenticate"] == REALM
    assert "subscribe to a" in message and "Authorization: Bearer" in message


@pytest.mark.parametrize(
    ("make", "reason"),
    [
        (lambda: hs256("some-other-secret-0123456789-abcdefghij"), "bad signature"),
        (lambda: hs256(ttl_s=-10), "expired"),
        (lambda: "not-a-token", "malformed"),
    ],
    ids=["bad-signature", "expired", "garbage"],
)
async def test_failed_token_is_401_invalid_token_naming_the_reason(client_factory, auth_settings, make, reason):
    token = make()
    async with client_factory(auth_settings()) as client:
        response = await client.post("/topics/a/events", json=1, headers=bearer(token))
    status, code, message = error(response)
    assert (status, code) == (401, "unauthorized") and reason in message
    assert response.headers["www-authenticate"] == (
        f'{REALM}, error="invalid_token", error_description="the token is invalid: {reason}"'
    )


async def test_token_outside_its_grants_is_403_naming_action_and_topic(client_factory, auth_settings):
    token = hs256(subscribe=["sensors.*"], publish=["sensors.kitchen"])
    async with client_factory(auth_settings()) as client:
        publish = await client.post("/topics/sensors.hall/events", json=1, headers=bearer(token))
        stream = await client.get("/events", params={"topic": ["sensors.*", "logs.*"]}, headers=bearer(token))
    assert error(publish)[:2] == (403, "forbidden") and "publish on sensors.hall" in error(publish)[2]
    assert publish.headers["www-authenticate"] == (
        f'{REALM}, error="insufficient_scope", error_description="may not publish on sensors.hall"'
    )
    assert error(stream)[:2] == (403, "forbidden") and "subscribe to logs.*" in error(stream)[2]


async def test_granted_publish_and_stream_pass(client_factory, auth_settings):
    token = hs256(subscribe=["sensors.*"], publish=["sensors.kitchen"])
    async with client_factory(auth_settings()) as client:
        published = await client.post("/topics/sensors.kitchen/events", json={"t": 1}, headers=bearer(token))
        assert published.status_code == 201
        stream = await client.get(
            "/events", params={"topic": "sensors.kit*", "tail": 1, "max_events": 1}, headers=bearer(token)
        )
    assert stream.status_code == 200 and '"t":1' in stream.text


async def test_refused_stream_never_reaches_the_hub(client_factory, auth_settings):
    settings = auth_settings()
    async with Hub(settings=settings) as hub, client_factory(settings, hub) as client:
        for headers in ({}, bearer(hs256(subscribe=["other"]))):
            response = await client.get("/topics/secret/events", headers=headers)
            assert response.status_code in (401, 403)
        assert hub.subscriptions == 0 and hub.subscriber_count("secret") == 0


async def test_anonymous_subscribe_patterns_need_no_token_and_add_to_a_tokens_grants(client_factory, auth_settings):
    async with client_factory(auth_settings(anonymous_subscribe=("public.*",))) as client:
        open_stream = await client.get("/topics/public.news/events", params={"max_duration": 0.1})
        closed = await client.get("/topics/private/events")
        granted = await client.get(
            "/events",
            params={"topic": ["public.*", "mine"], "max_duration": 0.1},
            headers=bearer(hs256(subscribe=["mine"])),
        )
        no_publish = await client.post("/topics/public.news/events", json=1)
    assert open_stream.status_code == 200
    assert error(closed)[:2] == (401, "unauthorized")
    assert granted.status_code == 200
    assert error(no_publish)[:2] == (401, "unauthorized")


async def test_history_needs_a_subscribe_grant(client_factory, auth_settings):
    async with client_factory(auth_settings()) as client:
        await client.post("/topics/h/events", json=1, headers=bearer(hs256(publish=["h"])))
        refused = await client.get("/topics/h/history", headers=bearer(hs256(subscribe=["other"])))
        allowed = await client.get("/topics/h/history", headers=bearer(hs256(subscribe=["h*"])))
    assert error(refused)[:2] == (403, "forbidden")
    assert allowed.status_code == 200 and allowed.text.count("\n") == 1


async def test_topics_lists_only_what_the_token_may_subscribe(client_factory, auth_settings):
    admin = bearer(hs256(admin=True))
    async with client_factory(auth_settings(anonymous_subscribe=("public.*",))) as client:
        for topic in ("public.a", "sensors.a", "logs.a"):
            assert (await client.post(f"/topics/{topic}/events", json=1, headers=admin)).status_code == 201

        async def listed(headers: dict[str, str]) -> set[str]:
            response = await client.get("/topics", headers=headers)
            assert response.status_code == 200
            return {t["topic"] for t in response.json()["topics"]}

        assert await listed({}) == {"public.a"}
        assert await listed(bearer(hs256(subscribe=["sensors.*"]))) == {"public.a", "sensors.a"}
        assert await listed(admin) == {"public.a", "sensors.a", "logs.a"}
        assert (await client.get("/topics", headers=bearer("garbage"))).status_code == 401


async def test_metrics_need_admin_unless_public(client_factory, auth_settings):
    async with client_factory(auth_settings()) as client:
        assert error(await client.get("/metrics"))[:2] == (401, "unauthorized")
        assert error(await client.get("/metrics", headers=bearer(hs256(subscribe=["*"]))))[:2] == (403, "forbidden")
        assert (await client.get("/metrics", headers=bearer(hs256(admin=True)))).status_code == 200
    async with client_factory(auth_settings(metrics_public=True)) as client:
        assert (await client.get("/metrics")).status_code == 200


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.json", "/docs"])
async def test_health_and_docs_stay_open_even_with_a_bad_token(client_factory, auth_settings, path):
    async with client_factory(auth_settings()) as client:
        assert (await client.get(path)).status_code == 200
        assert (await client.get(path, headers=bearer("garbage"))).status_code == 200


async def test_query_token_is_refused_unless_enabled(client_factory, auth_settings):
    token = hs256(subscribe=["q"])
    params = {"access_token": token, "max_duration": 0.1}
    async with client_factory(auth_settings()) as client:
        refused = await client.get("/topics/q/events", params=params)
    assert error(refused)[:2] == (401, "unauthorized") and "access_token" in error(refused)[2]
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    async with client_factory(auth_settings(auth_query_token=True)) as client:
        await client.post("/topics/q/events", json=1, headers=bearer(hs256(publish=["q"])))
        accepted = await client.get("/topics/q/events", params={**params, "tail": 1, "max_events": 1})
    assert accepted.status_code == 200 and '"data":1' in accepted.text


async def test_bearer_header_wins_over_the_cookie_which_wins_over_nothing(client_factory, auth_settings):
    good, bad = hs256(publish=["c"]), hs256(publish=["other"])
    async with client_factory(auth_settings()) as client:
        client.cookies.set("broadcaster_token", bad)
        assert (await client.post("/topics/c/events", json=1, headers=bearer(good))).status_code == 201
        assert (await client.post("/topics/c/events", json=1)).status_code == 403
        client.cookies.set("broadcaster_token", good)
        assert (await client.post("/topics/c/events", json=1)).status_code == 201


async def test_session_post_sets_the_cookie_and_delete_clears_it(client_factory, auth_settings):
    token = hs256(subscribe=["s"], ttl_s=120)
    async with client_factory(auth_settings()) as client:
        assert error(await client.post("/auth/session"))[:2] == (401, "unauthorized")
        assert error(await client.post("/auth/session", headers=bearer(hs256(ttl_s=-1))))[:2] == (401, "unauthorized")
        created = await client.post("/auth/session", headers=bearer(token))
        assert created.status_code == 204
        cookie = created.headers["set-cookie"]
        attributes = [part.strip() for part in cookie.split(";")]
        assert attributes[0] == f"broadcaster_token={token}"
        assert {"Path=/", "HttpOnly", "SameSite=Strict"} <= set(attributes) and "Secure" not in attributes
        max_age = int(next(a for a in attributes if a.startswith("Max-Age="))[len("Max-Age=") :])
        assert 110 <= max_age <= 120
        # The cookie now opens the stream on its own (what EventSource does).
        assert (await client.get("/topics/s/events", params={"max_duration": 0.1})).status_code == 200
        cleared = await client.delete("/auth/session")
        assert cleared.status_code == 204 and "Max-Age=0" in cleared.headers["set-cookie"]
        assert (await client.get("/topics/s/events", params={"max_duration": 0.1})).status_code == 401


async def test_session_cookie_is_secure_over_https(client_factory, auth_settings):
    async with client_factory(auth_settings()) as client:
        client.base_url = httpx.URL("https://test")
        created = await client.post("/auth/session", headers=bearer(hs256()))
    assert "Secure" in [part.strip() for part in created.headers["set-cookie"].split(";")]


async def test_session_with_auth_off_answers_204_and_sets_nothing(client_factory, make_settings):
    async with client_factory(make_settings()) as client:
        created = await client.post("/auth/session", headers=bearer("anything"))
    assert created.status_code == 204 and "set-cookie" not in created.headers


async def test_cookie_write_from_a_foreign_page_is_refused(client_factory, auth_settings):
    token = hs256(publish=["w"])
    async with client_factory(auth_settings(cors_origins=("http://dash.test",))) as client:
        client.cookies.set("broadcaster_token", token)
        foreign = await client.post("/topics/w/events", json=1, headers={"Origin": "http://evil.test:8000"})
        own = await client.post("/topics/w/events", json=1, headers={"Origin": "http://test"})
        listed = await client.post("/topics/w/events", json=1, headers={"Origin": "http://dash.test"})
        with_bearer = await client.post(
            "/topics/w/events", json=1, headers={"Origin": "http://evil.test:8000", **bearer(token)}
        )
    assert error(foreign)[:2] == (403, "forbidden") and "session cookie" in error(foreign)[2]
    assert (own.status_code, listed.status_code, with_bearer.status_code) == (201, 201, 201)


async def test_token_expiry_is_the_streams_deadline(client_factory, auth_settings):
    token = hs256(subscribe=["x"], ttl_s=1)
    started = time.monotonic()
    async with client_factory(auth_settings()) as client:
        response = await client.get("/topics/x/events", headers=bearer(token))  # ends by itself at exp
    assert response.status_code == 200
    assert response.text.strip().splitlines()[-1] == '{"control":"fault","reason":"token_expired"}'
    assert time.monotonic() - started < 3.5
