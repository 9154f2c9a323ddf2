"""Sensor: simulated readings from several sensors, at a steady rate.

Each sensor measures one quantity (temperature, humidity, pressure, CO2, in
turn) that drifts as a bounded random walk around a realistic level, with a
slowly draining battery. With a `seed`, the readings (everything but `ts`) are
the same on every run.

```json
{"sensor":"sensor-02","kind":"humidity","value":48.21,"unit":"%","seq":17,"battery":0.997,"ts":1795384983745}
```
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from broadcaster import Publish

DEFAULT_RATE = 10.0
DEFAULT_SENSORS = 3

# kind, unit, typical level, lowest, highest, step size, decimals
_KINDS: tuple[tuple[str, str, float, float, float, float, int], ...] = (
    ("temperature", "°C", 21.0, -10.0, 45.0, 0.08, 2),
    ("humidity", "%", 45.0, 5.0, 95.0, 0.3, 2),
    ("pressure", "hPa", 1013.0, 950.0, 1060.0, 0.05, 1),
    ("co2", "ppm", 600.0, 380.0, 3000.0, 6.0, 0),
)


@dataclass(slots=True)
class _Sensor:
    name: str
    kind: str
    unit: str
    level: float
    low: float
    high: float
    step: float
    decimals: int
    value: float
    battery: float = 1.0
    seq: int = 0

    def read(self, rng: random.Random, ts: int) -> dict[str, Any]:
        # A random walk pulled back toward the typical level, kept within physical bounds.
        pull = (self.level - self.value) * 0.02
        self.value = min(self.high, max(self.low, self.value + pull + rng.gauss(0.0, self.step)))
        self.battery = max(0.0, self.battery - rng.uniform(0.0, 0.0002))
        self.seq += 1
        value: float = round(self.value, self.decimals) if self.decimals else float(round(self.value))
        return {
            "sensor": self.name,
            "kind": self.kind,
            "value": value,
            "unit": self.unit,
            "seq": self.seq,
            "battery": round(self.battery, 4),
            "ts": ts,
        }


class Sensor:
    """Publish `count` readings (None: until cancelled) at `rate` per second, spread over `sensors` sensors.

    Raises `ValueError` for a rate, count or number of sensors below 1 (count may be 0).
    """

    def __init__(
        self,
        topic: str,
        *,
        rate: float = DEFAULT_RATE,
        count: int | None = None,
        sensors: int = DEFAULT_SENSORS,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be greater than 0, got {rate}")
        if sensors < 1:
            raise ValueError(f"sensors must be at least 1, got {sensors}")
        if count is not None and count < 0:
            raise ValueError(f"count must not be negative, got {count}")
        self.topic = topic
        self.rate = rate
        self.count = count
        self.seed = seed
        self.clock = clock
        self.published = 0
        self._rng = random.Random(seed)
        self._sensors = [self._make(n) for n in range(sensors)]

    def _make(self, n: int) -> _Sensor:
        kind, unit, level, low, high, step, decimals = _KINDS[n % len(_KINDS)]
        start = level + self._rng.uniform(-5, 5) * step * 10
        return _Sensor(f"sensor-{n + 1:02d}", kind, unit, level, low, high, step, decimals, start)

    def reading(self) -> dict[str, Any]:
        """The next reading (of the next sensor in turn)."""
        sensor = self._sensors[self.published % len(self._sensors)]
        return sensor.read(self._rng, int(self.clock() * 1000))

    async def run(self, publish: Publish) -> None:
        loop = asyncio.get_running_loop()
        interval = 1.0 / self.rate
        start = loop.time()
        numbers = range(self.count) if self.count is not None else itertools.count()
        for n in numbers:
            # Absolute deadlines: the rate does not drift with the time publish() takes.
            delay = start + n * interval - loop.time()
            if delay > 0.001:
                await asyncio.sleep(delay)
            elif n % 256 == 0:
                await asyncio.sleep(0)  # behind schedule: still let other tasks (and cancellation) in
            await publish(self.topic, orjson.dumps(self.reading()))
            self.published += 1
