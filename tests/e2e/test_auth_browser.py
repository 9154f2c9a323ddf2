"""Access control in a real headless Chromium (Playwright, Debian's binary): the cookie, expiry, resume, CORS.

Same origin: the page gets its cookie through `POST /auth/session`, subscribes with
`EventSource`, and keeps receiving while its token expires: the stream ends with
`token_expired`, the page sets a fresh cookie, and the browser's own reconnect resumes
with `Last-Event-ID`. Cross origin: pages served from other local ports use the server
with `withCredentials` and `fetch` when their origin is allowed, and the browser refuses
both when it is not.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import orjson
import pytest
from fastapi.responses import HTMLResponse, PlainTextResponse
from playwright.async_api import Browser, Page

from broadcaster import Settings
from broadcaster.http.gate import Decision, GateRequest
from broadcaster.http.policies import policies_for
from broadcaster.http.security.policy import FAULT_CONTROL

from ..conftest import TEST_SETTINGS
from ..support.browser import launched_chromium
from ..support.servers import ThreadServer
from ..support.tokens import SECRET, claims, hs256

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

RETRY_MS = 1000  # the browser's reconnect delay: time for the page to set its fresh cookie first


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launched_chromium() as browser:  # skips locally without chromium, fails under CI=true
        yield browser


async def until(page: Page, condition: str, timeout_s: float = 10) -> Any:
    return await page.wait_for_function(f"() => {condition}", timeout=timeout_s * 1000)


SAME_ORIGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>auth</title></head><body><script>
window.log = {events: [], opens: 0, expired: 0, lives: [], sessions: [], failures: []};
async function session() {
  const token = await (await fetch("/test-token")).text();   // the page's own backend hands it a token
  const answer = await fetch("/auth/session", {method: "POST", headers: {Authorization: "Bearer " + token}});
  log.sessions.push(answer.status);
}
session().then(() => {
  const source = new EventSource("/topics/feed/events");
  source.onopen = () => { log.opens++; };
  source.onmessage = (e) => log.events.push({id: e.lastEventId, n: JSON.parse(e.data).n});
  source.addEventListener("live", (e) => log.lives.push(JSON.parse(e.data)));
  source.onerror = () => { if (source.readyState === 2) log.failures.push("gave up"); };  // e.g. a 401 on reconnect
  source.addEventListener("FAULT", (e) => {
    if (JSON.parse(e.data).reason === "token_expired") { log.expired++; session(); }  // fresh cookie, then reconnect
  });
});
</script></body></html>""".replace("FAULT", FAULT_CONTROL)


async def test_browser_cookie_session_token_expiry_and_resume_exactly_once(browser, make_settings):
    """Acceptance 3: every event exactly once across the token's expiry, through the browser's own reconnect."""
    settings = make_settings(auth_secret=SECRET, retry_ms=RETRY_MS)
    server = ThreadServer(settings)
    issued: list[float] = []

    def test_token() -> PlainTextResponse:
        # The first token lives 3 s, so it expires while the page is subscribed; later ones an hour.
        exp = int(time.time()) + (3 if not issued else 3600)
        issued.append(exp)
        token = jwt.encode({**claims(subscribe=["feed"]), "exp": exp}, SECRET, algorithm="HS256")
        return PlainTextResponse(token)

    server.app.add_api_route("/auth-test", lambda: HTMLResponse(SAME_ORIGIN_PAGE), methods=["GET"])
    server.app.add_api_route("/test-token", test_token, methods=["GET"])
    server.start()
    try:
        page = await browser.new_page()
        publisher = {"Authorization": f"Bearer {hs256(publish=['feed'])}"}
        published: list[str] = []
        async with asyncio.timeout(30), httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            await page.goto(f"{server.url}/auth-test")
            await until(page, "log.opens === 1")
            cookies = await page.context.cookies()
            assert [(c["name"], c["httpOnly"], c["sameSite"]) for c in cookies] == [
                ("broadcaster_token", True, "Strict")
            ]
            assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script reads the token
            deadline = issued[0] + RETRY_MS / 1000 + 1.0  # past the expiry and the reconnect
            n = 0
            while time.time() < deadline or n < 10:
                answer = await client.post("/topics/feed/events", json={"n": n}, headers=publisher)
                published.append(answer.json()["id"])
                n += 1
                await asyncio.sleep(0.05)  # pacing the producer, so events also come while the page is away
            await until(page, f"log.events.length >= {len(published)}")
        log = await page.evaluate("log")
    finally:
        server.stop()
    assert [event["id"] for event in log["events"]] == published  # every event, exactly once, in order
    assert [event["n"] for event in log["events"]] == list(range(len(published)))
    assert log["expired"] == 1 and log["opens"] == 2 and log["failures"] == []
    assert log["sessions"] == [204, 204] and len(issued) == 2
    # The reconnect carried Last-Event-ID: what was published while the page was away came as a replay.
    assert len(log["lives"]) == 1 and log["lives"][0]["replayed"] > 0


