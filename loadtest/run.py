"""Command line: ``python -m loadtest SCENARIO [options]`` and ``python -m loadtest --smoke``."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import uvloop

from loadtest import targets
from loadtest.plots import plot
from loadtest.progress import Progress
from loadtest.report import Results, summary
from loadtest.scenarios import DEFAULTS, SCENARIOS, VARIANTS, Options
from loadtest.steps import Context, wait_quiet
from loadtest.workers import raise_nofile

DEFAULT_OUT = Path(__file__).resolve().parent / "results"
FAMILIES = ("broadcaster", "baseline", "nchan")


def _csv(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m loadtest", description=__doc__)
    p.add_argument("scenario", nargs="?", choices=[s for s in SCENARIOS if s != "smoke"])
    p.add_argument("--smoke", action="store_true", help="a few seconds against the memory backend; fails on loss")
    p.add_argument("--target", default="", help="comma list: broadcaster, baseline, nchan (default: all available)")
    p.add_argument("--duration", type=float, help="seconds per step (idle: settle time per level)")
    p.add_argument("--subscribers", type=int)
    p.add_argument("--rates", default="", help="comma list of offered events/s (fanout steps)")
    p.add_argument("--size", type=int, help="event data size in bytes")
    p.add_argument("--format", default="", help="subscriber formats, comma list of sse,ndjson")
    p.add_argument("--levels", default="", help="idle: connection counts to measure at")
    p.add_argument("--max-events", type=int, help="ingest: events in the streamed POST at most")
    p.add_argument("--source-ips", default="", help="local addresses in 127.0.0.0/8 to spread connections over")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--runs", type=int, default=1, help="repeat and report medians")
    p.add_argument("--workers", type=int, default=1, help="subscriber processes")
    p.add_argument("--no-pin", action="store_true", help="do not pin server and generator to separate cores")
    p.add_argument("--broadcaster-args", default="", help="extra flags for `broadcaster serve`")
    p.add_argument("--quiet", action="store_true", help="no progress line")
    p.add_argument("--quiet-wait", type=float, default=30.0, help="wait up to S s for an idle machine before a target")
    args = p.parse_args(argv)
    if not args.smoke and not args.scenario:
        p.error("give a SCENARIO or --smoke")
    if args.source_ips and any(not ip.startswith("127.") for ip in _csv(args.source_ips)):
        p.error("--source-ips must be loopback addresses (127.0.0.0/8)")
    return args


def _options(scenario: str, args: argparse.Namespace) -> Options:
    o = DEFAULTS[scenario]
    changes: dict[str, Any] = {}
    if args.duration is not None:
        changes["duration_s"] = args.duration
    if args.subscribers is not None:
        changes["subscribers"] = args.subscribers
    if args.rates:
        changes["rates"] = tuple(float(r) for r in _csv(args.rates))
    if args.size is not None:
        changes["size"] = args.size
    if args.format:
        changes["formats"] = tuple(_csv(args.format))
    if args.levels:
        changes["levels"] = tuple(int(n) for n in _csv(args.levels))
    if args.max_events is not None:
        changes["max_events"] = args.max_events
    if args.source_ips:
        changes["source_ips"] = tuple(_csv(args.source_ips))
    return dataclasses.replace(o, **changes)


def _specs(scenario: str, wanted: list[str], progress: Progress) -> list[targets.TargetSpec]:
    explicit = bool(wanted)
    names: list[str] = []
    for w in wanted or (["broadcaster"] if scenario == "smoke" else list(FAMILIES)):
        names.extend(VARIANTS.get(scenario, {}).get(w, (w,)))
    specs = []
    for name in dict.fromkeys(names):
        spec = targets.SPECS.get(name)
        if spec is None:
            raise SystemExit(f"unknown target {name!r}; known: {', '.join(targets.SPECS)}")
        why = targets.unavailable(spec)
        if why and (explicit or scenario == "smoke"):
            raise SystemExit(f"target {name} unavailable: {why}")
        if why:
            progress.log(f"skipping {name}: {why}")
            continue
        specs.append(spec)
    return specs


def _bound_s(opts: Options) -> float:
    steps = max(1, len(opts.rates), len(opts.levels) + 1)
    return 2 * (steps * (opts.duration_s + 10) + 2 * opts.duration_s) + 300


async def _run_all(ctx: Context, scenario: str, specs: list[targets.TargetSpec], opts: Options, runs: int) -> list[str]:
    failures: list[str] = []
    async with asyncio.TaskGroup() as tg:
        ticker = tg.create_task(ctx.progress.run())
        try:
            for run in range(runs):
                for spec in specs:
                    ctx.meta = {"scenario": scenario, "target": spec.name, "run": run}
                    ctx.progress.prefix = f"{scenario} {spec.name} run {run + 1}/{runs}"
                    busy = await wait_quiet(ctx.progress, max_wait_s=ctx.quiet_wait_s)
                    ctx.meta["busy_before_pct"] = round(100 * busy, 1)
                    try:
                        async with asyncio.timeout(_bound_s(opts)):
                            await SCENARIOS[scenario](ctx, spec, opts)
                    except Exception as exc:  # one target failing must not stop the others
                        failures.append(f"{spec.name} run {run}: {exc!r}")
                        ctx.progress.log(f"{spec.name} failed: {exc}\n{traceback.format_exc(limit=3)}")
        finally:
            ticker.cancel()
    return failures


def _smoke_problems(records: list[dict[str, Any]], specs: list[targets.TargetSpec], opts: Options) -> list[str]:
    problems = []
    for spec in specs:
        recs = [r for r in records if r["target"] == spec.name]
        if not recs:
            problems.append(f"{spec.name}: no result")
        for r in recs:
            checks = {
                "subscribers": r["subscribers"] == opts.subscribers,
                "warm-up": r.get("warm") == opts.subscribers,
                "loss": r["loss"] == 0,
                # Exactly what was confirmed: extras (from unconfirmed publishes) must not hide a loss.
                "exact deliveries": r["deliveries"] == r["expected"],
                "duplicates": r["dups"] == 0,
                "disconnects": r["closed_during_step"] == 0,
                "publish errors": r["publish_errors"] == 0,
                "gap/error messages": not any(r.get("controls", {}).get(k) for k in ("gap", "error", "reset")),
            }
            keys = ("subscribers", "warm", "expected", "deliveries", "loss", "dups", "closed_during_step", "controls")
            brief = {k: r.get(k) for k in keys}
            problems += [f"{spec.name}: {name} check failed: {brief}" for name, good in checks.items() if not good]
    return problems


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    scenario = "smoke" if args.smoke else str(args.scenario)
    progress = Progress(quiet=args.quiet)
    nofile = raise_nofile(65536)  # inherited by the servers, Redis and the workers
    if nofile < 65536 and scenario == "idle":
        progress.log(f"RLIMIT_NOFILE is {nofile} (hard limit): servers with 2 sockets per subscriber fail sooner")
    opts = _options(scenario, args)
    specs = _specs(scenario, _csv(args.target), progress)
    if not specs:
        print("no target available", file=sys.stderr)
        return 2
    stamp = time.strftime("%Y%m%d-%H%M%S")
    results = Results(args.out / f"{scenario}-{stamp}.jsonl")
    ctx = Context(args.out, args.out / "logs" / f"{scenario}-{stamp}", lambda r: None, progress)
    ctx.workers, ctx.pin, ctx.extra_args = args.workers, not args.no_pin, args.broadcaster_args
    ctx.quiet_wait_s = 0.0 if args.smoke else args.quiet_wait

    def emit(rec: dict[str, Any]) -> None:
        results.emit({**ctx.meta, "ts": round(time.time(), 3), **rec})

    ctx.emit = emit
    started = time.monotonic()
    try:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            failures = runner.run(_run_all(ctx, scenario, specs, opts, max(1, args.runs)))
    finally:
        results.close()
    text = summary(scenario, results.records)
    (args.out / f"{scenario}-{stamp}.txt").write_text(text + "\n")
    png = plot(scenario, results.records, args.out / f"{scenario}-{stamp}.png")
    print(text)
    print(
        f"\nresults: {results.path}" + (f"\nplot: {png}" if png else "") + f"\ntook {time.monotonic() - started:.1f} s"
    )
    problems = failures + (_smoke_problems(results.records, specs, opts) if scenario == "smoke" else [])
    for p in problems:
        print(f"FAIL {p}", file=sys.stderr)
    if scenario == "smoke":
        print("smoke: " + ("FAILED" if problems else "passed"), file=sys.stderr)
    return 1 if problems else 0
