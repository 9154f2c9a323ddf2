"""Charts and latest-value tiles in a real Chromium, fed by the sensor producer.

Issue 12, acceptance 3 (and the latest tiles' screenshot of acceptance 7).
"""

from __future__ import annotations

import io
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
from PIL import Image
from playwright.async_api import expect

from .conftest import Dashboard

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

SENSORS = ["sensor-01", "sensor-02", "sensor-03", "sensor-04"]
# What each sensor measures (in turn) and the producer's physical bounds for it.
RANGES = {"sensor-01": (-10, 45), "sensor-02": (5, 95), "sensor-03": (950, 1060), "sensor-04": (380, 3000)}
UNITS = {"sensor-01": "°C", "sensor-02": "%", "sensor-03": "hPa", "sensor-04": "ppm"}


def _sensor_producer(url: str) -> subprocess.Popen[bytes]:
    """`python -m producers sensor`, as a user runs it: 4 sensors, 40 readings/s, bounded."""
    args = ["--target", url, "--topic", "sensors.lab", "--rate", "40", "--sensors", "4", "--count", "2400"]
    command = [sys.executable, "-m", "producers", "sensor", *args, "--seed", "7"]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _pixels_near(png: bytes, colors: list[str], tolerance: int = 40) -> list[int]:
    """For each CSS colour `#rrggbb`, how many pixels of the image are within `tolerance` of it."""
    targets = [tuple(int(color.strip()[i : i + 2], 16) for i in (1, 3, 5)) for color in colors]
    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    counts = [0] * len(targets)
    for offset in range(0, len(data), 3):
        r, g, b = data[offset], data[offset + 1], data[offset + 2]
        for index, (tr, tg, tb) in enumerate(targets):
            if abs(r - tr) <= tolerance and abs(g - tg) <= tolerance and abs(b - tb) <= tolerance:
                counts[index] += 1
    return counts


@pytest.fixture
def producer_for() -> Iterator[list[subprocess.Popen[bytes]]]:
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        process.kill()
        process.wait(5)


async def _chart(dashboard: Dashboard) -> None:
    page = dashboard.page
    await page.fill("#charts-topics", "sensors.lab")
    await page.click("#charts-form button[type=submit]")
    await dashboard.until("broadcasterUI.charts.model().keys.includes('sensor')")
    model = await dashboard.model("charts")
    assert {"value", "seq", "battery", "ts"} <= set(model["fields"])
    assert {"sensor", "kind", "unit"} <= set(model["keys"])
    await page.select_option("#charts-field", label="value")
    await page.select_option("#charts-series", label="sensor")
    await dashboard.until("broadcasterUI.charts.model().series.filter((s) => s.points >= 10).length === 4")


async def test_charts_draw_one_line_per_sensor_and_tiles_show_latest_values(open_dashboard, producer_for):
    dashboard = await open_dashboard(path="/ui#charts")
    page = dashboard.page
    producer_for.append(_sensor_producer(dashboard.url))
    async with httpx.AsyncClient(base_url=dashboard.url, timeout=10) as client:
        quiet = await client.post("/topics/quiet.battery/events", json={"value": 3.3, "unit": "V"})
    await _chart(dashboard)

    model = await dashboard.model("charts")
    assert (model["field"], model["seriesBy"]) == ("value", "sensor")
    assert sorted(line["name"] for line in model["series"]) == SENSORS
    for line in model["series"]:
        low, high = RANGES[line["name"]]
        assert low <= line["last"] <= high, line
    await expect(page.locator("#charts-legend li")).to_have_text(SENSORS)
    # The canvas shows every series: each line's colour is drawn.
    png = await page.locator("#charts-canvas").screenshot()
    drawn = _pixels_near(png, [line["color"] for line in model["series"]])
    assert min(drawn) > 50, f"pixels of each series' colour: {drawn}"
    await dashboard.screenshot("charts-light-laptop", "#panels")
    await dashboard.screenshot("dashboard")  # the whole page: docs/dashboard.png comes from here

    await dashboard.tab("latest")
    await page.fill("#latest-topics", "sensors.lab quiet.battery")
    await page.click("#latest-form button[type=submit]")
    tile = page.locator("#latest-tiles .tile", has_text="quiet.battery")
    # Nothing is published there any more: the tile comes from the retained last event (tail=1).
    await expect(tile.locator(".value")).to_have_text('{"value":3.3,"unit":"V"}')
    await expect(tile.locator(".meta")).to_have_text(f"message · {quiet.json()['id']}")
    await dashboard.until(
        "broadcasterUI.latest.model().length === 2 && document.querySelector('#latest-field').length > 1"
    )
    await page.select_option("#latest-field", label="value")
    await expect(tile.locator(".value")).to_have_text("3.3")
    await expect(tile.locator(".unit")).to_have_text("V")
    await dashboard.until("document.querySelector('#latest-split').length > 1")
    await page.select_option("#latest-split", label="sensor")
    await dashboard.until("broadcasterUI.latest.model().length === 5")
    tiles = {tile["title"]: tile for tile in await dashboard.model("latest")}
    assert set(tiles) == {"quiet.battery", *(f"sensors.lab · {name}" for name in SENSORS)}
    for name in SENSORS:
        tile_model = tiles[f"sensors.lab · {name}"]
        low, high = RANGES[name]
        assert low <= float(tile_model["value"]) <= high and tile_model["unit"] == UNITS[name], tile_model
    await dashboard.screenshot("latest-light-laptop", "#panels")
    assert dashboard.problems == []
