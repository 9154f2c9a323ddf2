"""One PNG per scenario (matplotlib, Agg backend), from the per-target medians."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from loadtest.report import medians


def _series(rows: list[dict[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    pts = sorted((float(r[x]), float(r[y])) for r in rows if r.get(x) is not None and r.get(y) is not None)
    return [p[0] for p in pts], [p[1] for p in pts]


def _lines(ax: Any, by_target: dict[str, list[dict[str, Any]]], x: str, y: str, ylabel: str, log: bool) -> None:
    for target, rows in by_target.items():
        xs, ys = _series(rows, x, y)
        ax.plot(xs, ys, marker="o", label=target)
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)
    if log:
        ax.set_xscale("log")
    ax.legend(fontsize=8)


def _bars(ax: Any, by_target: dict[str, list[dict[str, Any]]], fields: list[str], ylabel: str) -> None:
    targets = list(by_target)
    width = 0.8 / max(1, len(fields))
    for i, field in enumerate(fields):
        vals = []
        for t in targets:
            got = [float(r[field]) for r in by_target[t] if r.get(field) is not None]
            vals.append(max(got) if got else 0.0)
        ax.bar([j + i * width for j in range(len(targets))], vals, width, label=field)
    ax.set_xticks([j + width * (len(fields) - 1) / 2 for j in range(len(targets))], targets, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.grid(True, axis="y", alpha=0.3)
    ax.legend(fontsize=8)


def plot(scenario: str, records: list[dict[str, Any]], path: Path) -> Path | None:
    """Write the scenario's PNG to ``path``; ``None`` if there is nothing to draw."""
    by_target = medians(scenario, records)
    if not by_target:
        return None
    if scenario == "fanout":
        fig, axes = plt.subplots(3, 1, figsize=(8, 10), sharex=True)
        _lines(axes[0], by_target, "offered_rate", "deliveries_per_s", "deliveries/s", True)
        _lines(axes[1], by_target, "offered_rate", "p99_ms", "p99 latency (ms)", True)
        axes[1].set_yscale("log")
        axes[1].axhline(100, color="grey", linestyle="--", linewidth=1)
        _lines(axes[2], by_target, "offered_rate", "server_us_per_delivery", "server CPU us/delivery", True)
        axes[2].set_xlabel("offered events/s (1 topic, N subscribers); x = generator-bound step")
        for steps in by_target.values():
            xs, ys = _series([r for r in steps if r.get("generator_bound")], "offered_rate", "deliveries_per_s")
            axes[0].scatter(xs, ys, marker="x", s=80, color="red", zorder=3)
    elif scenario == "idle":
        fig, ax = plt.subplots(figsize=(8, 5))
        rows = {t: [r for r in rs if not r.get("after_event")] for t, rs in by_target.items()}
        _lines(ax, rows, "connections", "server_rss_mb", "server RSS (MB)", False)
        ax.set_xlabel("idle SSE connections")
    elif scenario == "slow":
        fig, axes = plt.subplots(1, 2, figsize=(11, 5))
        for ax, with_slow in zip(axes, (True, False), strict=True):
            rows = {t: [r for r in rs if bool(r.get("with_slow")) == with_slow] for t, rs in by_target.items()}
            _bars(ax, rows, ["p50_ms", "p99_ms", "rss_growth_mb"], "ms / MB")
            ax.set_title("with 10 never-reading subscribers" if with_slow else "without them")
    elif scenario == "efficiency":
        fig, ax = plt.subplots(figsize=(8, 5))
        _bars(ax, by_target, ["server_us_per_delivery"], "server CPU us per delivery")
    elif scenario == "ingest":
        fig, ax = plt.subplots(figsize=(8, 5))
        _bars(ax, by_target, ["events_per_s"], "accepted events/s (one streamed POST)")
    else:
        fig, ax = plt.subplots(figsize=(8, 5))
        _bars(ax, by_target, ["p50_ms", "p90_ms", "p99_ms"], "publish-to-receive latency (ms)")
    fig.suptitle(f"loadtest {scenario}")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
