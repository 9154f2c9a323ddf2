"""The dashboard in a real Chromium: it loads clean, lists topics, publishes, and is usable.

Issue 12, acceptance 1, 4 and 7 (a screenshot of each panel, in light at a laptop's width
and in dark at a phone's), and the usability items: keyboard, labels, themes, widths.
"""

from __future__ import annotations

import asyncio

import httpx
import orjson
import pytest
from playwright.async_api import expect

from .conftest import Dashboard, OpenDashboard

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

PHONE = {"width": 390, "height": 844}


async def _luminance(dashboard: Dashboard, selector: str) -> float:
    """Relative luminance (0 black .. 1 white) of an element's computed background."""
    return await dashboard.page.evaluate(
        """(selector) => {
          const [r, g, b] = getComputedStyle(document.querySelector(selector)).backgroundColor
            .match(/[0-9.]+/g).slice(0, 3).map(Number);
          return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
        }""",
        selector,
    )


async def test_dashboard_loads_clean_and_lists_a_new_topic_with_its_subscribers(open_dashboard: OpenDashboard):
    dashboard = await open_dashboard(path="/")  # the server's front page redirects to /ui
    page = dashboard.page
    assert page.url == f"{dashboard.url}/ui"
    await expect(page.locator("#topics-status")).to_have_attribute("data-state", "ok")
    async with (
        httpx.AsyncClient(base_url=dashboard.url, timeout=10) as client,
        client.stream("GET", "/topics/first.topic/events") as stream,
    ):
        assert stream.status_code == 200  # subscribed: the response starts after the subscription
        answer = await client.post("/topics/first.topic/events", json={"hello": "world"})
        assert answer.status_code == 201
        row = page.locator('#topics-table tr[data-topic="first.topic"]')
        await expect(row).to_be_visible(timeout=3000)
        subscribers, rate, retained = row.locator("td").nth(0), row.locator("td").nth(1), row.locator("td").nth(2)
        await expect(subscribers).to_have_text("1", timeout=3000)
        await expect(retained).to_have_text("1")
        await expect(row.locator(".id")).to_have_text(f"last {answer.json()['id']}")
        assert float(await rate.text_content() or "x") >= 0
        # Refreshes update the row in place (no flicker, focus and scroll kept): same element after one.
        await row.evaluate("(tr) => { tr.keptAcrossRefresh = true; }")
        status = await page.locator("#topics-status").text_content()
        await expect(page.locator("#topics-status")).not_to_have_text(status or "", timeout=3000)
        assert await row.evaluate("(tr) => tr.keptAcrossRefresh === true")
        # The filter hides what does not match, by substring or by * pattern.
        await page.fill("#topics-filter", "nothing-like-it")
        await expect(row).to_be_hidden()
        await page.fill("#topics-filter", "first.*")
        await expect(row).to_be_visible()
        await dashboard.screenshot("topics-light-laptop", "#topics")
    assert await _luminance(dashboard, "body") > 0.8  # the light theme
    assert dashboard.problems == []


