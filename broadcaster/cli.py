"""The `broadcaster` command: `serve`, `publish TOPIC JSON`, `tail TOPIC...`.

Every setting is a `serve` flag (`--queue-size`) and a `BROADCASTER_*` variable
(`BROADCASTER_QUEUE_SIZE`); flags win. `publish` and `tail` talk HTTP to a
running server (`--url`, or `BROADCASTER_URL`, default http://127.0.0.1:8000).
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from types import FrameType
from typing import Any, NoReturn

import httpx
import orjson

from . import __version__
from ._config import Settings, env_name, env_values, flag_name, format_value, parse_value, setting_fields
from ._exceptions import ConfigError
from ._redact import redact_url
from ._types import OverflowPolicy
from .client import ClientError, Event, Item, iter_events

DEFAULT_URL = "http://127.0.0.1:8000"
#: Every setting: each is a `serve` flag.
SETTING_NAMES = tuple(f.name for f in setting_fields())


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser with a usage error on one line: the problem and where to read more, exit status 2.

    argparse prints the whole usage first, which for `serve` (one flag per setting) is a page
    in which the actual problem, on the last line, is easy to miss.
    """

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def subcommands(self) -> dict[str, argparse.ArgumentParser]:
        """The parser of each subcommand, by name (empty if there are none)."""
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                return dict(action.choices)
        return {}

    def parse_command(self, argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, argparse.ArgumentParser]:
        """The arguments, and the parser of the subcommand they name (to report later errors with).

        Unknown arguments are reported by that subcommand's parser, whose --help lists the right options.
        """
        args, unknown = self.parse_known_args(argv)
        parser: argparse.ArgumentParser = self
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                parser = action.choices[getattr(args, str(action.dest))]
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        return args, parser


def add_setting_flags(
    parser: argparse.ArgumentParser | argparse._ArgumentGroup,
    names: Sequence[str],
    aliases: Mapping[str, str] | None = None,
) -> None:
    """One flag per setting in `names` (`--queue-size`), with the setting's help, variable and default.

    The values stay text until `setting_values` parses them, so that an error names the flag.
    `aliases` gives some settings a second flag (`archive --dir` for `--archive-dir`).
    """
    fields = {f.name: f for f in setting_fields()}
    for name in names:
        flags = [flag_name(name), *([aliases[name]] if aliases and name in aliases else [])]
        default = fields[name].default
        shown = "unset" if default is None else "empty" if default == () else format_value(default)
        help_text = f"{fields[name].metadata['help']} (env {env_name(name)}; default {shown})"
        if isinstance(default, bool):  # a switch: present means on (the variable takes true/false)
            parser.add_argument(
                *flags,
                dest=name,
                action="store_const",
                const="true",
                default=None,
                help=help_text.replace("%", "%%"),
            )
            continue
        if isinstance(default, tuple):  # a list: comma-separated, and the flag may be repeated
            several = fields[name].metadata.get("nargs") == "+"  # ... or take several values at once
            parser.add_argument(
                *flags,
                dest=name,
                action="extend" if several else "append",
                nargs="+" if several else None,
                default=None,
                metavar="A,B",
                help=help_text.replace("%", "%%"),
            )
            continue
        choices = [p.value for p in OverflowPolicy] if isinstance(default, OverflowPolicy) else None
        # argparse %-formats help texts: a literal % in a setting's help must not be read as a format.
        parser.add_argument(
            *flags,
            dest=name,
            default=None,
            metavar=name.upper(),
            help=help_text.replace("%", "%%"),
            choices=choices,
        )


def setting_values(
    args: argparse.Namespace, names: Sequence[str], environ: Mapping[str, str] | None = None
) -> dict[str, Any]:
    """The settings among `names` given as flags, else as `BROADCASTER_*` variables, parsed and checked.

    Raises `ConfigError` naming the flag or the variable that holds a bad value.
    """
    values = env_values(list(names), environ)
    for name in names:
        raw = getattr(args, name, None)
        if isinstance(raw, list):  # a repeated list flag
            raw = ",".join(raw)
        if raw is not None:
            values[name] = parse_value(name, raw, flag_name(name))
    return values


def serve(args: argparse.Namespace) -> int:
    settings = Settings(**setting_values(args, SETTING_NAMES))
    from .archive import check_server_settings

    check_server_settings(settings)
    # Worker processes build their app from the environment: hand them the final settings.
    for name in SETTING_NAMES:
        value = getattr(settings, name)
        if value is not None:
            os.environ[env_name(name)] = format_value(value)

    from .http.server import Server, make_config

    config = make_config(settings)
    access = "off"
    if settings.auth_enabled:
        from .auth import Keyring

        access = "on (" + ", ".join(Keyring.from_settings(settings).algorithms) + ")"  # a bad key: exit 2 now
    backend = (
        "redis (" + redact_url(settings.redis_url) + ")"
        if settings.redis_url
        else "memory (one process; set --redis-url to share topics between processes)"
    )
    print(
        f"broadcaster {__version__} serving on http://{settings.host}:{settings.port} "
        f"with {settings.workers} worker(s), backend: {backend}, access control: {access}",
        file=sys.stderr,
        flush=True,
    )
    warning = exposure_warning(settings)
    if warning:
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    if settings.workers > 1:
        from .http.supervisor import run_workers

        return run_workers(config)
    # uvicorn re-raises the signal that stopped it once its graceful shutdown is done; under the
    # default SIGTERM disposition the process would then die "killed by SIGTERM" (-15/143) although
    # it stopped cleanly. The stop was handled, so exit 0.
    signal.signal(signal.SIGTERM, _exit_after_sigterm)
    Server(config).run()
    return 0


