"""Access control against uvicorn on a real socket: every route and stream kind, every way a token fails (issue 11).

One server has auth on with an HS256 secret, an RS256 public key, an audience and an
issuer; a second has only the RS256 key (the algorithm-confusion case). Every request
kind is sent without a token, with each kind of bad token, and with a valid token
outside its grants: 401 with `WWW-Authenticate` (naming the reason when a token was
sent), or 403 naming the topic. A counter on the hub's `subscribe` shows that no refused
stream reached the hub. The same kinds with a good token pass, so the matrix is not
refusing everything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import orjson
import pytest

from broadcaster import Settings

from ..conftest import TEST_SETTINGS
from ..support.servers import ThreadServer, thread_server
from ..support.tokens import SECRET, KeyPair, claims, forge, hs256

pytestmark = pytest.mark.e2e

AUD, ISS = "dashboards", "https://id.example"
REALM = 'Bearer realm="broadcaster"'
STREAM_END = {"max_duration": "0.3"}

# (name, method, url, request kwargs, the topic or pattern a refusal names, admitted status)
KINDS: list[tuple[str, str, str, dict[str, Any], str, int]] = [
    ("sse", "GET", "/topics/s.one/events", {"headers": {"Accept": "text/event-stream"}}, "s.one", 200),
    ("ndjson", "GET", "/topics/s.one/events", {"params": {"format": "ndjson"}}, "s.one", 200),
    ("multi-ndjson", "GET", "/events", {"params": {"topic": ["s.one", "s.two"]}}, "s.one", 200),
    ("multi-sse", "GET", "/events", {"params": {"topic": ["s.one", "s.two"], "format": "sse"}}, "s.one", 200),
    ("pattern-ndjson", "GET", "/events", {"params": {"topic": "s.*"}}, "s.*", 200),
    (
        "pattern-sse",
        "GET",
        "/events",
        {"params": {"topic": "s.*"}, "headers": {"Accept": "text/event-stream"}},
        "s.*",
        200,
    ),
    ("history", "GET", "/topics/s.one/history", {}, "s.one", 200),
    ("publish-json", "POST", "/topics/s.one/events", {"json": {"n": 1}}, "s.one", 201),
    (
        "publish-ndjson",
        "POST",
        "/topics/s.one/events",
        {"content": b'{"n":1}\n{"n":2}\n', "headers": {"Content-Type": "application/x-ndjson"}},
        "s.one",
        200,
    ),
    (
        "publish-text",
        "POST",
        "/topics/s.one/events",
        {"content": b"one\ntwo\n", "headers": {"Content-Type": "text/plain"}},
        "s.one",
        200,
    ),
    (
        "publish-multipart",
        "POST",
        "/topics/s.one/events",
        {"files": {"file": ("backlog.ndjson", b'{"n":1}\n', "application/x-ndjson")}},
        "s.one",
        200,
    ),
    ("metrics", "GET", "/metrics", {}, "/metrics", 200),
    ("topics", "GET", "/topics", {}, "", 200),
]
IDS = [kind[0] for kind in KINDS]


class Servers:
    def __init__(self, both: ThreadServer, rsa_only: ThreadServer, pair: KeyPair) -> None:
        self.both, self.rsa_only, self.pair = both, rsa_only, pair
        self.client = httpx.Client(timeout=10)  # one client (one SSL context) for every request
        self.subscribes = 0
        hub = both.app.state.hub
        subscribe = hub.subscribe

        async def counted(*args: Any, **kwargs: Any) -> Any:
            self.subscribes += 1
            return await subscribe(*args, **kwargs)

        hub.subscribe = counted


@pytest.fixture(scope="module")
def servers(tmp_path_factory) -> Iterator[Servers]:
    pair = KeyPair("RS256", tmp_path_factory.mktemp("keys"))
    common = {**TEST_SETTINGS, "auth_public_key": str(pair.path), "auth_audience": AUD, "auth_issuer": ISS}
    with (
        thread_server(Settings(**common, auth_secret=SECRET)) as both,
        thread_server(Settings(**common)) as rsa_only,
    ):
        servers = Servers(both, rsa_only, pair)
        with servers.client:
            yield servers


def good(**grants: Any) -> dict[str, Any]:
    return {"aud": AUD, "iss": ISS, **grants}


def bad_tokens(pair: KeyPair) -> dict[str, tuple[str, str]]:
    """name -> (token, the reason the server must name)."""
    confused = forge({"alg": "HS256", "typ": "JWT"}, claims(admin=True, **good()), pair.public_pem)
    return {
        "bad-signature": (hs256("a-secret-nobody-configured-0123456789abc", admin=True, **good()), "bad signature"),
        "alg-none": (forge({"alg": "none", "typ": "JWT"}, claims(admin=True, **good()), None), "unsupported algorithm"),
        "hs256-with-rsa-public-key": (confused, "bad signature"),  # HS256 is checked against the secret only
        "expired": (hs256(admin=True, ttl_s=-30, **good()), "expired"),
        "not-yet-valid": (hs256(admin=True, nbf=int(time.time()) + 600, **good()), "not yet valid"),
        "wrong-audience": (hs256(admin=True, aud="other", iss=ISS), "wrong audience"),
        "wrong-issuer": (hs256(admin=True, aud=AUD, iss="https://evil.example"), "wrong issuer"),
        "rs256-wrong-audience": (pair.sign(admin=True, aud="other", iss=ISS), "wrong audience"),
        "garbage": ("this-is-not-a-jwt", "malformed"),
    }


def send(
    servers: Servers, method: str, url: str, kwargs: dict[str, Any], token: str | None, *, rsa_only: bool = False
) -> httpx.Response:
    kwargs = dict(kwargs)
    headers = dict(kwargs.get("headers", {}))
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    kwargs["headers"] = headers
    if url.endswith("events") and method == "GET":
        kwargs["params"] = {**kwargs.get("params", {}), **STREAM_END}
    server = servers.rsa_only if rsa_only else servers.both
    return servers.client.request(method, server.url + url, **kwargs)


def error_of(response: httpx.Response) -> dict[str, str]:
    body: dict[str, str] = response.json()["error"]
    return body


@pytest.mark.parametrize(("name", "method", "url", "kwargs", "named", "status"), KINDS, ids=IDS)
def test_no_token_is_401_with_the_challenge(servers, name, method, url, kwargs, named, status):
    before = servers.subscribes
    response = send(servers, method, url, kwargs, None)
    if name == "topics":  # needs no token: lists what anonymous may subscribe (nothing here)
        assert response.status_code == 200 and response.json() == {"access": "anonymous", "topics": []}
        return
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"] == REALM
    assert error_of(response)["code"] == "unauthorized" and named in error_of(response)["message"]
    assert servers.subscribes == before


@pytest.mark.parametrize(("name", "method", "url", "kwargs", "named", "status"), KINDS, ids=IDS)
def test_every_bad_token_is_401_naming_the_reason(servers, name, method, url, kwargs, named, status):
    before = servers.subscribes
    for case, (token, reason) in bad_tokens(servers.pair).items():
        response = send(servers, method, url, kwargs, token)
        assert response.status_code == 401, (case, response.text)
        assert response.headers["www-authenticate"] == (
            f'{REALM}, error="invalid_token", error_description="the token is invalid: {reason}"'
        ), case
        assert error_of(response)["code"] == "unauthorized" and reason in error_of(response)["message"], case
    assert servers.subscribes == before  # no refused stream reached the hub


@pytest.mark.parametrize(("name", "method", "url", "kwargs", "named", "status"), KINDS, ids=IDS)
def test_valid_token_outside_its_grants_is_403_naming_the_topic(servers, name, method, url, kwargs, named, status):
    before = servers.subscribes
    token = hs256(subscribe=["other.*"], publish=["other.x"], **good())
    response = send(servers, method, url, kwargs, token)
    if name == "topics":  # the list is filtered, not refused
        assert response.status_code == 200 and response.json() == {"access": "token", "topics": []}
        return
    assert response.status_code == 403, response.text
    assert error_of(response)["code"] == "forbidden" and named in error_of(response)["message"]
    assert response.headers["www-authenticate"].startswith(f'{REALM}, error="insufficient_scope"')
    assert servers.subscribes == before


@pytest.mark.parametrize(("name", "method", "url", "kwargs", "named", "status"), KINDS, ids=IDS)
def test_valid_token_with_grants_passes(servers, name, method, url, kwargs, named, status):
    token = hs256(subscribe=["s.*"], publish=["s.one"], admin=name == "metrics", **good())
    response = send(servers, method, url, kwargs, token)
    assert response.status_code == status, response.text
    rs256 = servers.pair.sign(subscribe=["s.*"], publish=["s.one"], admin=name == "metrics", **good())
    assert send(servers, method, url, kwargs, rs256).status_code == status


def test_hs256_signed_with_the_rsa_public_key_is_refused_when_only_rs256_is_configured(servers):
    token = forge({"alg": "HS256", "typ": "JWT"}, claims(admin=True, **good()), servers.pair.public_pem)
    response = send(servers, "POST", "/topics/s.one/events", {"json": 1}, token, rsa_only=True)
    assert response.status_code == 401
    assert "unsupported algorithm" in error_of(response)["message"] and "RS256" in error_of(response)["message"]
    # The same claims signed with the private key pass: the refusal was the algorithm, not the claims.
    signed = jwt.encode(claims(admin=True, **good()), servers.pair.private, algorithm="RS256")
    assert send(servers, "POST", "/topics/s.one/events", {"json": 1}, signed, rsa_only=True).status_code == 201


def test_refusals_leave_the_hub_without_subscriptions(servers):
    hub = servers.both.app.state.hub
    before = servers.subscribes
    for _name, method, url, kwargs, _, _ in KINDS:
        if method == "GET" and url.endswith("events"):
            send(servers, method, url, kwargs, None)
            send(servers, method, url, kwargs, hs256(subscribe=["nope"], **good()))
    assert servers.subscribes == before
    assert hub.subscriber_count("s.one") == 0 and hub.subscriber_count("s.*") == 0


@pytest.mark.parametrize("fmt", ["sse", "ndjson"])
def test_stream_ends_at_the_tokens_exp_with_token_expired_and_resumes_with_a_fresh_token(servers, fmt):
    server = servers.both
    publisher = {"Authorization": f"Bearer {hs256(publish=['exp.t'], **good())}"}
    exp = int(time.time()) + 2
    short = jwt.encode({**claims(subscribe=["exp.t"], **good()), "exp": exp}, SECRET, algorithm="HS256")
    with httpx.Client(base_url=server.url, timeout=10) as client:
        first = client.post("/topics/exp.t/events", json={"n": 0}, headers=publisher).json()["id"]
        with client.stream(
            "GET",
            "/topics/exp.t/events",
            params={"format": fmt, "tail": 1},
            headers={"Authorization": f"Bearer {short}"},
        ) as response:
            assert response.status_code == 200
            text = "".join(response.iter_text())
        ended = time.time()
        assert exp - 0.1 <= ended <= exp + 1.0, (exp, ended)  # within a second of exp
        if fmt == "ndjson":
            assert orjson.loads(text.splitlines()[-1]) == {"control": "fault", "reason": "token_expired"}
        else:
            assert text.endswith('event: fault\ndata: {"control":"fault","reason":"token_expired"}\n\n')
        missed = client.post("/topics/exp.t/events", json={"n": 1}, headers=publisher).json()["id"]
        fresh = {"Authorization": f"Bearer {hs256(subscribe=['exp.t'], **good())}", "Last-Event-ID": first}
        resumed = client.get("/topics/exp.t/events", params={"format": "ndjson", "max_events": 1}, headers=fresh)
    lines = [orjson.loads(line) for line in resumed.text.splitlines()]
    assert [line["id"] for line in lines if "data" in line] == [missed]


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/docs", "/openapi.json"])
def test_health_and_docs_stay_open_without_and_with_a_bad_token(servers, path):
    for token in (None, "garbage", bad_tokens(servers.pair)["expired"][0]):
        assert send(servers, "GET", path, {}, token).status_code == 200


def test_session_route_over_the_socket(servers):
    assert send(servers, "POST", "/auth/session", {}, None).status_code == 401
    for token, reason in bad_tokens(servers.pair).values():
        refused = send(servers, "POST", "/auth/session", {}, token)
        assert refused.status_code == 401 and reason in error_of(refused)["message"]
    token = hs256(subscribe=["s.*"], **good())
    created = send(servers, "POST", "/auth/session", {}, token)
    assert created.status_code == 204 and created.headers["set-cookie"].startswith(f"broadcaster_token={token};")
    servers.client.cookies.clear()
