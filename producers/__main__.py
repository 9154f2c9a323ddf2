"""`python -m producers NAME --target URL --topic TOPIC [options]`: run a ready-made producer.

```
python -m producers sensor --target http://127.0.0.1:8000 --topic sensors.demo --rate 50 --count 1000
python -m producers logtail /var/log/app.log --target redis://127.0.0.1:6379/0 --topic logs.app
tail -F app.log | python -m producers stdin --text --target http://127.0.0.1:8000 --topic logs.app
```

Exit status: 0 when done, 1 when the target failed (the error names the cause),
2 for a usage error, 130 after Ctrl-C, 143 after SIGTERM. A summary line
(sent, rejected, dropped, retries) goes to standard error.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Sequence
from typing import Any

from broadcaster import ConfigError, InvalidTopic, Settings, validate_topic
from broadcaster.cli import ArgumentParser, add_setting_flags, setting_values

from ._base import DEFAULT_BATCH, DEFAULT_BUFFER, DEFAULT_RETRY_FOR_S, Producer, Target
from ._exceptions import ProducerError, TargetConfigError
from ._targets import target_from_url, target_kind
from .logtail import DEFAULT_POLL_S, LogTail
from .sensor import DEFAULT_RATE, DEFAULT_SENSORS, Sensor
from .stdin import Stdin

DEFAULT_TARGET = "http://127.0.0.1:8000"
TARGET_VARIABLE = "BROADCASTER_URL"
#: The server's settings a producer must agree with: flags and `BROADCASTER_*` variables, as for `serve`.
SERVER_SETTINGS = ("max_event_bytes", "redis_prefix", "history_size", "history_ttl_s")
#: Those that only a Redis target uses (it writes the history itself).
_REDIS_SETTINGS = {"redis_prefix": "prefix", "history_size": "history_size", "history_ttl_s": "history_ttl_s"}


def build_parser() -> ArgumentParser:
    common = ArgumentParser(add_help=False)
    target_help = (
        f"http://HOST:PORT (a broadcaster server) or redis://HOST:PORT/DB (env {TARGET_VARIABLE}; "
        f"default {DEFAULT_TARGET})"
    )
    common.add_argument("--target", help=target_help)
    common.add_argument("--topic", required=True, help="topic to publish on")
    common.add_argument("--type", default="message", help="event type (the SSE event name); default message")
    common.add_argument("--buffer", type=int, default=DEFAULT_BUFFER, help="events buffered for the target")
    common.add_argument(
        "--overflow", choices=["block", "drop"], default="block", help="when the buffer is full: wait, or drop"
    )
    common.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="most events sent in one batch")
    common.add_argument(
        "--retry-for-s", type=float, default=DEFAULT_RETRY_FOR_S, help="give up after this long without progress"
    )
    common.add_argument(
        "--token",
        default=os.environ.get("BROADCASTER_TOKEN"),
        help="token for a server with access control (env BROADCASTER_TOKEN); unused by redis:// targets",
    )
    common.add_argument("--log-level", default="warning", choices=["debug", "info", "warning", "error"])
    server = common.add_argument_group(
        "server settings",
        "These must match the server's own (they are its flags and variables); "
        "--redis-prefix, --history-size and --history-ttl-s are for a redis:// target, which writes the history.",
    )
    add_setting_flags(server, SERVER_SETTINGS)

    parser = ArgumentParser(prog="python -m producers", description="Run a ready-made event producer.")
    producers = parser.add_subparsers(dest="producer", required=True, metavar="NAME")

    logtail = producers.add_parser("logtail", parents=[common], help="follow a file like tail -F, one event a line")
    logtail.add_argument("path", help="the file to follow (it may not exist yet)")
    logtail.add_argument("--from-start", action="store_true", help="publish the lines already in the file too")
    logtail.add_argument("--poll-s", type=float, default=DEFAULT_POLL_S, help="seconds between polls of the file")
    logtail.add_argument("--ndjson", action="store_true", help="lines are JSON (default: each line is a string)")

    sensor = producers.add_parser("sensor", parents=[common], help="simulated sensor readings")
    sensor.add_argument("--rate", type=float, default=DEFAULT_RATE, help="readings per second, over all sensors")
    sensor.add_argument("--count", type=int, default=None, help="stop after this many readings (default: never)")
    sensor.add_argument("--sensors", type=int, default=DEFAULT_SENSORS, help="number of sensors")
    sensor.add_argument("--seed", type=int, default=None, help="seed for the same readings on every run")

    stdin = producers.add_parser("stdin", parents=[common], help="one event per line of standard input")
    stdin.add_argument("--text", action="store_true", help="lines are text (default: NDJSON)")
    return parser


def make_producer(args: argparse.Namespace, settings: dict[str, Any]) -> Producer:
    """The producer the arguments name. Raises `ValueError` for a bad option."""
    try:
        validate_topic(args.topic)
    except InvalidTopic as exc:
        raise ValueError(f"--topic: {exc}") from None
    max_event_bytes = settings["max_event_bytes"]
    if args.producer == "logtail":
        return LogTail(
            args.path,
            args.topic,
            poll_s=args.poll_s,
            from_start=args.from_start,
            ndjson=args.ndjson,
            max_event_bytes=max_event_bytes,
        )
    if args.producer == "sensor":
        return Sensor(args.topic, rate=args.rate, count=args.count, sensors=args.sensors, seed=args.seed)
    return Stdin(args.topic, text=args.text, max_event_bytes=max_event_bytes)


def make_target(args: argparse.Namespace, settings: dict[str, Any]) -> Target:
    """The target `--target` (or `BROADCASTER_URL`) names. Raises `TargetConfigError` naming the bad option."""
    url = args.target or os.environ.get(TARGET_VARIABLE) or DEFAULT_TARGET
    try:
        kind = target_kind(url)
    except TargetConfigError as exc:
        raise TargetConfigError(f"{'--target' if args.target else TARGET_VARIABLE}: {exc}") from None
    options: dict[str, Any] = {
        "type": args.type,
        "buffer": args.buffer,
        "overflow": args.overflow,
        "batch": args.batch,
        "retry_for_s": args.retry_for_s,
        "max_event_bytes": settings["max_event_bytes"],
    }
    if kind == "redis":
        options.update({option: settings[name] for name, option in _REDIS_SETTINGS.items()})
    elif args.token:
        # Redis has no HTTP access control: access to Redis is the credential there (docs/security.md).
        options["token"] = args.token
    return target_from_url(url, **options)


def server_settings(args: argparse.Namespace) -> dict[str, Any]:
    """`SERVER_SETTINGS` from flags, else `BROADCASTER_*` variables, else the server's defaults."""
    defaults = Settings()
    values = {name: getattr(defaults, name) for name in SERVER_SETTINGS}
    values.update(setting_values(args, SERVER_SETTINGS))
    return values