def exposure_warning(settings: Settings) -> str | None:
    """The warning for a server that anyone on the network may use: auth off on a non-loopback address."""
    if settings.auth_enabled or _is_loopback(settings.host):
        return None
    return (
        f"access control is off and the server listens on {settings.host}: anyone who can reach it may publish "
        "and subscribe. Set --auth-secret (or --auth-public-key) to require tokens; see docs/security.md"
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


#: The settings `broadcaster archive` takes (`--dir` and `--topics` are short for the first two).
ARCHIVE_SETTINGS = (
    "archive_dir",
    "archive_topics",
    "redis_url",
    "redis_prefix",
    "history_size",
    "history_ttl_s",
    "archive_segment_s",
    "archive_segment_bytes",
    "archive_fsync",
    "archive_gzip",
    "archive_retention_s",
    "archive_retention_bytes",
    "log_level",
)


def archive(args: argparse.Namespace) -> int:
    """Run an archiver until SIGTERM or Ctrl-C; exit 0 once everything received is written."""
    settings = Settings(**setting_values(args, ARCHIVE_SETTINGS))
    if not settings.archive_dir or not settings.archive_topics:
        raise ConfigError("needs --dir DIR and --topics PATTERN...")
    if not settings.redis_url:
        raise ConfigError(
            "needs --redis-url (or BROADCASTER_REDIS_URL): on the memory backend nothing reaches another "
            "process; run `broadcaster serve --archive-dir DIR --archive-topics ...` instead"
        )
    from .archive.run import run_archiver

    print(
        f"broadcaster {__version__} archiving {', '.join(settings.archive_topics)} from redis "
        f"({redact_url(settings.redis_url)}) to {settings.archive_dir}",
        file=sys.stderr,
        flush=True,
    )
    return run_archiver(settings)


def _exit_after_sigterm(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _base_url(args: argparse.Namespace) -> str:
    return str(args.url or os.environ.get("BROADCASTER_URL") or DEFAULT_URL).rstrip("/")


def _auth_headers(args: argparse.Namespace) -> dict[str, str]:
    token = args.token or os.environ.get("BROADCASTER_TOKEN")
    return {"Authorization": f"Bearer {token}"} if token else {}


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
            url,
            content=text.encode(),
            params=params,
            headers={"Content-Type": "application/json", **_auth_headers(args)},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        print(f"error: cannot reach {url}: {exc}", file=sys.stderr)
        return 1
    if response.status_code != 201:
        print(f"error: {_explain_http_error(response)}", file=sys.stderr)
        return 1
    print(response.json()["id"])
    return 0


def _format_item(item: Item) -> str:
    if not isinstance(item, Event):
        details = ", ".join(f"{k}={v}" for k, v in item.fields.items())
        return f"-- {item.name}" + (f": {details}" if details else "") + " --"
    stamp = time.strftime("%H:%M:%S", time.localtime(item.ts / 1000)) + f".{item.ts % 1000:03d}"
    data = orjson.dumps(item.data).decode()
    kind = "" if item.type == "message" else f" [{item.type}]"
    return f"{stamp} {item.topic}{kind} {data}"


def tail(args: argparse.Namespace) -> int:
    """Follow topics until Ctrl-C, on `broadcaster.client`: it reconnects and resumes by itself."""
    notices = logging.StreamHandler(sys.stderr)
    notices.setFormatter(logging.Formatter("-- %(message)s --"))
    client_log = logging.getLogger("broadcaster.client")
    client_log.addHandler(notices)
    client_log.setLevel(logging.WARNING)
    client_log.propagate = False
    token = args.token or os.environ.get("BROADCASTER_TOKEN") or None
    try:
        items = iter_events(_base_url(args), args.topics, last_event_id=args.from_id, tail=args.tail, token=token)
    except ValueError as exc:  # a bad topic or id: a usage error
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        for item in items:
            print(orjson.dumps(item.as_dict()).decode() if args.json else _format_item(item), flush=True)
    except ClientError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    finally:
        client_log.removeHandler(notices)
        if items.last_event_id is not None:  # on several topics a cursor: the one way to resume them all
            print(f"-- to resume: --from-id '{items.last_event_id}' --", file=sys.stderr, flush=True)
    return 0


TOKEN_HELP = "a token for a server with access control (env BROADCASTER_TOKEN); see broadcaster token"
_TTL_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_ttl(text: str) -> float:
    """`90s`, `30m`, `1h`, `7d` or a number of seconds; raises `ConfigError`."""
    unit = _TTL_UNITS.get(text[-1:].lower())
    try:
        value = float(text[:-1] if unit else text) * (unit or 1)
    except ValueError:
        raise ConfigError(f"--ttl: {text!r} is not a duration (90s, 30m, 1h, 7d or seconds)") from None
    if not 0 < value < 10 * 365 * 86400:
        raise ConfigError(f"--ttl must be positive and under 10 years, got {text!r}")
    return value


def token(args: argparse.Namespace) -> int:
    from .auth import Keyring, issue_token

    settings = Settings(**setting_values(args, SETTING_NAMES))
    secret = Keyring.from_settings(settings).signing_secret
    if secret is None:
        raise ConfigError(
            "broadcaster token signs with the HS256 secret: set --auth-secret, --auth-secret-file "
            "or BROADCASTER_AUTH_SECRET (a server with only public keys gets its tokens from their issuer)"
        )
    ttl_s = parse_ttl(args.ttl)
    try:
        printed = issue_token(
            secret,
            subscribe=args.subscribe,
            publish=args.publish,
            admin=args.admin,
            ttl_s=ttl_s,
            subject=args.sub,
            audience=settings.auth_audience,
            issuer=settings.auth_issuer,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(printed)
    return 0


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="broadcaster", description="Real-time stream broadcaster (SSE and NDJSON).")
    parser.add_argument("--version", action="version", version=f"broadcaster {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    serve_parser = commands.add_parser("serve", help="run the server", description="Run the server.")
    add_setting_flags(serve_parser, SETTING_NAMES)
    serve_parser.set_defaults(func=serve)

    archive_parser = commands.add_parser(
        "archive",
        help="write topics to segment files",
        description="Archive the events of topics to NDJSON segment files (docs/archive.md). With Redis, "
        "one archiver serves the whole deployment; servers serve its directory with --archive-dir.",
    )
    add_setting_flags(archive_parser, ARCHIVE_SETTINGS, {"archive_dir": "--dir", "archive_topics": "--topics"})
    archive_parser.set_defaults(func=archive)

    pub = commands.add_parser("publish", help="publish one event", description="Publish one JSON event on a topic.")
    pub.add_argument("topic")
    pub.add_argument("json", help="the event data as JSON ('-' reads it from stdin)")
    pub.add_argument("--type", help="event type (SSE event name); default message")
    pub.add_argument("--url", help=f"server URL (env BROADCASTER_URL; default {DEFAULT_URL})")
    pub.add_argument("--token", help=TOKEN_HELP)
    pub.set_defaults(func=publish)

    tail_parser = commands.add_parser("tail", help="follow topics", description="Print events of topics as they come.")
    tail_parser.add_argument("topics", nargs="+", metavar="TOPIC", help="topic or pattern with *")
    tail_parser.add_argument("--url", help=f"server URL (env BROADCASTER_URL; default {DEFAULT_URL})")
    tail_parser.add_argument("--json", action="store_true", help="print each event and control message as a JSON line")
    tail_parser.add_argument("--tail", type=int, metavar="N", help="start with the last N retained events")
    tail_parser.add_argument(
        "--from-id",
        "--last-event-id",
        dest="from_id",
        metavar="ID",
        help="resume from this position: an event id, or the cursor printed at the end on several topics",
    )
    tail_parser.add_argument("--token", help=TOKEN_HELP)
    tail_parser.set_defaults(func=tail)

    token_parser = commands.add_parser(
        "token",
        help="print a signed token",
        description="Print a token signed with the configured HS256 secret (for development and scripts).",
    )
    grant = "topics or patterns with * the token may {} (repeatable)"
    token_parser.add_argument(
        "--subscribe", nargs="+", action="extend", default=[], metavar="PATTERN", help=grant.format("subscribe to")
    )
    token_parser.add_argument(
        "--publish", nargs="+", action="extend", default=[], metavar="PATTERN", help=grant.format("publish on")
    )
    token_parser.add_argument("--admin", action="store_true", help="may do everything, /metrics included")
    token_parser.add_argument("--ttl", default="1h", help="lifetime: 90s, 30m, 1h, 7d or seconds (default 1h)")
    token_parser.add_argument("--sub", help="the token's subject (who it is for)")
    add_setting_flags(token_parser, SETTING_NAMES)  # the secret, audience and issuer come as for serve
    token_parser.set_defaults(func=token)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args, command = build_parser().parse_command(argv)
    try:
        result: int = args.func(args)
    except ConfigError as exc:
        command.error(str(exc))
    except KeyboardInterrupt:
        return 130
    return result


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
