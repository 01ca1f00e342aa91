"""A private Redis Cluster for tests: 3 masters (and optionally one replica each) on free ports, made by
`redis-cli --cluster create`, in the test's directory; every node killed on exit.

A short `cluster-node-timeout` (1 s) lets a test kill a master and see its replica promoted within
a few seconds. Never touches the shared Redis.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import redis

from .redis_server import unavailable


@dataclass
class ClusterNode:
    port: int
    proc: subprocess.Popen[bytes]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class PrivateCluster:
    nodes: list[ClusterNode] = field(default_factory=list)

    @property
    def url(self) -> str:
        """A redis+cluster:// URL naming the first two nodes as seeds."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=port, socket_timeout=2)

    def masters(self) -> list[int]:
        """Ports of the nodes that are masters now, as a live node sees it."""
        for node in self.nodes:
            if node.proc.poll() is None:
                try:
                    nodes = self.client(node.port).cluster("nodes")
                except redis.RedisError:
                    continue
                return sorted(int(addr.split(":")[1].split("@")[0]) for addr, info in nodes.items()
                              if "master" in info["flags"] and "fail" not in info["flags"])
        return []

    def master_of(self, key: str) -> int:
        """The port of the master holding `key`'s slot now."""
        for node in self.nodes:
            if node.proc.poll() is None:
                slot = self.client(node.port).cluster("keyslot", key)
                for start, end, master, *_ in self.client(node.port).execute_command("CLUSTER", "SLOTS"):
                    if start <= slot <= end:
                        return int(master[1])
        raise AssertionError("no live node")

    def wait_replicas(self, limit: float = 20.0) -> None:
        """Until every replica has synced with its master (a failover needs one)."""
        deadline = time.monotonic() + limit
        while True:
            roles = [self.client(n.port).info("replication") for n in self.nodes]
            if all(r.get("master_link_status") == "up" for r in roles if r.get("role") == "slave") \
                    and sum(1 for r in roles if r.get("role") == "slave") == len(self.nodes) - 3:
                return
            if time.monotonic() > deadline:
                raise AssertionError("the private cluster's replicas did not sync")
            time.sleep(0.1)

    def wait_ok(self, limit: float = 20.0) -> None:
        """Until every live node says cluster_state:ok and agrees on 3 masters."""
        deadline = time.monotonic() + limit
        while True:
            live = [n for n in self.nodes if n.proc.poll() is None]
            try:
                if all(self.client(n.port).cluster("info")["cluster_state"] == "ok" for n in live) \
                        and len(self.masters()) == 3:
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the private cluster did not become ok")
            time.sleep(0.1)


@contextmanager
def running_private_cluster(directory: Path, *, replicas: bool = False) -> Iterator[PrivateCluster]:
    """A started 3-master cluster (plus a replica per master when `replicas`), killed on exit."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        unavailable("redis-server / redis-cli are not installed")
    cluster = PrivateCluster()
    try:
        used: set[int] = set()
        for _ in range(6 if replicas else 3):
            port = _cluster_port(used)
            proc = subprocess.Popen(
                [binary, "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
                 "--cluster-config-file", f"nodes-{port}.conf", "--cluster-node-timeout", "1000",
                 "--save", "", "--appendonly", "no", "--dir", str(directory), "--repl-diskless-sync-delay", "0"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            cluster.nodes.append(ClusterNode(port, proc))
        for node in cluster.nodes:
            _wait_accepting(cluster, node)
        subprocess.run([cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in cluster.nodes),
                        "--cluster-replicas", "1" if replicas else "0", "--cluster-yes"],
                       check=True, capture_output=True, timeout=30)
        cluster.wait_ok()
        if replicas:
            cluster.wait_replicas()
        yield cluster
    finally:
        for node in cluster.nodes:
            node.kill()


def _cluster_port(used: set[int]) -> int:
    """A free port whose cluster bus port (+10000) is free too, not handed out before in this cluster."""
    for _ in range(1000):
        port = random.randint(20000, 45000)
        if port in used or port + 10000 in used:
            continue
        if _free(port) and _free(port + 10000):
            used.update((port, port + 10000))
            return port
    raise AssertionError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait_accepting(cluster: PrivateCluster, node: ClusterNode) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if cluster.client(node.port).ping():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline or node.proc.poll() is not None:
            raise AssertionError("a private cluster node did not start")
        time.sleep(0.02)


@dataclass
class PrivateSentinel:
    """A master, its replica and one Sentinel watching them as `mymaster`."""

    master: ClusterNode
    replica: ClusterNode
    sentinel: ClusterNode

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel.port}/mymaster/0"

    def current_master(self) -> int:
        _, port = redis.Redis(host="127.0.0.1", port=self.sentinel.port).execute_command(
            "SENTINEL", "GET-MASTER-ADDR-BY-NAME", "mymaster")
        return int(port)


@contextmanager
def running_private_sentinel(directory: Path) -> Iterator[PrivateSentinel]:
    """A started master + replica + Sentinel (down after 1 s, failover within a few), all killed on exit."""
    binary = shutil.which("redis-server")
    if binary is None:
        unavailable("redis-server is not installed")
    started: list[ClusterNode] = []

    def start(*args: str) -> ClusterNode:
        port = _cluster_port(set())
        proc = subprocess.Popen([binary, *args, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                 "--appendonly", "no", "--dir", str(directory)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        node = ClusterNode(port, proc)
        started.append(node)
        _wait_pong(node)
        return node

    try:
        master = start("--repl-diskless-sync-delay", "0")
        replica = start("--repl-diskless-sync-delay", "0", "--replicaof", "127.0.0.1", str(master.port))
        conf = directory / "sentinel.conf"
        conf.write_text(f"sentinel monitor mymaster 127.0.0.1 {master.port} 1\n"
                        "sentinel down-after-milliseconds mymaster 1000\n"
                        "sentinel failover-timeout mymaster 5000\n", encoding="utf-8")
        sentinel = start(str(conf), "--sentinel")
        deadline = time.monotonic() + 20
        while redis.Redis(host="127.0.0.1", port=replica.port).info("replication").get("master_link_status") != "up":
            if time.monotonic() > deadline:
                raise AssertionError("the private replica did not sync")
            time.sleep(0.05)
        yield PrivateSentinel(master, replica, sentinel)
    finally:
        for node in started:
            node.kill()


def _wait_pong(node: ClusterNode) -> None:
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis(host="127.0.0.1", port=node.port, socket_timeout=1).ping():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline or node.proc.poll() is not None:
            raise AssertionError("a private redis-server did not start")
        time.sleep(0.02)
