"""Results: JSON lines as they come, medians over runs, and the text summary with ratios.

Ratios compare targets from the same invocation only (same machine, same minutes):
``broadcaster/baseline`` and ``broadcaster/nchan`` of each headline number.
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

_GROUP_KEY = {"idle": "level", "slow": "with_slow", "ingest": None}


class Results:
    """Appends every record to ``<out>/<scenario>-<stamp>.jsonl`` and keeps it for the summary."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.records: list[dict[str, Any]] = []
        self._f: IO[str] = path.open("a")

    def emit(self, rec: dict[str, Any]) -> None:
        self.records.append(rec)
        self._f.write(json.dumps(rec, default=str) + "\n")
        self._f.flush()

    def close(self) -> None:
        self._f.close()


def _key(scenario: str, rec: dict[str, Any]) -> Any:
    name = _GROUP_KEY.get(scenario, "step")
    return rec.get(name) if name else 0


def medians(scenario: str, records: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Per target, one record per step (or level) with the median of each number over the runs."""
    groups: dict[str, dict[Any, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for rec in records:
        groups[rec["target"]][_key(scenario, rec)].append(rec)
    out: dict[str, list[dict[str, Any]]] = {}
    for target, by_key in groups.items():
        rows = []
        for recs in by_key.values():
            row = dict(recs[0])
            for k in row:
                vals = [r.get(k) for r in recs]
                if all(isinstance(v, bool) for v in vals):
                    row[k] = any(vals) if k == "generator_bound" else all(vals)
                elif all(isinstance(v, int | float) for v in vals if v is not None):
                    # A run without the number (None, or NaN: no sample) does not vote.
                    nums = [float(v) for v in vals if v is not None and v == v]
                    row[k] = statistics.median(nums) if nums else None
            row["runs"] = len(recs)
            rows.append(row)
        out[target] = rows
    return out


def _per_run_best(recs: list[dict[str, Any]]) -> float:
    by_run: dict[int, float] = defaultdict(float)
    for r in recs:
        by_run[r["run"]] = max(by_run[r["run"]], float(r["deliveries_per_s"]) if r["ok"] else 0.0)
    return statistics.median(by_run.values()) if by_run else 0.0


def _at_rate(recs: list[dict[str, Any]], rate: float, field: str) -> float | None:
    vals = [float(r[field]) for r in recs if r.get("offered_rate") == rate and r.get(field) is not None]
    return statistics.median(vals) if vals else None


def headline(scenario: str, recs: list[dict[str, Any]]) -> dict[str, float | None]:
    """The numbers the issue's targets are stated in, medians over runs."""
    if not recs:
        return {}

    def med(field: str, pick: Iterable[dict[str, Any]] | None = None) -> float | None:
        vals = [float(r[field]) for r in (recs if pick is None else pick) if r.get(field) is not None]
        return statistics.median(vals) if vals else None

    if scenario == "fanout":
        return {
            "sustained_deliveries_per_s": _per_run_best(recs),
            "us_per_delivery_at_100": _at_rate(recs, 100, "server_us_per_delivery"),
            "with_redis_us_per_delivery_at_100": _at_rate(recs, 100, "total_us_per_delivery"),
            "p99_ms_at_100": _at_rate(recs, 100, "p99_ms"),
        }
    if scenario == "efficiency":
        return {
            "server_us_per_delivery": med("server_us_per_delivery"),
            "deliveries_per_s": med("deliveries_per_s"),
            "p99_ms": med("p99_ms"),
            "loss": med("loss"),
        }
    if scenario in ("latency", "smoke"):
        return {"p50_ms": med("p50_ms"), "p99_ms": med("p99_ms"), "loss": med("loss"), "dups": med("dups")}
    if scenario == "idle":
        top = max(int(r.get("connections") or 0) for r in recs if not r.get("after_event"))
        return {
            "kb_per_conn": med(
                "kb_per_conn", [r for r in recs if r.get("connections") == top and not r.get("after_event")]
            )
        }
    if scenario == "slow":
        w = [r for r in recs if r.get("with_slow")]
        wo = [r for r in recs if not r.get("with_slow")]
        p_w, p_wo = med("p99_ms", w), med("p99_ms", wo)
        return {
            "rss_growth_mb": med("rss_growth_mb", w),
            "p99_ms_slow": p_w,
            "p99_ms_no_slow": p_wo,
            "p99_ratio": p_w / p_wo if p_w is not None and p_wo else None,
        }
    return {"events_per_s": med("events_per_s")}


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.3g}"
    return str(v)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [headers, *[[_fmt(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


_STEP_COLS = [
    "offered_rate", "publish_rate", "deliveries_per_s", "loss", "dups", "p50_ms", "p99_ms", "server_cpu_pct",
    "server_us_per_delivery", "gen_cpu_pct", "generator_bound", "other_cpu_pct", "ok",
]  # fmt: skip
_COLS = {
    "idle": ["connections", "server_rss_mb", "kb_per_conn", "redis_kb_per_conn", "failed"],
    "slow": ["with_slow", "rss_growth_mb", "p50_ms", "p99_ms", "loss", "slow_closed_by_server", "server_cpu_pct"],
    "ingest": [
        "sent",
        "accepted",
        "rejected",
        "deliveries",
        "events_per_s",
        "server_cpu_pct",
        "redis_cpu_pct",
        "status",
        "ok",
    ],  # fmt: skip
}


def summary(scenario: str, records: list[dict[str, Any]]) -> str:
    """Per-target step tables (medians) and the headline numbers with ratios."""
    cols = _COLS.get(scenario, _STEP_COLS)
    parts = []
    for target, rows in medians(scenario, records).items():
        parts.append(f"{scenario} / {target} (median of {rows[0]['runs']} run(s))")
        parts.append(table(cols, [[r.get(c) for c in cols] for r in rows]))
    by_target: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_target[r["target"]].append(r)
    heads = {t: headline(scenario, recs) for t, recs in by_target.items()}
    names = sorted({k for h in heads.values() for k in h})
    if names:
        parts.append(f"{scenario}: headline numbers")
        parts.append(table(["target", *names], [[t, *[h.get(n) for n in names]] for t, h in heads.items()]))
    ratios = []
    for mine in [t for t in heads if t.startswith("broadcaster")]:
        # The same server with access control on against off (efficiency runs both side by side).
        others = ["broadcaster"] if mine == "broadcaster-auth" and "broadcaster" in heads else []
        for other in others + [t for t in heads if not t.startswith("broadcaster")]:
            row: list[Any] = [f"{mine}/{other}"]
            for n in names:
                a, b = heads[mine].get(n), heads[other].get(n)
                row.append(a / b if a is not None and b else None)
            ratios.append(row)
    if ratios:
        parts.append(f"{scenario}: ratios (same run)")
        parts.append(table(["ratio", *names], ratios))
    return "\n\n".join(parts)