async def test_publish_form_publishes_and_shows_the_servers_messages(open_dashboard: OpenDashboard):
    dashboard = await open_dashboard(path="/ui#publish")
    page = dashboard.page
    result = page.locator("#publish-result")
    async with (
        httpx.AsyncClient(base_url=dashboard.url, timeout=10) as client,
        client.stream("GET", "/topics/form.out/events") as stream,
    ):
        lines = stream.aiter_lines()
        await page.fill("#publish-topic", "form.out")
        await page.fill("#publish-type", "note")
        await page.fill("#publish-data", '{"text": "from the form", "n": 1}')
        await expect(page.locator("#publish-validation")).to_have_text("valid JSON")
        await page.click("#publish-form button[type=submit]")
        await expect(result).to_have_attribute("data-state", "ok")
        published = await result.get_attribute("data-id")
        assert published and (await result.text_content() or "").startswith(f"published {published} on form.out")
        async with asyncio.timeout(5):
            received = orjson.loads(await anext(lines))
            while "control" in received:  # keepalives
                received = orjson.loads(await anext(lines))
        assert received["id"] == published
        assert (received["topic"], received["type"], received["data"]) == (
            "form.out",
            "note",
            {"text": "from the form", "n": 1},
        )

        # Invalid JSON: the editor says so, and the form shows the server's own message.
        bad_json = '{"text": "unfinished", '
        await page.fill("#publish-data", bad_json)
        await expect(page.locator("#publish-validation")).to_contain_text("not valid JSON")
        await expect(page.locator("#publish-data")).to_have_attribute("aria-invalid", "true")
        await page.keyboard.press("Control+Enter")  # the editor's shortcut submits the form
        await expect(result).to_have_attribute("data-state", "failed")
        refusal = await client.post(
            "/topics/form.out/events", content=bad_json, headers={"Content-Type": "application/json"}
        )
        assert refusal.status_code == 400
        await expect(result).to_have_text(f"refused: 400 invalid_json: {refusal.json()['error']['message']}")

        # A bad topic: the server's message names it.
        await page.fill("#publish-data", "21.5")
        await page.fill("#publish-topic", "bad topic!")
        await page.click("#publish-form button[type=submit]")
        refusal = await client.post("/topics/bad topic!/events", json=21.5)
        assert refusal.status_code == 422
        message = refusal.json()["error"]["message"]
        assert "'bad topic!'" in message
        await expect(result).to_have_text(f"refused: 422 invalid_topic: {message}")
        await dashboard.screenshot("publish-light-laptop", "#panels")
    assert not [p for p in dashboard.problems if "400" not in p and "422" not in p]


async def test_dashboard_at_phone_width_in_dark_is_labelled_and_keyboard_driven(open_dashboard: OpenDashboard):
    dashboard = await open_dashboard(viewport=PHONE, color_scheme="dark")
    page = dashboard.page
    assert await _luminance(dashboard, "body") < 0.15  # prefers-color-scheme: dark
    unlabelled = await page.evaluate(
        """() => [...document.querySelectorAll("input, select, textarea, button")].filter((control) => {
          const name = control.labels?.length ? control.labels[0].textContent
            : control.getAttribute("aria-label") || (control.tagName === "BUTTON" ? control.textContent : "");
          return !name.trim();
        }).map((control) => control.outerHTML.slice(0, 80))"""
    )
    assert unlabelled == []

    async with httpx.AsyncClient(base_url=dashboard.url, timeout=10) as client:
        for topic in ("kbd.one", "kbd.two"):
            assert (await client.post(f"/topics/{topic}/events", json={"value": 1})).status_code == 201
    first = page.locator('#topics-table tr[data-topic="kbd.one"] button')
    await expect(first).to_be_visible(timeout=3000)
    # Arrows move between topics; Enter opens the focused one in the inspector.
    await first.focus()
    await page.keyboard.press("ArrowDown")
    await expect(page.locator('#topics-table tr[data-topic="kbd.two"] button')).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#inspector-topics")).to_have_value("kbd.two")
    await expect(page.locator("#inspector-state")).to_have_attribute("data-state", "open")

    # Tabs: arrows, Home and End move between panels (ARIA tabs), the #hash follows.
    panels = ["inspector", "charts", "latest", "publish"]
    await page.focus("#tab-inspector")
    for index, name in enumerate(panels):
        await expect(page.locator(f"#tab-{name}")).to_be_focused()
        await expect(page.locator(f"#panel-{name}")).to_be_visible()
        assert page.url.endswith(f"#{name}")
        # Nothing sticks out sideways at a phone's width.
        assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        await dashboard.screenshot(f"{name}-dark-phone")
        if index + 1 < len(panels):
            await page.keyboard.press("ArrowRight")
    await page.keyboard.press("Home")
    await expect(page.locator("#tab-inspector")).to_have_attribute("aria-selected", "true")
    await page.keyboard.press("End")
    await expect(page.locator("#tab-publish")).to_have_attribute("aria-selected", "true")
    assert dashboard.problems == []
