"""A real Redis Cluster for tests: three `redis-server --cluster-enabled yes` masters on free ports in a
temp dir, joined by `redis-cli --cluster create ... --cluster-replicas 0`.

    from tests.support.redis_cluster import redis_cluster_fixture

    redis_cluster = redis_cluster_fixture(scope="module")     # a pytest fixture

    def test_x(redis_cluster):
        store = RedisStore.from_url(redis_cluster.url, cluster=True, prefix=redis_cluster.unique_prefix())
        redis_cluster.keyslot("{a}:log")                       # the server's CLUSTER KEYSLOT
        redis_cluster.master_of_slot(slot)                     # the port of the master owning `slot`

Without `redis-server` or `redis-cli` the tests that need it are skipped with the reason, except under
`CI=true`, where that is a failure (the convention of `redis_server.py`).
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from tests.support.redis_server import _in_ci, _ping

# A cluster node also listens on its bus port, its client port + 10000.
_BUS_OFFSET = 10000


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _free_cluster_port(taken: set[int]) -> int:
    """A free port whose bus port (+10000) is free too."""
    for _ in range(200):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port: int = sock.getsockname()[1]
        bus = port + _BUS_OFFSET
        if bus < 65536 and port not in taken and bus not in taken and _bindable(bus):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


def require_redis_cluster() -> None:
    """Skip (or, under CI=true, fail) when redis-server or redis-cli is missing."""
    missing = [name for name in ("redis-server", "redis-cli") if shutil.which(name) is None]
    if not missing:
        return
    message = f"{' and '.join(missing)} not installed (apt-get install redis-server redis-tools)"
    if _in_ci():
        pytest.fail(message + "; CI must run the Redis Cluster tests")
    pytest.skip(message)


class RedisClusterServers:
    """`masters` redis-server processes in cluster mode, owned by this test run."""

    def __init__(self, masters: int = 3) -> None:
        taken: set[int] = set()
        self.ports: list[int] = []
        for _ in range(masters):
            port = _free_cluster_port(taken)
            taken.update((port, port + _BUS_OFFSET))
            self.ports.append(port)
        self.url = f"redis://127.0.0.1:{self.ports[0]}/0"
        self._dir = Path(tempfile.mkdtemp(prefix="ccproxy-redis-cluster-"))
        self._processes: list[subprocess.Popen[bytes]] = []
        self._clients: dict[int, redis.Redis] = {}

    def start(self, timeout: float = 30.0) -> None:
        """Start the nodes, create the cluster, wait until every node says `cluster_state:ok`."""
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        assert server is not None
        assert cli is not None
        deadline = time.monotonic() + timeout
        for port in self.ports:
            workdir = self._dir / str(port)
            workdir.mkdir()
            self._processes.append(
                subprocess.Popen(
                    [
                        server,
                        "--port",
                        str(port),
                        "--bind",
                        "127.0.0.1",
                        "--cluster-enabled",
                        "yes",
                        "--cluster-config-file",
                        "nodes.conf",
                        "--cluster-node-timeout",
                        "2000",
                        "--save",
                        "",
                        "--appendonly",
                        "no",
                        "--dir",
                        str(workdir),
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
        for port, process in zip(self.ports, self._processes, strict=True):
            while not _ping("127.0.0.1", port):
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server (cluster mode) did not start on port {port}")
                time.sleep(0.02)
        created = subprocess.run(
            [cli, "--cluster", "create", *self.addresses(), "--cluster-replicas", "0", "--cluster-yes"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=max(1.0, deadline - time.monotonic()),
            check=False,
        )
        if created.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {created.stdout!r} {created.stderr!r}")
        while not self._all_ok():
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis Cluster did not reach cluster_state:ok on every node")
            time.sleep(0.05)

    def _all_ok(self) -> bool:
        for port in self.ports:
            try:
                info = self.node(port).cluster("info")
            except redis.RedisError:
                return False
            if info.get("cluster_state") != "ok":
                return False
            if int(info.get("cluster_known_nodes", 0)) != len(self.ports):
                return False
        return True

    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def node(self, port: int) -> redis.Redis:
        """A plain (not cluster-aware) client of one node, for inspecting it."""
        client = self._clients.get(port)
        if client is None:
            client = redis.Redis(host="127.0.0.1", port=port, decode_responses=True, socket_timeout=5)
            self._clients[port] = client
        return client

    def keyslot(self, key: str) -> int:
        """The slot of `key`, as the server computes it (`CLUSTER KEYSLOT`)."""
        return int(self.node(self.ports[0]).cluster("keyslot", key))

    def slot_owners(self) -> dict[int, int]:
        """The master port of every slot, from `CLUSTER SLOTS`."""
        owners: dict[int, int] = {}
        for start, end, master, *_ in self.node(self.ports[0]).cluster("slots"):
            for slot in range(int(start), int(end) + 1):
                owners[slot] = int(master[1])
        return owners

    def master_of_slot(self, slot: int) -> int:
        return self.slot_owners()[slot]

    def keys_by_master(self, pattern: str) -> dict[int, list[str]]:
        """The keys matching `pattern` that each master holds."""
        return {port: sorted(self.node(port).scan_iter(match=pattern, count=1000)) for port in self.ports}

    def close(self) -> None:
        for client in self._clients.values():
            client.close()
        self._clients.clear()
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._processes.clear()
        shutil.rmtree(self._dir, ignore_errors=True)

    @staticmethod
    def unique_prefix() -> str:
        """A key prefix no other test uses (tests may share one cluster)."""
        return "test:" + uuid.uuid4().hex[:12]


@contextlib.contextmanager
def running_redis_cluster(masters: int = 3) -> Iterator[RedisClusterServers]:
    require_redis_cluster()
    cluster = RedisClusterServers(masters)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.close()


def redis_cluster_fixture(scope: Any = "module", name: str | None = None) -> Callable[[], Any]:
    """A pytest fixture yielding a running `RedisClusterServers`; assign it to a module-level name."""

    def _fixture() -> Iterator[RedisClusterServers]:
        with running_redis_cluster() as cluster:
            yield cluster

    return pytest.fixture(scope=scope, name=name)(_fixture)


__all__ = [
    "RedisClusterServers",
    "redis_cluster_fixture",
    "require_redis_cluster",
    "running_redis_cluster",
]
