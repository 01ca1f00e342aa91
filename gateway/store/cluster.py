"""`ClusterConnection`: a batch of commands on a Redis Cluster, each sent to the master that owns its key's slot.

It stands where `RespConnection` stands under the command queue (`pipelining.py`): the queue's
batch is split by node, each node's share leaves as one write on that node's own connection
(resp.py), all nodes at once, and the replies are put back in the batch's order. So a request
still costs one round trip per slot it touches (per node), and commands on one key keep their
order (one key, one node, one FIFO connection).

Slots: `CLUSTER SLOTS`, read from any node that answers (the seeds of the URL first) when the
first batch comes, after a node failed, and in the background after a redirect. A `MOVED` reply
(the slot has a new owner: a failover, a resharding) updates that slot at once and the command
runs again on the new owner in the same batch; an `ASK` reply (a slot being migrated) runs it
once on the named node after `ASKING`. A node that cannot be reached fails only its own
commands (cause `clusterdown`, so the store's breaker stays closed for the other nodes) and the
slots are read again, so a promoted replica takes over without a restart.

Commands without a key: `SCRIPT LOAD` goes to every master (each keeps its own script cache),
`PING` / `INFO` / `PUBLISH` to one (PUBLISH is broadcast to the whole cluster by Redis itself).
Every key of one command must share a slot (the gateway's keys are hash-tagged: `{tag}`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from redis.crc import key_slot
from redis.exceptions import ResponseError

from gateway.core.redis_url import RedisUrl
from gateway.store.protocol import StoreError
from gateway.store.resp import DEFAULT_STALL, Endpoint, RespConnection

log = logging.getLogger("gateway.store")
SLOTS = 16384
Node = tuple[str, int]


class ClusterConnection:
    """Executes batches on a Redis Cluster (one connection per master)."""

    def __init__(self, url: RedisUrl, *, stall: float = DEFAULT_STALL) -> None:
        self.url = url
        self.stall = stall
        self.seeds: list[Node] = list(url.hosts)
        self.slots: list[Node | None] = [None] * SLOTS
        self.masters: list[Node] = []
        self._conns: dict[Node, RespConnection] = {}
        self._refreshing: asyncio.Task[None] | None = None
        self.refreshes = 0  # topology reads (tests)

    # --- the batch ---------------------------------------------------------------------------------
    async def execute(self, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """The replies of `commands`, in order (an error reply, or a node's failure, as an exception in place)."""
        if not self.masters:
            await self.refresh()
        groups: dict[Node, list[int]] = {}  # node -> indices of its commands, in the batch's order
        for i, cmd in enumerate(commands):
            for node in (self.masters if _name(cmd) == "SCRIPT" else [self._node_for(cmd)]):
                groups.setdefault(node, []).append(i)
        replies: list[Any] = [None] * len(commands)
        answered = await asyncio.gather(*(self._send(node, idx, commands) for node, idx in groups.items()))
        for idx, answers in zip(groups.values(), answered, strict=True):
            for i, answer in zip(idx, answers, strict=True):
                if replies[i] is None or isinstance(answer, Exception):  # SCRIPT LOAD: any failure wins
                    replies[i] = answer
        await self._redirects(commands, replies)
        return replies

    async def _send(self, node: Node, idx: list[int], commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        """One node's share of the batch, in one write; its failure is each command's answer."""
        try:
            return await self._conn(node).execute([commands[i] for i in idx])
        except StoreError as exc:
            self._lost(node, exc)
            return [_down(node, exc)] * len(idx)

    async def _redirects(self, commands: Sequence[tuple[Any, ...]], replies: list[Any]) -> None:
        """Run again, where Redis says, the commands answered MOVED (the slot moved) or ASK (migrating)."""
        for _ in range(3):  # a slot moving twice during one batch is as far as we follow it
            moved = [(i, where) for i, where in ((i, _redirect(r)) for i, r in enumerate(replies)) if where]
            if not moved:
                return
            by_node: dict[Node, list[tuple[int, bool]]] = {}
            for i, (kind, slot, node) in moved:
                if kind == "MOVED":
                    self.slots[slot] = node
                    self._refresh_soon()
                by_node.setdefault(node, []).append((i, kind == "ASK"))
            await asyncio.gather(*(self._rerun(node, items, commands, replies) for node, items in by_node.items()))

    async def _rerun(self, node: Node, items: list[tuple[int, bool]], commands: Sequence[tuple[Any, ...]],
                     replies: list[Any]) -> None:
        batch: list[tuple[Any, ...]] = []
        for i, ask in items:
            if ask:
                batch.append(("ASKING",))
            batch.append(commands[i])
        try:
            answers = await self._conn(node).execute(batch)
        except StoreError as exc:
            self._lost(node, exc)
            for i, _ in items:
                replies[i] = _down(node, exc)
            return
        answered = iter(answers)
        for i, ask in items:
            if ask:
                next(answered)  # ASKING's OK
            replies[i] = next(answered)

    # --- where a command goes ----------------------------------------------------------------------
    def _node_for(self, cmd: tuple[Any, ...]) -> Node:
        key = _key_of(cmd)
        if key is None:
            return self.masters[0]
        node = self.slots[key_slot(key if isinstance(key, bytes) else str(key).encode())]
        return node if node is not None else self.masters[0]

    def _conn(self, node: Node) -> RespConnection:
        conn = self._conns.get(node)
        if conn is None:
            conn = self._conns[node] = RespConnection(Endpoint.of(self.url, node[0], node[1]), stall=self.stall)
        return conn

    def _lost(self, node: Node, exc: StoreError) -> None:
        log.debug("redis cluster node %s:%s failed: %s", node[0], node[1], exc)
        self._refresh_soon()

    # --- the slot map ------------------------------------------------------------------------------
    def _refresh_soon(self) -> None:
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.get_running_loop().create_task(self._refresh_quietly())

    async def _refresh_quietly(self) -> None:
        try:
            await self.refresh()
        except StoreError as exc:
            log.debug("redis cluster: the slots could not be read: %s", exc)

    async def refresh(self) -> None:
        """Read the slot map from the first node that answers (known masters, then the seeds)."""
        tried: list[str] = []
        for node in [*self.masters, *(s for s in self.seeds if s not in self.masters)]:
            # Its own connection: a refresh runs beside batches, which own the nodes' connections.
            conn = RespConnection(Endpoint.of(self.url, node[0], node[1]), stall=self.stall)
            try:
                reply = (await conn.execute([("CLUSTER", "SLOTS")]))[0]
            except StoreError as exc:
                tried.append(f"{node[0]}:{node[1]} ({exc.cause})")
                continue
            finally:
                conn.close()
            if isinstance(reply, ResponseError):
                raise StoreError(f"redis: CLUSTER SLOTS refused by {node[0]}:{node[1]}: {reply}",
                                 "noperm" if "NOPERM" in str(reply) or "can't run" in str(reply) else "error")
            self._apply(reply, node)
            return
        raise StoreError(f"redis: no cluster node answers ({', '.join(tried)})", "refused")

    def _apply(self, reply: list[Any], asked: Node) -> None:
        slots: list[Node | None] = [None] * SLOTS
        masters: list[Node] = []
        for start, end, master, *_ in reply:
            host = master[0].decode() if isinstance(master[0], bytes) else str(master[0])
            node = (host or asked[0], int(master[1]))
            if node not in masters:
                masters.append(node)
            for slot in range(int(start), int(end) + 1):
                slots[slot] = node
        self.slots, self.masters = slots, masters
        self.refreshes += 1
        for gone in [n for n in self._conns if n not in masters]:
            self._conns.pop(gone).close()

    def close(self) -> None:
        if self._refreshing is not None:
            self._refreshing.cancel()
        for conn in self._conns.values():
            conn.close()
        self._conns.clear()


def _down(node: Node, exc: StoreError) -> StoreError:
    """A node's failure as its commands' answer: `clusterdown`, so the store's breaker stays closed for the others."""
    return StoreError(f"redis: cluster node {node[0]}:{node[1]}: {exc}", "clusterdown")


def _name(cmd: tuple[Any, ...]) -> str:
    first = cmd[0]
    return (first.decode() if isinstance(first, bytes) else str(first)).upper()


def _key_of(cmd: tuple[Any, ...]) -> Any:
    """The key that routes `cmd` (None: any node will do)."""
    name = _name(cmd)
    if name in ("EVALSHA", "EVAL"):
        return cmd[3] if int(cmd[2]) > 0 else None
    if name in ("GET", "SET", "DEL", "PTTL", "PEXPIRE", "HSET", "HMGET", "INCR"):
        return cmd[1]
    return None  # PING, INFO, PUBLISH, CLIENT ...


def _redirect(reply: Any) -> tuple[str, int, Node] | None:
    """("MOVED" | "ASK", slot, node) when `reply` is a redirect."""
    if not isinstance(reply, ResponseError):
        return None
    parts = str(reply).split()
    if len(parts) != 3 or parts[0] not in ("MOVED", "ASK"):
        return None
    host, _, port = parts[2].rpartition(":")
    return parts[0], int(parts[1]), (host, int(port))
