"""Prometheus text exposition of the process's counters."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .._hub import Hub
    from .streaming import StreamMonitor


def render_metrics(hub: Hub, monitor: StreamMonitor) -> str:
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
    ]
    lines = []
    for name, kind, help_text, value in rows:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {value}"]
    return "\n".join(lines) + "\n"
