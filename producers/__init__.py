"""Producers: event sources, and the targets they publish to.

A producer depends on a `Publish` callable (`async (topic, data) -> None`), not on
a server. A target is such a callable with a bounded buffer, batching and
retries behind it: `HttpTarget` streams NDJSON POSTs to a broadcaster server,
`RedisTarget` publishes straight into Redis through the server's own atomic
script.

```python
async with HttpTarget("http://127.0.0.1:8000") as target:
    await Sensor("sensors.demo", rate=50, count=500).run(target.publish)
print(target.stats)
```
"""

from __future__ import annotations

from broadcaster import Publish

from ._base import Backoff, Overflow, Producer, Target, TargetStats
from ._exceptions import InvalidData, ProducerError, TargetClosed, TargetConfigError, TargetRejected, TargetUnavailable
from ._targets import target_from_url
from .http import HttpTarget
from .logtail import LogTail
from .redis import RedisTarget
from .sensor import Sensor
from .stdin import Stdin

__all__ = [
    "Backoff",
    "HttpTarget",
    "InvalidData",
    "LogTail",
    "Overflow",
    "Producer",
    "ProducerError",
    "Publish",
    "RedisTarget",
    "Sensor",
    "Stdin",
    "Target",
    "TargetClosed",
    "TargetConfigError",
    "TargetRejected",
    "TargetStats",
    "TargetUnavailable",
    "target_from_url",
]
