"""Sensor: realistic readings, deterministic with a seed, at the asked rate, bounded by count."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson

from producers import Sensor

from ..support.waiting import eventually


class Collect:
    def __init__(self) -> None:
        self.readings: list[dict[str, Any]] = []
        self.topics: set[str] = set()

    async def __call__(self, topic: str, data: bytes) -> None:
        self.topics.add(topic)
        self.readings.append(orjson.loads(data))


async def test_sensor_readings_are_realistic_and_deterministic_with_a_seed():
    first, second = Collect(), Collect()
    await Sensor("sensors.lab", rate=10_000, count=400, sensors=4, seed=7).run(first)
    await Sensor("sensors.lab", rate=10_000, count=400, sensors=4, seed=7).run(second)
    assert len(first.readings) == 400 and first.topics == {"sensors.lab"}
    without_ts = [{k: v for k, v in r.items() if k != "ts"} for r in first.readings]
    assert without_ts == [{k: v for k, v in r.items() if k != "ts"} for r in second.readings]
    by_sensor: dict[str, list[dict[str, Any]]] = {}
    for reading in first.readings:
        by_sensor.setdefault(reading["sensor"], []).append(reading)
    assert sorted(by_sensor) == ["sensor-01", "sensor-02", "sensor-03", "sensor-04"]
    bounds = {"temperature": (-10, 45, "°C"), "humidity": (5, 95, "%"), "pressure": (950, 1060, "hPa")}
    bounds["co2"] = (380, 3000, "ppm")
    for readings in by_sensor.values():
        assert [r["seq"] for r in readings] == list(range(1, 101))
        low, high, unit = bounds[readings[0]["kind"]]
        assert all(low <= r["value"] <= high and r["unit"] == unit for r in readings)
        assert all(0 < r["battery"] <= 1 and isinstance(r["ts"], int) for r in readings)
    different = Collect()
    await Sensor("sensors.lab", rate=10_000, count=10, sensors=4, seed=8).run(different)
    assert [r["value"] for r in different.readings] != [r["value"] for r in first.readings[:10]]


async def test_sensor_keeps_to_its_rate():
    collect = Collect()
    started = time.monotonic()
    await Sensor("s", rate=200, count=40).run(collect)
    elapsed = time.monotonic() - started
    assert len(collect.readings) == 40
    assert 39 / 200 * 0.9 <= elapsed < 2.0, elapsed


async def test_sensor_without_count_runs_until_cancelled_and_stops_promptly():
    collect = Collect()
    task = asyncio.create_task(Sensor("s", rate=1000).run(collect))
    await eventually(lambda: len(collect.readings) >= 20)
    task.cancel()
    async with asyncio.timeout(1):
        await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
