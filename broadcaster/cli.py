"""The `broadcaster` command: `serve`, `publish TOPIC JSON`, `tail TOPIC...`.

Every setting is a `serve` flag (`--queue-size`) and a `BROADCASTER_*` variable
(`BROADCASTER_QUEUE_SIZE`); flags win. `publish` and `tail` talk HTTP to a
running server (`--url`, or `BROADCASTER_URL`, default http://127.0.0.1:8000).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import httpx
import orjson

from . import __version__
from ._config import ENV_PREFIX, Settings, parse_value, setting_fields
from ._exceptions import ConfigError
from ._redact import redact_url
from ._types import OverflowPolicy

DEFAULT_URL = "http://127.0.0.1:8000"
_RECONNECT_MAX_S = 5.0


def _add_setting_flags(parser: argparse.ArgumentParser) -> None:
    for f in setting_fields():
        flag = "--" + f.name.replace("_", "-")
        env = ENV_PREFIX + f.name.upper()
        default = f.default
        help_text = f"{f.metadata['help']} (env {env}; default {default if default is not None else 'unset'})"
        choices = [p.value for p in OverflowPolicy] if isinstance(default, OverflowPolicy) else None
        parser.add_argument(flag, dest=f.name, default=None, metavar=f.name.upper(), help=help_text, choices=choices)


def _settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {}
    for f in setting_fields():
        raw = getattr(args, f.name, None)
        if raw is not None:
            overrides[f.name] = parse_value(f.name, raw, "--" + f.name.replace("_", "-"))
    return Settings.from_env(**overrides)


def serve(args: argparse.Namespace) -> int:
    settings = _settings_from_args(args)
    # Worker processes build their app from the environment: hand them the final settings.
    for f in setting_fields():
        value = getattr(settings, f.name)
        if value is not None:
            os.environ[ENV_PREFIX + f.name.upper()] = str(value)

    from .http.server import Server, make_config

    config = make_config(settings)
    backend = (
        "redis (" + redact_url(settings.redis_url) + ")"
        if settings.redis_url
        else "memory (one process; set --redis-url to share topics between processes)"
    )
    print(
        f"broadcaster {__version__} serving on http://{settings.host}:{settings.port} "
        f"with {settings.workers} worker(s), backend: {backend}",
        file=sys.stderr,
        flush=True,
    )
    if settings.workers > 1:
        from .http.supervisor import run_workers

        return run_workers(config)
    # uvicorn re-raises the signal that stopped it once its graceful shutdown is done; under the
    # default SIGTERM disposition the process would then die "killed by SIGTERM" (-15/143) although
    # it stopped cleanly. The stop was handled, so exit 0.
    signal.signal(signal.SIGTERM, _exit_after_sigterm)
    Server(config).run()
    return 0


def _exit_after_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _base_url(args: argparse.Namespace) -> str:
    return str(args.url or os.environ.get("BROADCASTER_URL") or DEFAULT_URL).rstrip("/")


def _explain_http_error(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
        return f"{response.status_code} {error['code']}: {error['message']}"
    except Exception:
        return f"{response.status_code}: {response.text[:200]}"


def publish(args: argparse.Namespace) -> int:
    text = sys.stdin.read() if args.json == "-" else args.json
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        print(
            f"error: {text[:60]!r} is not valid JSON ({exc}); to send a string, quote it: '\"hello\"'",
            file=sys.stderr,
        )
        return 2
    url = f"{_base_url(args)}/topics/{args.topic}/events"
    params = {"type": args.type} if args.type else None
    try:
        response = httpx.post(
            url, content=text.encode(), params=params, headers={"Content-Type": "application/json"}, timeout=10
        )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 201:
        print(f"error: {_explain_http_error(response)}", file=sys.stderr)
        return 1
    print(response.json()["id"])
    return 0


def _format_line(line: dict[str, Any]) -> str:
    if "control" in line:
        kind = line["control"]
        details = ", ".join(f"{k}={v}" for k, v in line.items() if k != "control")
        return f"-- {kind}" + (f": {details}" if details else "") + " --"
    stamp = time.strftime("%H:%M:%S", time.localtime(line["ts"] / 1000)) + f".{line['ts'] % 1000:03d}"
    data = orjson.dumps(line["data"]).decode()
    kind = "" if line["type"] == "message" else f" [{line['type']}]"
    return f"{stamp} {line['topic']}{kind} {data}"


def tail(args: argparse.Namespace) -> int:
    """Follow topics until Ctrl-C; reconnect with the last id after a dropped connection."""
    url = f"{_base_url(args)}/events"
    last_id = args.last_event_id
    delay = 0.2
    try:
        while True:
            params: list[tuple[str, str | int | float | bool | None]] = [("topic", t) for t in args.topics]
            params.append(("format", "ndjson"))
            if last_id:
                params.append(("last_event_id", last_id))
            elif args.tail:
                params.append(("tail", args.tail))
            try:
                with httpx.stream("GET", url, params=params, timeout=httpx.Timeout(10, read=None)) as response:
                    if response.status_code != 200:
                        response.read()
                        print(f"error: {_explain_http_error(response)}", file=sys.stderr)
                        if response.status_code < 500:
                            return 1
                    else:
                        delay = 0.2
                        for raw in response.iter_lines():
                            if not raw:
                                continue
                            line = orjson.loads(raw)
                            if line.get("control") == "heartbeat":
                                continue
                            if "id" in line and "control" not in line:
                                last_id = line["id"]
                            print(raw if args.json else _format_line(line), flush=True)
            except httpx.HTTPError as exc:
                print(f"-- connection lost ({exc.__class__.__name__}), reconnecting --", file=sys.stderr)
            time.sleep(delay)
            delay = min(delay * 2, _RECONNECT_MAX_S)
    except KeyboardInterrupt:
        return 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="broadcaster", description="Real-time stream broadcaster (SSE and NDJSON).")
    parser.add_argument("--version", action="version", version=f"broadcaster {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve_parser = commands.add_parser("serve", help="run the server", description="Run the server.")
    _add_setting_flags(serve_parser)
    serve_parser.set_defaults(func=serve)

    pub = commands.add_parser("publish", help="publish one event", description="Publish one JSON event on a topic.")
    pub.add_argument("topic")
    pub.add_argument("json", help="the event data as JSON ('-' reads it from stdin)")
    pub.add_argument("--type", help="event type (SSE event name); default message")
    pub.add_argument("--url", help=f"server URL (env BROADCASTER_URL; default {DEFAULT_URL})")
    pub.set_defaults(func=publish)

    tail_parser = commands.add_parser("tail", help="follow topics", description="Print events of topics as they come.")
    tail_parser.add_argument("topics", nargs="+", metavar="TOPIC", help="topic or pattern with *")
    tail_parser.add_argument("--url", help=f"server URL (env BROADCASTER_URL; default {DEFAULT_URL})")
    tail_parser.add_argument("--json", action="store_true", help="print raw NDJSON lines (for jq)")
    tail_parser.add_argument("--tail", type=int, default=0, help="start with the last N retained events")
    tail_parser.add_argument("--last-event-id", help="resume after this event id")
    tail_parser.set_defaults(func=tail)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
