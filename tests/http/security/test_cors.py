"""CORS through the gate: exact origins with credentials, * without, preflights, streams and refusals included."""

from __future__ import annotations

import pytest

from broadcaster import ConfigError, Settings

from ...support.tokens import SECRET, hs256

DASH = "http://dash.test:5173"


def preflight(origin: str, method: str = "POST", headers: str = "content-type, authorization") -> dict[str, str]:
    return {"Origin": origin, "Access-Control-Request-Method": method, "Access-Control-Request-Headers": headers}


async def test_allowed_origin_gets_its_origin_credentials_and_vary(client_factory, make_settings):
    async with client_factory(make_settings(cors_origins=(DASH,))) as client:
        stream = await client.get("/topics/a/events", params={"max_duration": 0.1}, headers={"Origin": DASH})
        published = await client.post("/topics/a/events", json=1, headers={"Origin": DASH})
    for response in (stream, published):
        assert response.headers["access-control-allow-origin"] == DASH
        assert response.headers["access-control-allow-credentials"] == "true"
        assert response.headers["vary"] == "Origin"
    assert stream.headers["content-type"].startswith("application/x-ndjson")  # the stream's own headers kept


async def test_other_origin_gets_no_cors_headers_and_is_never_reflected(client_factory, make_settings):
    async with client_factory(make_settings(cors_origins=(DASH,))) as client:
        response = await client.post("/topics/a/events", json=1, headers={"Origin": "http://evil.test"})
        no_origin = await client.get("/healthz")
    assert response.status_code == 201
    assert not [h for h in response.headers if h.startswith("access-control-")]
    assert response.headers["vary"] == "Origin" and no_origin.headers["vary"] == "Origin"


async def test_preflight_for_json_and_ndjson_publish_with_authorization(client_factory, make_settings):
    async with client_factory(make_settings(cors_origins=(DASH,))) as client:
        response = await client.options("/topics/a/events", headers=preflight(DASH))
    assert response.status_code == 204
    assert response.headers["access-control-allow-origin"] == DASH
    assert response.headers["access-control-allow-credentials"] == "true"
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = {h.strip() for h in response.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "last-event-id"} <= allowed
    assert int(response.headers["access-control-max-age"]) > 0


@pytest.mark.parametrize(
    ("headers", "named"),
    [
        (preflight("http://evil.test"), "http://evil.test"),
        (preflight(DASH, method="PUT"), "method PUT"),
        (preflight(DASH, headers="x-custom"), "x-custom"),
    ],
    ids=["origin", "method", "header"],
)
async def test_refused_preflight_is_403_naming_what_and_without_cors_headers(
    client_factory, make_settings, headers, named
):
    async with client_factory(make_settings(cors_origins=(DASH,))) as client:
        response = await client.options("/topics/a/events", headers=headers)
    assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden"
    assert named in response.json()["error"]["message"]
    if headers["Origin"] != DASH:
        assert "access-control-allow-origin" not in response.headers


async def test_star_allows_any_origin_without_credentials(client_factory, make_settings):
    async with client_factory(make_settings(cors_origins=("*",))) as client:
        response = await client.get("/healthz", headers={"Origin": "http://anywhere.test"})
        pre = await client.options("/topics/a/events", headers=preflight("http://anywhere.test"))
    assert response.headers["access-control-allow-origin"] == "*"
    assert "access-control-allow-credentials" not in response.headers
    assert pre.status_code == 204 and pre.headers["access-control-allow-origin"] == "*"


async def test_auth_refusals_carry_the_cors_headers_so_the_page_can_read_them(client_factory, make_settings):
    settings = make_settings(cors_origins=(DASH,), auth_secret=SECRET)
    async with client_factory(settings) as client:
        response = await client.get("/topics/a/events", headers={"Origin": DASH})
        granted = await client.get(
            "/topics/a/events",
            params={"max_duration": 0.1},
            headers={"Origin": DASH, "Authorization": f"Bearer {hs256(subscribe=['a'])}"},
        )
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == DASH
    assert "WWW-Authenticate" in response.headers["access-control-expose-headers"]
    assert granted.status_code == 200 and granted.headers["access-control-allow-origin"] == DASH


@pytest.mark.parametrize(
    ("origins", "message"),
    [
        (("https://dash.example.com/",), "is not an origin"),
        (("dash.example.com",), "is not an origin"),
        (("https://a.example", "*"), "give \\* alone"),
        (("https://a.example\r\nX-Evil: 1",), "is not an origin"),
    ],
    ids=["path", "no-scheme", "star-and-list", "crlf"],
)
def test_cors_origins_must_be_exact_origins(origins, message):
    with pytest.raises(ConfigError, match=message):
        Settings(cors_origins=origins)


def test_list_settings_take_comma_separated_values_in_flag_and_variable_alike():
    from_env = Settings.from_env({"BROADCASTER_CORS_ORIGINS": "https://a.example, https://b.example"})
    assert from_env.cors_origins == ("https://a.example", "https://b.example")
    assert Settings(cors_origins="https://a.example,https://b.example").cors_origins == from_env.cors_origins