class PageServer:
    """A static page on 127.0.0.1:<free port>: a second origin, as a dashboard hosted elsewhere is.

    `html` may be set after the port is known (the API's settings need this origin first).
    """

    def __init__(self) -> None:
        self.html = ""
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = owner.html.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, name="page-server", daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def __enter__(self) -> PageServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


CROSS_ORIGIN_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>cross</title></head><body><script>
const API = "API_URL", TOKEN = "TOKEN_VALUE";
window.log = {events: [], opens: 0, streamError: null, publish: null, session: null};
(async () => {
  try {
    const answer = await fetch(API + "/auth/session",
      {method: "POST", credentials: "include", headers: {Authorization: "Bearer " + TOKEN}});
    log.session = answer.status;
  } catch (e) { log.session = "refused: " + e.name; }
  const source = new EventSource(API + "/topics/cross/events", {withCredentials: true});
  source.onopen = async () => {
    log.opens++;
    try {
      const answer = await fetch(API + "/topics/cross/events", {method: "POST", credentials: "include",
        headers: {"Content-Type": "application/json", Authorization: "Bearer " + TOKEN}, body: '{"from": "page"}'});
      log.publish = answer.status;
    } catch (e) { log.publish = "refused: " + e.name; }
  };
  source.onmessage = (e) => log.events.push(JSON.parse(e.data));
  source.onerror = () => { if (source.readyState === 2) log.streamError = "closed"; };
  setTimeout(async () => {  // the page fails to stream: try the publish anyway, so the test sees both refusals
    if (log.opens) return;
    try {
      const answer = await fetch(API + "/topics/cross/events", {method: "POST", credentials: "include",
        headers: {"Content-Type": "application/json", Authorization: "Bearer " + TOKEN}, body: '{"from": "page"}'});
      log.publish = answer.status;
    } catch (e) { log.publish = "refused: " + e.name; }
  }, 500);
})();
</script></body></html>"""


class Seen:
    """A first gate policy that records each request's method and path (preflights never reach a later one)."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    async def admit(self, request: GateRequest, decision: Decision) -> Decision:
        self.requests.append((request.method, request.path))
        return decision


@pytest.fixture
def cross_origin() -> Iterator[tuple[PageServer, PageServer, ThreadServer, Seen]]:
    with PageServer() as allowed, PageServer() as other:
        settings = Settings(**TEST_SETTINGS, auth_secret=SECRET, cors_origins=(allowed.origin,))
        seen = Seen()
        api = ThreadServer(settings, policies=[seen, *policies_for(settings)])
        token = hs256(subscribe=["cross"], publish=["cross"])
        allowed.html = other.html = CROSS_ORIGIN_PAGE.replace("API_URL", api.url).replace("TOKEN_VALUE", token)
        api.start()
        try:
            yield allowed, other, api, seen
        finally:
            api.stop()


async def _open(browser: Browser, page_server: PageServer) -> Page:
    page = await browser.new_page()
    await page.goto(f"{page_server.origin}/")
    return page


async def test_browser_cross_origin_allowed_streams_with_credentials_and_publishes_after_a_preflight(
    browser, cross_origin
):
    allowed, _, api, seen = cross_origin
    page = await _open(browser, allowed)
    await until(page, "log.events.length === 1")
    log = await page.evaluate("log")
    assert log["session"] == 204 and log["opens"] == 1 and log["publish"] == 201
    assert log["events"] == [{"from": "page"}]
    assert ("OPTIONS", "/auth/session") in seen.requests and ("OPTIONS", "/topics/cross/events") in seen.requests


async def test_browser_cross_origin_not_allowed_is_refused_by_the_browser(browser, cross_origin):
    _, other, api, seen = cross_origin
    page = await _open(browser, other)
    await until(page, "log.streamError !== null && log.publish !== null && log.session !== null")
    log = await page.evaluate("log")
    assert log["opens"] == 0 and log["streamError"] == "closed"  # EventSource gave up: no CORS headers
    assert log["session"] == "refused: TypeError" and log["publish"] == "refused: TypeError"  # preflights refused
    assert ("OPTIONS", "/topics/cross/events") in seen.requests
    admin = {"Authorization": f"Bearer {hs256(admin=True)}"}
    async with httpx.AsyncClient(base_url=api.url, timeout=10) as client:
        history = await client.get("/topics/cross/history", headers=admin)
    assert [orjson.loads(line)["data"] for line in history.text.splitlines()] == []  # nothing was published
