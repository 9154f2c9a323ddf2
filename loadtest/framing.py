"""Micro benchmark of the framing hot path, two source trees side by side in one run.

```
python -m loadtest.framing --before /path/to/old/tree --after .      # interleaved, 7 rounds
python -m loadtest.framing --tree .                                   # one tree, one round, JSON
```

What it times is what a delivery costs in framing, on the encoders' public interface
(`encode`, `chunk`, `control`): per fresh event, the first subscriber frames it (SSE,
the SSE envelope of a multi-topic stream, NDJSON) and 999 more take the cached chunk
(the direct-write fast path); then batches of 10 events and a control message (the
writer path); then a multi-topic SSE delivery as the server makes it (with stream
cursors: one encoder per stream, its `id:` built per stream). Each round runs each tree
in its own fresh subprocess (this file, with `PYTHONPATH` set to the tree), alternating,
so both see the same machine state; the report gives each
measure's median over the rounds and the ratio after/before. Bounded: a fixed count of
events per round and a timeout per subprocess.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

EVENTS = 2000
SUBSCRIBERS = 1000
BATCHES = 20_000
DATA = (
    b'{"sensor":"sensor-01","kind":"temperature","value":21.37,"unit":"C","seq":12,"battery":0.9981,"pad":"'
    + (b"x" * 80)
    + b'"}'
)


def _measure() -> dict[str, float]:
    from broadcaster._event import Control, Event
    from broadcaster.http.streams.encoders import NDJSONEncoder, SSEEncoder

    def event(n: int) -> Event:
        # The constructor the backends use today (topic, id, type, data, ts): keep it callable in both trees.
        return Event("bench", f"1700000000000-{n}", "message", DATA, 1700000000000)

    results: dict[str, float] = {}
    for name, encoder in (
        ("sse", SSEEncoder()),
        ("sse_envelope", SSEEncoder(envelope=True)),
        ("ndjson", NDJSONEncoder()),
    ):
        events = [event(n) for n in range(EVENTS)]
        start = time.perf_counter_ns()
        for ev in events:
            for _ in range(SUBSCRIBERS):
                encoder.chunk(ev)
        results[f"{name}_fanout_ns_per_delivery"] = (time.perf_counter_ns() - start) / (EVENTS * SUBSCRIBERS)
        control = Control("gap", {"dropped": 2, "first_id": "1-2", "last_id": "1-3"})
        batch: list[Any] = [event(n) for n in range(10)] + [control]
        start = time.perf_counter_ns()
        for _ in range(BATCHES):
            encoder.encode(batch)
        results[f"{name}_batch_ns_per_item"] = (time.perf_counter_ns() - start) / (BATCHES * len(batch))
        fresh = [event(n) for n in range(EVENTS)]
        start = time.perf_counter_ns()
        for ev in fresh:
            encoder.encode([ev])
        results[f"{name}_first_frame_ns"] = (time.perf_counter_ns() - start) / EVENTS
    results["multi_topic_sse_ns_per_delivery"] = _multi_topic_sse()
    return results


def _multi_topic_sse() -> float:
    """A multi-topic SSE delivery as the server makes it: in a tree with stream cursors
    (`broadcaster._ids.StreamCursor`), one encoder per stream whose `id:` is built per stream;
    before, one shared envelope encoder whose chunk is cached for every subscriber."""
    from broadcaster._event import Event
    from broadcaster.http.streams.encoders import SSEEncoder

    topics = [f"bench.{n}" for n in range(4)]
    events_n, subscribers = EVENTS // 4, SUBSCRIBERS
    try:
        from broadcaster._ids import StreamCursor, format_id
    except ImportError:
        events = [Event(topics[n % 4], f"1700000000000-{n}", "message", DATA, 1700000000000) for n in range(events_n)]
        shared = SSEEncoder(envelope=True)
        encoders = [shared] * subscribers
    else:
        events = [
            Event(topics[n % 4], format_id(topics[n % 4], "0badcafe", n + 1), "message", DATA, 1700000000000)
            for n in range(events_n)
        ]
        encoders = [SSEEncoder(envelope=True, cursor=StreamCursor(1700000000000, 64)) for _ in range(subscribers)]
    start = time.perf_counter_ns()
    for ev in events:
        for encoder in encoders:
            encoder.chunk(ev)
    return (time.perf_counter_ns() - start) / (events_n * subscribers)


def _run_tree(tree: Path, timeout_s: float) -> dict[str, float]:
    # This file measures both trees (the same measures); `broadcaster` comes from `tree`.
    env = {**os.environ, "PYTHONPATH": str(tree.resolve())}
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--tree", str(tree)],
        env=env,
        capture_output=True,
        timeout=timeout_s,
        check=True,
        cwd=tree,
    )
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtest.framing", description=__doc__.split("\n")[0])
    parser.add_argument("--tree", type=Path, help="measure this tree once (run with PYTHONPATH set to it)")
    parser.add_argument("--before", type=Path, help="the tree before the change")
    parser.add_argument("--after", type=Path, default=Path("."), help="the tree after the change (default: .)")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    if args.tree is not None:
        print(json.dumps(_measure()))
        return 0
    if args.before is None:
        parser.error("give --before TREE (and --after TREE), or --tree TREE")
    samples: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    for _ in range(args.rounds):
        for label, tree in (("before", args.before), ("after", args.after)):
            samples[label].append(_run_tree(tree, timeout_s=120))
    keys = list(samples["before"][0])
    print(f"{'measure':<34} {'before':>10} {'after':>10} {'after/before':>13}")
    for key in keys:
        before = statistics.median(s[key] for s in samples["before"])
        after = statistics.median(s[key] for s in samples["after"])
        print(f"{key:<34} {before:>10.1f} {after:>10.1f} {after / before:>13.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