async def run(producer: Producer, target: Target) -> None:
    """Run `producer` into `target` until it is done; SIGTERM stops it like Ctrl-C does."""
    task = asyncio.current_task()
    loop = asyncio.get_running_loop()
    handled = False
    if task is not None:
        try:
            loop.add_signal_handler(signal.SIGTERM, task.cancel)
            handled = True
        except (ValueError, RuntimeError):
            pass  # not the main thread (main() called from a worker thread): no SIGTERM handler
    try:
        async with target:
            await producer.run(target.publish)
    finally:
        if handled:
            loop.remove_signal_handler(signal.SIGTERM)


def main(argv: Sequence[str] | None = None) -> int:
    args, parser = build_parser().parse_command(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = server_settings(args)
        producer = make_producer(args, settings)
        target = make_target(args, settings)
    except (ValueError, ConfigError, TargetConfigError) as exc:
        parser.error(str(exc))
    started = time.monotonic()
    code = 0
    try:
        asyncio.run(run(producer, target))
    except KeyboardInterrupt:
        code = 130
    except asyncio.CancelledError:
        code = 143
    except ProducerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    stats = target.stats
    print(
        f"{args.producer}: sent {stats.sent}, rejected {stats.rejected}, dropped {stats.dropped}, "
        f"retries {stats.retries} in {time.monotonic() - started:.1f}s",
        file=sys.stderr,
    )
    return code


if __name__ == "__main__":
    sys.exit(main())
