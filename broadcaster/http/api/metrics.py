"""Prometheus text exposition of the process's counters."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..._hub import Hub
    from ..limits.admission import Admission
    from ..streams.streaming import StreamMonitor


def render_metrics(hub: Hub, monitor: StreamMonitor, admission: Admission | None = None) -> str:
    m = hub.metrics
    rows = [
        ("broadcaster_streams", "gauge", "Open subscriber streams", len(monitor.streams)),
        ("broadcaster_subscriptions", "gauge", "Live subscriptions in the hub", hub.subscriptions),
        ("broadcaster_topics", "gauge", "Topics and patterns with local subscribers", hub.keys),
        ("broadcaster_published_total", "counter", "Events published through this process", m.published),
        ("broadcaster_received_total", "counter", "Events received from the backend", m.received),
        ("broadcaster_evicted_total", "counter", "Subscribers disconnected for a full queue", m.evicted),
        ("broadcaster_dropped_total", "counter", "Events dropped by drop-oldest/drop-newest", hub.dropped),
        ("broadcaster_send_timeouts_total", "counter", "Streams closed for send_timeout", monitor.aborted),
        ("broadcaster_healthy", "gauge", "1 while the event pump runs", int(hub.healthy)),
        ("broadcaster_tasks", "gauge", "asyncio tasks in this process", len(asyncio.all_tasks())),
    ]
    if admission is not None:
        rows.append(
            ("broadcaster_admitted_streams", "gauge", "Streams counted by max_streams", admission.streams.total)
        )
        rows.append(("broadcaster_max_streams", "gauge", "The max_streams cap in force", admission.max_streams))
    lines = []
    for name, kind, help_text, value in rows:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    if admission is not None:
        name = "broadcaster_refused_total"
        lines += [f"# HELP {name} Requests refused by an admission cap, by error code", f"# TYPE {name} counter"]
        lines += [f'{name}{{code="{code}"}} {count}' for code, count in sorted(admission.refused.items())]
    return "\n".join(lines) + "\n"
