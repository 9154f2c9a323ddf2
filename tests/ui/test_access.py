"""The dashboard with access control on, in a real Chromium against uvicorn on a real socket.

Issue 12, acceptance 5: the token prompt, the session cookie (HttpOnly, SameSite=Strict)
that `EventSource` sends, the topics and the inspector on that session, refused streams
reopened, and a 403 message naming a topic outside the grants. The page's own files stay
open (the gate's `STATIC`), so a page without a token can still ask for one.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest
from playwright.async_api import expect

from broadcaster import Settings
from broadcaster.auth import issue_token

from ..support.tokens import SECRET
from .conftest import OpenDashboard

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ROWS = "#inspector-rows > .row"


def _token(**grants: list[str]) -> str:
    return issue_token(SECRET.encode(), ttl_s=300, **grants)  # what `broadcaster token` prints


async def test_the_page_asks_for_a_token_and_works_on_its_session(
    open_dashboard: OpenDashboard, make_settings: Callable[..., Settings]
):
    dashboard = await open_dashboard(make_settings(auth_secret=SECRET))
    page = dashboard.page
    admin = {"Authorization": f"Bearer {_token(publish=['*'])}"}
    async with httpx.AsyncClient(base_url=dashboard.url, timeout=10) as client:
        for topic in ("lab.a", "secret.x"):
            assert (await client.post(f"/topics/{topic}/events", json={"n": 0}, headers=admin)).status_code == 201

        # No token yet: the page says access control is on and asks for one, instead of an empty table.
        await expect(page.locator("#token-form")).to_be_visible()
        await expect(page.locator("#notice-text")).to_contain_text("access control on")
        await expect(page.locator("#topics-table tbody tr")).to_have_count(0)
        # A stream opened without a token is refused with a message naming the topic.
        await page.fill("#inspector-topics", "lab.*")
        await page.click("#inspector-form button[type=submit]")
        await expect(page.locator("#inspector-state")).to_have_attribute("data-state", "failed")
        await expect(page.locator("#inspector-state")).to_contain_text("401")
        await expect(page.locator("#notice-text")).to_contain_text("subscribe to lab.*")
        await dashboard.screenshot("access-token-prompt")

        await page.fill("#token-input", _token(subscribe=["lab.*"], publish=["lab.*"]))
        await page.click("#token-form button[type=submit]")
        await expect(page.locator("#token-form")).to_be_hidden()
        cookies = {c["name"]: c for c in await page.context.cookies()}
        session = cookies["broadcaster_token"]
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Strict"
        assert "broadcaster_token" not in await page.evaluate("document.cookie")  # no script reads it

        # The refused stream reopened on the session; the topics list shows what the token may see.
        await expect(page.locator("#inspector-state")).to_have_attribute("data-state", "open")
        await expect(page.locator('#topics-table tr[data-topic="lab.a"]')).to_be_visible(timeout=3000)
        await expect(page.locator('#topics-table tr[data-topic="secret.x"]')).to_have_count(0)
        assert (await dashboard.model("access"))["state"] == "token"
        await page.click('#topics-table tr[data-topic="lab.a"] button')
        await expect(page.locator("#inspector-state")).to_have_attribute("data-state", "open")
        event_id = (await client.post("/topics/lab.a/events", json={"n": 1}, headers=admin)).json()["id"]
        await expect(page.locator(f"{ROWS}.event").first.locator(".id")).to_have_text(event_id, timeout=2000)

        # A topic outside the grants: a 403 that names it, in the stream's state and in the notice.
        await page.fill("#inspector-topics", "secret.x")
        await page.click("#inspector-form button[type=submit]")
        await expect(page.locator("#inspector-state")).to_have_attribute("data-state", "failed")
        await expect(page.locator("#inspector-state")).to_contain_text("403 forbidden")
        await expect(page.locator("#inspector-state")).to_contain_text("secret.x")
        await expect(page.locator("#notice-text")).to_contain_text("Not allowed: 403 forbidden")
        await expect(page.locator("#notice-text")).to_contain_text("secret.x")
        await expect(page.locator("#token-form")).to_be_visible()  # another token can be entered
        await dashboard.screenshot("access-forbidden")

        # The cookie gone (as when the token expires): the next topics refresh asks again.
        await page.click("#notice-dismiss")
        await page.context.clear_cookies()
        await expect(page.locator("#notice-text")).to_contain_text("access control on", timeout=4000)
        await expect(page.locator("#token-form")).to_be_visible()


async def test_a_refused_token_is_shown_and_sets_no_cookie(
    open_dashboard: OpenDashboard, make_settings: Callable[..., Settings]
):
    dashboard = await open_dashboard(make_settings(auth_secret=SECRET))
    page = dashboard.page
    await expect(page.locator("#token-form")).to_be_visible()
    await page.fill("#token-input", issue_token(b"another-secret-0123456789-abcdefghij", subscribe=["*"]))
    await page.click("#token-form button[type=submit]")
    await expect(page.locator("#notice-text")).to_contain_text("The token was refused: 401 unauthorized")
    await expect(page.locator("#token-form")).to_be_visible()
    assert [c["name"] for c in await page.context.cookies()] == []


async def test_the_pages_files_need_no_grant(make_settings: Callable[..., Settings]):
    from ..support.servers import thread_server

    with thread_server(make_settings(auth_secret=SECRET)) as server:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            bad = {"Authorization": "Bearer not-a-token"}
            for headers in ({}, bad):  # STATIC never reads a token: not even a broken one refuses the page
                for path in ("/ui", "/ui/app.js", "/ui/access.js", "/ui/style.css"):
                    answer = await client.get(path, headers=headers)
                    assert answer.status_code == 200, (path, headers, answer.text)
                root = await client.get("/", headers=headers)
                assert root.status_code in (307, 308) and root.headers["location"].endswith("ui")
            assert (await client.get("/topics")).json() == {"access": "anonymous", "topics": []}
            refused = await client.get("/topics", headers=bad)
            assert refused.status_code == 401 and refused.json()["error"]["code"] == "unauthorized"
            assert (await client.get("/events?topic=lab.a")).status_code == 401
